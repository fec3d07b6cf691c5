"""Split a job across machines by item-hash ranges, and merge the run directories back.

``--shard i/N`` keeps the items whose id hashes into range i of N: the split depends on
the item ids only, so every machine computes the same partition without talking to the
others, and adding rows to the data moves no existing item to another shard.
``merge_runs`` joins the shards' votes into one run directory; a vote present in two
directories must be the same vote, or the merge refuses.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from .errors import ConfigError, RunDirError


def parse_shard(text: str) -> tuple[int, int]:
    try:
        index, total = (int(x) for x in text.split("/"))
    except ValueError:
        raise ConfigError(f"--shard {text!r} is not I/N", fix="write e.g. --shard 0/4 (shards 0 to N-1)") from None
    if total < 1 or not 0 <= index < total:
        raise ConfigError(f"--shard {text!r}: the index must be in 0..N-1", fix="write e.g. --shard 0/4")
    return index, total


def shard_of(item_id: str, total: int) -> int:
    """Which of ``total`` equal hash ranges the item falls in."""
    value = int(hashlib.sha256(item_id.encode()).hexdigest()[:15], 16)
    return value * total >> 60


def merge_runs(run_dirs: list[str | Path], out: str | Path) -> Any:
    """One run directory from several shard directories (votes, labels, run.json)."""
    import pandas as pd

    from .result import AnnotationResult
    from .votes import read_votes, votes_frame, write_atomic

    results = [AnnotationResult.load(d) for d in run_dirs]
    first = results[0]
    for d, r in zip(run_dirs, results, strict=True):
        if r.task.template_hash != first.task.template_hash or r.annotators != first.annotators \
                or r.samples != first.samples:
            raise RunDirError(f"{d} holds another job (task, annotators or samples differ from {run_dirs[0]})",
                              fix="merge only the shards of one job")
    votes: dict[tuple[str, str, int], Any] = {}
    for d in run_dirs:
        for vote in read_votes(Path(d) / "votes.jsonl"):
            seen = votes.get(vote.key)
            if seen is not None and (seen.label, seen.raw, seen.error) != (vote.label, vote.raw, vote.error):
                raise RunDirError(f"vote {vote.key} differs between shards", fix="re-run the shard that is wrong")
            votes.setdefault(vote.key, vote)
    items = pd.concat([r.items for r in results]).drop_duplicates("item_id").reset_index(drop=True)
    ordered = sorted(votes.values(), key=lambda v: (v.item_id, v.annotator, v.sample_index))
    manifest = dict(first.manifest)
    manifest["merged_from"] = [str(d) for d in run_dirs]
    manifest["data"] = {**manifest.get("data", {}), "n_items": len(items)}
    manifest["counts"] = {"votes": len(ordered), "valid": sum(v.label is not None for v in ordered)}
    for key in ("tokens_in", "tokens_out", "cost_usd", "wall_s"):
        manifest[key] = sum(r.manifest.get(key, 0) for r in results)
    target = Path(out)
    target.mkdir(parents=True, exist_ok=True)
    write_atomic(target / "votes.jsonl", "".join(v.to_json() + "\n" for v in ordered))
    merged = AnnotationResult(votes_frame(ordered), first.task, items, samples=first.samples,
                              annotators=first.annotators, manifest=manifest)
    merged.to_csv(target / "labels.csv")
    merged.to_jsonl(target / "labels.jsonl")
    write_atomic(target / "run.json", json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
    return merged


__all__ = ["merge_runs", "parse_shard", "shard_of"]

"""One run directory from the run directories of a sharded job (``llm-annotator merge``).

The shards must be one job: the same task and template, the same annotators asking
the same way (their identities: endpoint and decoding parameters), the same samples,
and shards ``i/N`` of the same N, each given once. The merged run is ``complete`` when
every shard of N is there, else ``partial`` with ``missing_shards``. Its cost is the
cost of its votes, each counted once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from llm_annotator.core.errors import RunDirError
from llm_annotator.core.votes import Vote, VoteKey, error_counts, invalid_and_failed, votes_frame
from llm_annotator.store.manifest import BudgetFigures, Counts, RunManifest
from llm_annotator.store.rundir import RunDir, read_manifest
from llm_annotator.store.votelog import read_votes


def _shard_of(manifest: dict[str, Any]) -> tuple[int, int]:
    shard = (manifest.get("job") or {}).get("shard") or (manifest.get("parameters") or {}).get("shard")
    if shard is None:
        return (0, 1)
    if isinstance(shard, str):
        index, total = shard.split("/")
        return int(index), int(total)
    return int(shard[0]), int(shard[1])


def _same_job(first: dict[str, Any], other: dict[str, Any]) -> list[str]:
    """What differs between two shards' jobs, besides their data and shard index."""
    out = []
    for key in ("task", "template_hash", "labels", "annotators", "samples"):
        if (first.get("job") or {}).get(key) != (other.get("job") or {}).get(key):
            out.append(key)
    mine, theirs = first.get("annotators") or {}, other.get("annotators") or {}
    for name in sorted(set(mine) | set(theirs)):
        a, b = mine.get(name) or {}, theirs.get(name) or {}
        for field in ("model", "api_base", "deployments", "model_file"):
            if a.get(field) != b.get(field):
                out.append(f"{name}: {field}")
        params_a, params_b = a.get("params") or {}, b.get("params") or {}
        out += [f"{name}: {p}" for p in sorted(set(params_a) | set(params_b)) if params_a.get(p) != params_b.get(p)]
    if _shard_of(first)[1] != _shard_of(other)[1]:
        out.append("number of shards")
    return out


def merge_runs(run_dirs: list[str | Path], out: str | Path) -> Any:
    """Merge the run directories of the shards of one job into ``out``; an AnnotationResult."""
    import pandas as pd

    from llm_annotator.outputs.result import AnnotationResult

    if not run_dirs:
        raise RunDirError("nothing to merge", fix="name the shards' run directories")
    manifests = []
    for d in run_dirs:
        found = read_manifest(d)
        if found is None or found.get("status") == "running" or "task" not in found:
            raise RunDirError(f"{d} holds no finished run (run.json missing or still running)",
                              fix="finish that shard first (re-run its command), then merge")
        manifests.append(found)
    first = manifests[0]
    seen: dict[tuple[int, int], str] = {}
    for d, m in zip(run_dirs, manifests, strict=True):
        differs = _same_job(first, m)
        if differs:
            raise RunDirError(f"{d} is a shard of another job than {run_dirs[0]} (differs in: {', '.join(differs)})",
                              fix="merge only the shards of one job, made with the same parameters")
        shard = _shard_of(m)
        if shard in seen:
            raise RunDirError(f"shard {shard[0]}/{shard[1]} is given twice ({seen[shard]} and {d}): they overlap",
                              fix="name each shard's run directory once")
        seen[shard] = str(d)
    total = _shard_of(first)[1]
    missing = sorted(set(range(total)) - {index for index, _ in seen})
    results = [AnnotationResult.load(d) for d in run_dirs]
    votes: dict[VoteKey, Vote] = {}
    for d in run_dirs:
        for vote in read_votes(Path(d) / "votes.jsonl"):
            votes.setdefault(vote.key, vote)
    ordered = sorted(votes.values(), key=lambda v: (v.item_id, v.annotator, v.sample_index))
    items = pd.concat([r.items for r in results]).drop_duplicates("item_id").reset_index(drop=True)
    errors = error_counts(v.error for v in ordered)
    cost = sum(v.cost_usd for v in ordered)
    manifest = RunManifest.model_validate(first).model_copy(update={
        "status": "partial" if missing else "complete",
        "job": {**first.get("job", {}), "shard": None if not missing else first.get("job", {}).get("shard")},
        "data": {**first.get("data", {}), "n_items": len(items)},
        "parameters": {**first.get("parameters", {}), "shard": None},
        "counts": Counts(votes_requested=sum(int(m["counts"].get("votes_requested", 0)) for m in manifests),
                         votes=len(ordered), valid=sum(v.label is not None for v in ordered),
                         invalid=invalid_and_failed(errors)[0], errors=invalid_and_failed(errors)[1],
                         by_reason=errors),
        "tokens_in": sum(v.tokens_in for v in ordered), "tokens_out": sum(v.tokens_out for v in ordered),
        "cost_usd": round(cost, 8), "cost_usd_all_votes": round(cost, 8),
        "budget": BudgetFigures(spent_usd=round(sum(float((m.get("budget") or {}).get("spent_usd", 0.0))
                                                    for m in manifests), 8)),
        "wall_s": round(sum(float(m.get("wall_s", 0.0)) for m in manifests), 3), "batches": []})
    extra = {"merged_from": [str(d) for d in run_dirs], "missing_shards": missing}
    target = RunDir(out).open()
    try:
        from llm_annotator.store.files import write_atomic

        write_atomic(target.votes_path, "".join(v.to_json() + "\n" for v in ordered))
        merged = AnnotationResult(votes_frame(ordered), results[0].task, items, samples=results[0].samples,
                                  annotators=results[0].annotators)
        merged.write_run_files(target.path)
        final = RunManifest.model_validate({**manifest.to_dict(), **extra})
        target.write_manifest(final)
        merged.manifest = final.to_dict()
    finally:
        target.close()
    return merged


__all__ = ["merge_runs"]

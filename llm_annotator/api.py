"""``annotate``: a dataset, a task and models in; an :class:`AnnotationResult` out."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import threading
from collections import Counter
from collections.abc import Coroutine, Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any, TypeVar

from .accounting import RunStats
from .batch import STATE, BatchState, check_spec, job_call
from .cache import AnswerCache
from .data import load_dataset
from .errors import ConfigError
from .models import ModelSpec, as_specs
from .result import AnnotationResult
from .runner import Runner
from .task import Task, load_task
from .votes import FORMAT_VERSION, votes_frame, write_atomic

T = TypeVar("T")
DataLike = Any
ModelsLike = str | Mapping[str, Any] | ModelSpec | Sequence[str | Mapping[str, Any] | ModelSpec] | None


def _open_cache(cache: bool | str | Path | AnswerCache | None) -> AnswerCache | None:
    if cache is False or cache is None:
        return None
    if isinstance(cache, AnswerCache):
        return cache
    return AnswerCache(None if cache is True else cache)


def _check_arguments(samples: int, budget_usd: float | None, context: int | None) -> None:
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
        raise ConfigError(f"samples={samples!r}: at least one sample per item is needed",
                          fix="pass samples=1 or more (CLI: --samples K)")
    if budget_usd is not None and budget_usd < 0:
        raise ConfigError(f"budget_usd={budget_usd}: a budget cannot be negative", fix="pass a budget >= 0")
    if context is not None and context < 0:
        raise ConfigError(f"context={context}: the context window cannot be negative",
                          fix="pass 0 for no context or a positive number of previous turns")


def _check_batch(specs: list[ModelSpec], out_dir: Path | None, cache: Any) -> None:
    if out_dir is None:
        raise ConfigError("a batch job needs a run directory to record its batches in",
                          fix="pass out=RUN_DIR (CLI: --out RUN_DIR)")
    if cache is False or cache is None:
        raise ConfigError("a batch job needs the answer cache: collected answers are stored there",
                          fix="drop cache=False (CLI: --no-cache)")
    for spec in specs:
        check_spec(spec)


async def annotate_async(
    data: DataLike,
    task: str | Path | Task = "classification",
    models: ModelsLike = None,
    *,
    samples: int = 1,
    temperature: float | None = None,
    labels: Sequence[str] | None = None,
    id_column: str | None = None,
    context: int | None = None,
    columns: Mapping[str, str] | None = None,
    out: str | Path | None = None,
    cache: bool | str | Path | AnswerCache | None = True,
    budget_usd: float | None = None,
    concurrency: int | None = None,
    max_tokens: int | None = None,
    api_base: str | None = None,
    api_key: str | None = None,
    timeout: float | None = None,
    progress: bool | None = None,
    shard: str | tuple[int, int] | None = None,
    batch: bool = False,
    _batch_mode: str | None = None,
) -> AnnotationResult:
    """The async twin of :func:`annotate`."""
    _check_arguments(samples, budget_usd, context)
    the_task = load_task(task, labels)
    specs = as_specs(models, temperature=temperature, concurrency=concurrency, max_tokens=max_tokens,
                     api_base=api_base, api_key=api_key, timeout=timeout)
    window = the_task.context_window if context is None else context
    dataset = load_dataset(data, id_column=id_column, context=window, columns=columns)
    if shard is not None:
        from .data import Dataset
        from .shard import parse_shard, shard_of

        index, total = parse_shard(shard) if isinstance(shard, str) else shard
        keep = [n for n, item in enumerate(dataset.item_ids) if shard_of(item, total) == index]
        dataset = Dataset([dataset.rows[n] for n in keep], [dataset.item_ids[n] for n in keep],
                          dataset.columns, dataset.source)
    out_dir = Path(out) if out is not None else None
    mode = _batch_mode or ("submit" if batch else None)
    if mode is not None:
        _check_batch(specs, out_dir, cache)
    answer_cache = _open_cache(cache)
    batch_state = None
    if out_dir is not None and (mode is not None or (out_dir / STATE).exists()):
        batch_state = BatchState.load(out_dir)
        if mode == "submit":
            batch_state.call = job_call(data, the_task, specs, samples=samples, id_column=id_column, context=window,
                                        columns=columns, shard=shard, cache=answer_cache, budget_usd=budget_usd)
    started = dt.datetime.now(dt.UTC)
    runner = Runner(dataset, the_task, specs, samples=samples, out_dir=out_dir, cache=answer_cache,
                    budget_usd=budget_usd, progress=progress, batch_mode=mode, batch_state=batch_state)
    try:
        votes = await runner.run()
    finally:
        if answer_cache is not None and not isinstance(cache, AnswerCache):
            answer_cache.close()
    import pandas as pd

    input_columns = [c for c in dataset.columns if c != "context"]
    items = pd.DataFrame([{c: r.get(c) for c in input_columns} for r in dataset.rows], columns=input_columns)
    items.insert(0, "item_id", dataset.item_ids)
    frame = votes_frame(votes)
    manifest = _manifest(the_task, specs, samples, window, id_column, budget_usd, dataset.source,
                         input_columns, len(dataset.rows), tally(frame), runner.stats, started,
                         answer_cache, shard, batch_state)
    result = AnnotationResult(frame, the_task, items, samples=samples,
                              annotators=[s.name for s in specs], manifest=manifest)
    if out_dir is not None:
        result.to_csv(out_dir / "labels.csv")
        result.to_jsonl(out_dir / "labels.jsonl")
        write_atomic(out_dir / "run.json", json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
    return result


def annotate(data: DataLike, task: str | Path | Task = "classification", models: ModelsLike = None,
             **options: Any) -> AnnotationResult:
    """Label ``data`` with ``models`` under ``task``; see the README for every option.

    ``data`` is a path (.csv, .jsonl, .parquet), a list of dicts, a pandas DataFrame or a
    ``datasets.Dataset``. ``models`` are LiteLLM model strings (default: the embedded
    ``local/smollm2-135m``), dicts of :class:`ModelSpec` fields, or specs. With ``out``,
    votes stream to ``out/votes.jsonl`` and a re-run resumes where the last one stopped.
    """
    return run_sync(annotate_async(data, task, models, **options))


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` to completion, also from inside a running event loop (a notebook)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    # Called from a running event loop (a notebook): run in a helper thread.
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["result"] = asyncio.run(coro)
        except BaseException as exc:
            box["error"] = exc

    thread = threading.Thread(target=target)
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    result: T = box["result"]
    return result


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def tally(votes: Any) -> dict[str, Any]:
    """What run.json counts of a votes frame: votes, valid, errors by kind, cost."""
    return {"votes": len(votes), "valid": int(votes["label"].notna().sum()),
            "errors": Counter(str(e).split(":", 1)[0] for e in votes["error"].dropna()),
            "cost_usd": float(votes["cost_usd"].sum())}


def _manifest(task: Task, specs: list[ModelSpec], samples: int, context: int, id_column: str | None,
              budget_usd: float | None, source: str, columns: list[str], n_items: int, votes: dict[str, Any],
              stats: RunStats, started: dt.datetime, cache: AnswerCache | None,
              shard: Any = None, batch_state: BatchState | None = None) -> dict[str, Any]:
    errors = votes["errors"]
    invalid_kinds = {"empty", "unparseable", "missing_field", "out_of_label_set", "refused"}
    status = "complete"
    if stats.not_issued:
        status = "stopped_by_budget"
    if stats.in_batch:
        status = "batch_pending"
    return {
        "format_version": FORMAT_VERSION,
        "status": status,
        "task": task.model_dump(),
        "template_hash": task.template_hash,
        "labels": list(task.labels),
        "models": [s.public() for s in specs],
        "parameters": {"samples": samples, "context": context, "id_column": id_column,
                       "budget_usd": budget_usd, "shard": shard},
        "data": {"source": source, "n_items": n_items, "columns": columns},
        "counts": {
            "votes_requested": stats.requested_votes,
            "votes": votes["votes"],
            "valid": votes["valid"],
            "invalid": int(sum(n for k, n in errors.items() if k in invalid_kinds)),
            "errors": int(sum(n for k, n in errors.items() if k not in invalid_kinds)),
            "by_reason": dict(sorted(errors.items())),
            "resumed": stats.resumed_votes,
            "cache_hits": stats.cached_votes,
            "new": stats.new_votes,
            "not_issued": stats.not_issued,
            "in_batch": stats.in_batch,
            "batch_answers": stats.batch_answers,
            "requests": stats.requests,
            "failed_requests": stats.failed_requests,
            "stale_dropped": stats.stale_dropped,
            "cache_corrupted": stats.cache_corrupted,
        },
        "n_not_honoured": stats.n_unsupported,
        "tokens_in": stats.tokens_in,
        "tokens_out": stats.tokens_out,
        "cost_usd": round(stats.cost_usd, 8),
        "cost_usd_all_votes": round(votes["cost_usd"], 8),
        "wall_s": round(stats.wall_s, 3),
        "started_at": started.isoformat(timespec="seconds"),
        "finished_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "cache_dir": str(cache.directory) if cache is not None else None,
        "batches": batch_state.summary() if batch_state is not None else [],
        "versions": {"llm_annotator": _version("llm-annotator-kit"), "litellm": _version("litellm")},
    }


__all__ = ["annotate", "annotate_async"]

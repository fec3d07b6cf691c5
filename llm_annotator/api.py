"""``annotate``: a dataset, a task and models in; labels, votes and a run directory out.

Every entry point here runs the one pipeline (:mod:`llm_annotator.engine.pipeline`):
:func:`annotate` with the input in memory (one chunk, votes kept), :func:`annotate_stream`
with the input read in chunks (votes on disk only), ``batch=True`` with the batch
backend, and :func:`collect` with the batch collection backend.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llm_annotator.core.errors import ConfigError
from llm_annotator.core.media import default_root
from llm_annotator.core.models import ModelSpec, as_specs
from llm_annotator.core.shard import parse_shard
from llm_annotator.core.task import Task, load_task
from llm_annotator.core.votes import Vote, votes_frame
from llm_annotator.engine.batch import (
    CollectBackend,
    SubmitBackend,
    gather,
    job_call,
    load_call,
    refresh,
)
from llm_annotator.engine.budget import Budget
from llm_annotator.engine.inputs import CHUNK_ROWS, MemoryInput, StreamInput
from llm_annotator.engine.jobs import JobBuilder
from llm_annotator.engine.live import LiveBackend
from llm_annotator.engine.options import check_arguments, check_batch, check_budget, open_cache
from llm_annotator.engine.outcome import begin, finish, warn_if_failed
from llm_annotator.engine.pipeline import Backend, Pipeline, judge_again
from llm_annotator.engine.stats import RunStats
from llm_annotator.engine.sync import run_sync
from llm_annotator.engine.workers import annotate_in_workers, check_workers, join_worker_votes
from llm_annotator.outputs.result import AnnotationResult, items_frame
from llm_annotator.providers.client import start_import
from llm_annotator.store.batch_state import STATE, BatchState
from llm_annotator.store.cache import AnswerCache
from llm_annotator.store.ledger import Ledger
from llm_annotator.store.manifest import RunManifest
from llm_annotator.store.reviews import HUMAN_VOTES
from llm_annotator.store.rundir import RunDir

DataLike = Any
ModelsLike = str | Mapping[str, Any] | ModelSpec | Sequence[str | Mapping[str, Any] | ModelSpec] | None



@dataclass
class StreamedRun:
    """What :func:`annotate_stream` returns: the run directory and its ``run.json``."""

    directory: Path
    manifest: dict[str, Any]

    def load(self) -> AnnotationResult:
        """The whole run as an :class:`AnnotationResult` (in memory: for runs that fit)."""
        return AnnotationResult.load(self.directory)

    def __repr__(self) -> str:
        c = self.manifest["counts"]
        return (f"<StreamedRun {self.directory} items={self.manifest['data']['n_items']} votes={c['votes']} "
                f"valid={c['valid']} status={self.manifest['status']}>")


async def _run(data: Any, task: str | Path | Task, models: ModelsLike, *, stream: bool, samples: int = 1,
               temperature: float | None = None, labels: Sequence[str] | None = None, id_column: str | None = None,
               context: int | None = None, columns: Mapping[str, str] | None = None, out: str | Path | None = None,
               cache: bool | str | Path | AnswerCache | None = True, budget_usd: float | None = None,
               concurrency: int | None = None, max_tokens: int | None = None, api_base: str | None = None,
               api_key: str | None = None, timeout: float | None = None, progress: bool | None = None,
               shard: str | tuple[int, int] | None = None, batch: bool = False, overwrite: bool = False,
               chunk_rows: int = CHUNK_ROWS, collect_state: BatchState | None = None,
               media_root: str | Path | None = None, workers: int | None = 1,
               ray: str | None = None) -> tuple[RunManifest, Any]:
    """Run one job through the pipeline; returns its manifest and (in memory) its result."""
    import sys

    check_arguments(samples, budget_usd, context)
    the_task = load_task(task, labels)
    specs = as_specs(models, temperature=temperature, concurrency=concurrency, max_tokens=max_tokens,
                     api_base=api_base, api_key=api_key, timeout=timeout)
    the_shard: tuple[int, int] | None = None
    if shard is not None:
        the_shard = parse_shard(shard) if isinstance(shard, str) else (int(shard[0]), int(shard[1]))
    out_dir = Path(out) if out is not None else None
    if stream and out_dir is None:
        raise ConfigError("a streamed run keeps its votes on disk only and needs a run directory",
                          fix="pass out=RUN_DIR")
    workers = check_workers(workers, out=out_dir, batch=batch, collect=collect_state is not None, data=data,
                            stream=stream, ray=ray)
    if batch:
        check_batch(specs, out_dir, cache)
    if collect_state is None and (cache is False or cache is None) and (out is None or overwrite) \
            and workers == 1 and ray is None:  # (workers import it in their own processes)
        start_import()  # every vote needs a call: LiteLLM loads while the input is read and rendered
    check_budget(specs, budget_usd)
    builder = JobBuilder(the_task, specs, samples, default_root(data, media_root), labels, context)
    window = builder.context_window
    if stream and window:
        asking = next(t.name for t in [the_task, *builder.tasks] if t.context_window)
        raise ConfigError(f"task {asking!r} asks for dialogue context, which needs whole dialogues in memory",
                          fix="pass context=0 (CLI: --context 0), or annotate without streaming (split with --shard)")
    if stream:
        source: MemoryInput | StreamInput = StreamInput(data, builder, id_column=id_column, columns=columns,
                                                        shard=the_shard, chunk_rows=chunk_rows)
    else:
        from llm_annotator.core.data import load_dataset

        source = MemoryInput(load_dataset(data, id_column=id_column, context=window, columns=columns),
                             builder, the_shard)
    job = builder.job(source.source, source.data, the_shard)
    started = dt.datetime.now(dt.UTC)
    stats = RunStats(requested_votes=source.n_items * len(specs) * samples)
    try:
        answer_cache = open_cache(cache)
        run_dir = RunDir(out_dir).open(job, overwrite=overwrite) if out_dir is not None else None
    except BaseException:
        if isinstance(source, StreamInput):
            source.close()
        raise
    manifest: RunManifest | None = None
    try:
        ledger = run_dir.ledger() if run_dir is not None else Ledger(None)
        budget = Budget(budget_usd, ledger)
        state = collect_state
        if state is None and out_dir is not None and (batch or (out_dir / STATE).exists()):
            state = BatchState.load(out_dir)
        if batch and state is not None:
            state.call = job_call(data, the_task, specs, samples=samples, id_column=id_column, context=window,
                                  columns=columns, shard=shard, cache=answer_cache, budget_usd=budget_usd,
                                  stream={"chunk_rows": chunk_rows} if stream else None,
                                  own={a.name: a.task for a in builder.annotators if a.spec.task is not None},
                                  media_root=default_root(data, media_root))
        parameters: dict[str, Any] = {"samples": samples, "context": window, "id_column": id_column,
                                      "budget_usd": budget_usd, "shard": list(the_shard) if the_shard else None}
        if stream:
            parameters["stream"] = {"chunk_rows": chunk_rows}
        manifest = begin(job, builder, specs, parameters, source, started, answer_cache)
        log = None
        resumed: MutableMapping[Any, Vote | None] = {}
        if run_dir is not None:
            run_dir.begin(manifest)
            join_worker_votes(run_dir.path, run_dir.votes_path)  # a killed run's workers' votes
            log = run_dir.vote_log()
            keys: Callable[[], MutableMapping[Any, Any]] = (  # streamed: the keys go on disk
                source.index.key_set if isinstance(source, StreamInput) else dict)
            resumed = log.open(builder.wanted(source.hashes), keep=not stream, judge=judge_again(
                the_task, {a.name: a.task for a in builder.annotators if a.spec.task is not None}), keys=keys)
            stats.resumed_votes, stats.log_repaired, stats.stale_dropped = len(resumed), log.repaired, log.dropped
            stats.reparsed, stats.failed_before = log.reparsed, log.failed
        show = sys.stderr.isatty() if progress is None else progress
        pipeline = Pipeline(builder, cache=answer_cache, log=log, keep_votes=not stream, stats=stats, progress=show,
                            in_flight=state.in_flight() if state is not None else frozenset(), warm=start_import)
        if not stream:
            pipeline.votes.update({k: v for k, v in resumed.items() if v is not None})
        backend: Backend
        try:
            if collect_state is not None:
                stats.batch_answers = await gather(collect_state, pipeline, budget)
                pipeline.in_flight = collect_state.in_flight()
                backend = CollectBackend(collect_state)
            elif batch:
                assert state is not None
                backend = SubmitBackend(builder, state, budget, stats)
            else:
                backend = LiveBackend(budget, stats)
            if workers > 1 or ray is not None:  # the live calls in worker processes (check_workers: no batch)
                assert run_dir is not None and log is not None
                log.close()
                pipeline.votes.update(await annotate_in_workers(
                    workers, builder=builder, source=source, labels=labels, media_root=default_root(data, media_root),
                    stream={"data": data, "id_column": id_column, "columns": columns, "shard": the_shard,
                            "chunk_rows": chunk_rows} if stream else None,
                    run_dir=run_dir.path, cache=answer_cache, budget=budget, stats=stats, progress=show,
                    done=len(resumed), keep=not stream, ray=ray))
            else:
                await pipeline.run(source.chunks(), backend, resumed)
        finally:
            if log is not None:
                log.close()
            ledger.close()
        result = None
        if isinstance(source, MemoryInput):
            result = _result(pipeline, builder, source)
            for error in result.votes["error"].dropna().unique():  # examples of reasons from earlier runs too
                stats.example(str(error).split(":", 1)[0], str(error).split(":", 1)[-1].strip())
            tally = result.tally(builder.names)
            if run_dir is not None:
                result.write_run_files(run_dir.path)
        else:
            from llm_annotator.outputs.labels import sum_votes, write_labels

            assert run_dir is not None
            sums = sum_votes(run_dir.votes_path, source.index, the_task, builder.names)
            write_labels(source.chunks(), source.columns, sums, the_task,
                         {o.name: samples * len(builder.answering(o.name)) for o in the_task.output_specs}, run_dir.path)
            tally = sums.tally
        manifest = finish(manifest, tally, stats, budget, state)
        if run_dir is not None:
            run_dir.write_manifest(manifest)
            if run_dir.file(HUMAN_VOTES).exists():  # the reviewers' labels stay beside the new labels
                from llm_annotator.outputs.trust import write_labels as with_reviews

                with_reviews(run_dir.path)
        if result is not None:
            result.manifest = manifest.to_dict()
        warn_if_failed(manifest)
        return manifest, result
    except BaseException as exc:
        if run_dir is not None:
            if isinstance(exc, KeyboardInterrupt | asyncio.CancelledError) and manifest is not None:
                # the votes so far are in votes.jsonl and the cache; run.json says the run did not end
                run_dir.write_manifest(manifest.model_copy(update={"status": "interrupted"}))
            run_dir.abandon()
        raise
    finally:
        if isinstance(source, StreamInput):
            source.close()
        if run_dir is not None:
            run_dir.close()
        if answer_cache is not None and answer_cache is not cache:
            answer_cache.close()


def _result(pipeline: Pipeline, builder: JobBuilder, source: MemoryInput) -> AnnotationResult:
    order = {key: n for n, key in enumerate(builder.wanted(source.hashes))}
    votes = sorted(pipeline.votes.values(), key=lambda v: order.get(v.key, len(order)))
    dataset = source.dataset
    items = items_frame(dataset.rows, dataset.item_ids, source.columns)
    return AnnotationResult(votes_frame(votes), builder.task, items, samples=builder.samples,
                            annotators=builder.names)


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
    overwrite: bool = False,
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
    media_root: str | Path | None = None,
    workers: int = 1,
    ray: str | None = None,
) -> AnnotationResult:
    """The async twin of :func:`annotate` (same options)."""
    _, result = await _run(data, task, models, stream=False, samples=samples, temperature=temperature,
                           labels=labels, id_column=id_column, context=context, columns=columns, out=out,
                           overwrite=overwrite, cache=cache, budget_usd=budget_usd, concurrency=concurrency,
                           max_tokens=max_tokens, api_base=api_base, api_key=api_key, timeout=timeout,
                           progress=progress, shard=shard, batch=batch, media_root=media_root, workers=workers,
                           ray=ray)
    assert result is not None
    return result


def annotate(data: DataLike, task: str | Path | Task = "classification", models: ModelsLike = None, *,
             samples: int = 1, temperature: float | None = None, labels: Sequence[str] | None = None,
             id_column: str | None = None, context: int | None = None, columns: Mapping[str, str] | None = None,
             out: str | Path | None = None, overwrite: bool = False,
             cache: bool | str | Path | AnswerCache | None = True, budget_usd: float | None = None,
             concurrency: int | None = None, max_tokens: int | None = None, api_base: str | None = None,
             api_key: str | None = None, timeout: float | None = None, progress: bool | None = None,
             shard: str | tuple[int, int] | None = None, batch: bool = False,
             media_root: str | Path | None = None, workers: int = 1, ray: str | None = None) -> AnnotationResult:
    """Label ``data`` with ``models`` under ``task``: every vote, soft labels, confidence.

    Args:
        data: a path (.csv, .tsv, .jsonl, .json, .parquet), a list of dicts, a pandas
            DataFrame or a ``datasets.Dataset``.
        task: a built-in task name (``llm-annotator templates list``) or the path of a
            ``.jinja`` template with YAML front matter, or a :class:`Task`.
        models: the annotators: LiteLLM model strings (default: the embedded
            ``local/smollm2-135m``), dicts of :class:`ModelSpec` fields (``model``, ``name``,
            ``temperature``, ``max_tokens``, ``top_p``, ``api_base``, ``api_key``,
            ``concurrency``, ``timeout``, ``max_retries``, ``price``, ``extra``, ...), or specs.
        samples: answers per item and annotator (k); repeated samples become soft labels.
        temperature: sampling temperature for every annotator (default 1.0).
        labels: the label set, for a task that takes the caller's labels (``classification``).
        id_column: column of unique item ids (default: a hash of each row).
        context: previous turns of the dialogue given as context (default: the task's).
        columns: template field -> input column, for inputs whose columns are named otherwise.
        out: run directory: votes stream to ``out/votes.jsonl``; ``labels.csv``,
            ``labels.jsonl`` and ``run.json`` are written at the end; a re-run of the same
            job resumes, asking only missing votes and votes whose request changed.
        overwrite: replace the job ``out`` holds when it is another job (else refused).
        cache: the answer cache: True (``$LLM_ANNOTATOR_CACHE_DIR`` or the user cache), a
            directory, an :class:`AnswerCache`, or False for none.
        budget_usd: the most the job may spend, counted across every run into ``out``; a
            model with no known price needs a ``price``.
        concurrency: requests in flight per annotator (default 16).
        max_tokens: answer length limit (default: the task's).
        api_base: API base URL for every annotator (else the provider's environment).
        api_key: API key for every annotator (else the provider's environment); never stored.
        timeout: seconds before a request is abandoned and retried (default 120).
        progress: show a progress bar (default: when stderr is a terminal).
        shard: ``"I/N"``: annotate only shard I of N (item-hash ranges); see ``merge``.
        batch: submit the requests as provider batch jobs (OpenAI, Azure) and return; then
            :func:`collect`.
        media_root: the folder relative paths of a task's media fields are read from
            (default: the data file's folder; ``docs/multimodal.md``).
        workers: processes that make the job's calls, sharing ``out`` (needed), the cache,
            the budget and one progress display; the votes are a one-process run's
            (``docs/scale.md``).
        ray: run the workers as Ray tasks on the cluster at this address (``"local"``: a
            Ray instance of this machine); ``out`` must be on storage every node sees.

    Returns:
        An :class:`AnnotationResult`: ``.votes`` (one row per item, annotator and sample),
        ``.soft_labels()``, ``.labels()``, ``.agreement()``, exports, and ``.manifest``
        (what ``run.json`` holds).
    """
    return run_sync(annotate_async(data, task, models, samples=samples, temperature=temperature, labels=labels,
                                   id_column=id_column, context=context, columns=columns, out=out,
                                   overwrite=overwrite, cache=cache, budget_usd=budget_usd,
                                   concurrency=concurrency, max_tokens=max_tokens, api_base=api_base,
                                   api_key=api_key, timeout=timeout, progress=progress, shard=shard, batch=batch,
                                   media_root=media_root, workers=workers, ray=ray))


async def annotate_stream_async(data: Any, task: str | Path | Task = "classification", models: ModelsLike = None,
                                *, out: str | Path, chunk_rows: int = CHUNK_ROWS, **options: Any) -> StreamedRun:
    """The async twin of :func:`annotate_stream`."""
    manifest, _ = await _run(data, task, models, stream=True, out=out, chunk_rows=chunk_rows, **options)
    return StreamedRun(Path(out), manifest.to_dict())


def annotate_stream(data: Any, task: str | Path | Task = "classification", models: ModelsLike = None,
                    **options: Any) -> StreamedRun:
    """:func:`annotate` for corpora larger than memory: the same options and run directory
    (``out`` is required), the input read in chunks (``chunk_rows``) and nothing of the
    votes kept in memory.

    ``data`` is a path (.csv/.tsv, .jsonl, .parquet, also gzipped text) or any re-iterable
    of dicts, e.g. ``datasets.load_dataset(..., streaming=True)``. Dialogue context, which
    needs whole dialogues, is not available. Returns a :class:`StreamedRun`; ``.load()``
    reads the whole result when it fits in memory.
    """
    return run_sync(annotate_stream_async(data, task, models, **options))


# -- batch jobs -------------------------------------------------------------------------
async def collect_async(run_dir: str | Path, *, data: Any = None, api_key: str | None = None,
                        api_base: str | None = None, wait: bool = False, poll_s: float = 30.0,
                        progress: bool | None = None) -> AnnotationResult | StreamedRun:
    """The async twin of :func:`collect`."""
    state = BatchState.load(run_dir)
    call = load_call(state, data, api_key, api_base)
    while True:
        await refresh(state, call["models"])
        pending = [e for e in state.batches if e.get("status") not in
                   {"completed", "failed", "expired", "cancelled", "abandoned"}]
        if not wait or not pending:
            break
        await asyncio.sleep(poll_s)
    stream = call.pop("stream", None)
    call.pop("cache", None)
    manifest, result = await _run(call.pop("data"), call.pop("task"), call.pop("models"), stream=stream is not None,
                                  out=run_dir, progress=progress, collect_state=state,
                                  chunk_rows=(stream or {}).get("chunk_rows", CHUNK_ROWS), **call)
    return result if result is not None else StreamedRun(Path(run_dir), manifest.to_dict())


def collect(run_dir: str | Path, **options: Any) -> AnnotationResult | StreamedRun:
    """Download the ended batches of ``run_dir`` and write its votes, labels and run.json.

    Votes of batches still running are left out (``run.json`` says ``batch_pending``);
    ``wait=True`` polls every ``poll_s`` seconds until every batch has ended. A job
    submitted by :func:`annotate_stream` is collected streamed, and gives a StreamedRun.
    """
    return run_sync(collect_async(run_dir, **options))


def status(run_dir: str | Path, *, api_key: str | None = None, api_base: str | None = None) -> list[dict[str, Any]]:
    """Every batch of ``run_dir`` as the provider reports it now."""
    from llm_annotator.engine.batch import submitted_specs

    state = BatchState.load(run_dir)
    run_sync(refresh(state, submitted_specs(state, api_key, api_base)))
    return state.summary()



__all__ = ["StreamedRun", "annotate", "annotate_async", "annotate_stream", "annotate_stream_async", "collect",
           "collect_async", "status"]

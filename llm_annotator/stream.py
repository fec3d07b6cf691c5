"""Corpora larger than memory: the input read in chunks, votes kept on disk only.

:func:`annotate_stream` produces the same run directory as :func:`annotate` (the same
``votes.jsonl``, ``labels.csv``, ``labels.jsonl`` and ``run.json``, resumable the same
way) while holding per item only its id, its input row number and its prompt hash
(about 200 bytes), plus label sums as numbers. It reads the input three times:

1. every row is given its id, rendered and checked (bad input fails here, before any
   call, naming the row), and its prompt hash is kept;
2. chunk by chunk, votes are replayed from the cache or asked, and appended to the log;
3. the log is read back into per-item label sums, and the labels are written chunk by
   chunk beside the input columns.

A file input must not change between the passes (its size and modification time are
checked); an iterable must yield the same rows each time it is iterated (a streaming
``datasets.IterableDataset`` does). Dialogue context, which needs whole dialogues, and
batch jobs are not available here.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
import time
from array import array
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from . import batch, llm
from .data import Dataset, IdAssigner, Row, read_chunks
from .errors import ConfigError, DataError
from .models import ModelSpec
from .prompts import compile_prompt, prompt_hash
from .runner import Runner
from .task import Task
from .votes import VoteLog, write_atomic

if TYPE_CHECKING:
    from .result import AnnotationResult

#: Rows read, rendered and annotated at a time.
CHUNK_ROWS = 10_000


@dataclass
class StreamedRun:
    """What :func:`annotate_stream` returns: the run directory and its ``run.json``."""

    directory: Path
    manifest: dict[str, Any]

    def load(self) -> AnnotationResult:
        """The whole run as an :class:`AnnotationResult` (in memory: for runs that fit)."""
        from .result import AnnotationResult

        return AnnotationResult.load(self.directory)

    def __repr__(self) -> str:
        c = self.manifest["counts"]
        return (f"<StreamedRun {self.directory} items={self.manifest['data']['n_items']} votes={c['votes']} "
                f"valid={c['valid']} status={self.manifest['status']}>")


class _Input:
    """The input, readable again chunk by chunk; a file must not change between reads."""

    def __init__(self, data: Any, columns: Mapping[str, str] | None, chunk_rows: int) -> None:
        self.data, self.columns, self.chunk_rows = data, columns, chunk_rows
        self.stamp = self._stamp()
        self.name, _ = read_chunks(data, columns=columns, chunk_rows=chunk_rows)

    def _stamp(self) -> tuple[int, int] | None:
        if isinstance(self.data, str | Path):
            try:
                stat = os.stat(self.data)
            except OSError:
                return None
            return stat.st_size, stat.st_mtime_ns
        return None

    def chunks(self) -> Iterator[tuple[list[Row], list[str], int]]:
        """(rows, column names, rows before this chunk), in input order."""
        if self._stamp() != self.stamp:
            raise DataError(f"{self.data} changed during the run",
                            fix="do not edit the input while it is annotated; re-run to resume")
        _, chunks = read_chunks(self.data, columns=self.columns, chunk_rows=self.chunk_rows)
        offset = 0
        for records, names in chunks:
            yield records, names, offset
            offset += len(records)


@dataclass
class _Index:
    """Per input row its prompt hash, as a 64-bit number (0: outside the shard); per item
    id its row. Ids themselves are found again from the rows on each later pass."""

    source: str
    columns: list[str]
    assign: IdAssigner
    hashes: array[int]
    n_items: int

    @property
    def rows(self) -> dict[str, int]:
        return self.assign.rows

    def prompt_hash(self, row: int) -> str | None:
        value = self.hashes[row]
        return f"{value:016x}" if value else None


class _Wanted(Mapping[tuple[str, str, int], str]):
    """The vote keys of the job and their prompt hashes, answered from the index."""

    def __init__(self, index: _Index, names: Sequence[str], samples: int) -> None:
        self.index, self.names, self.samples = index, list(names), samples

    def __getitem__(self, key: tuple[str, str, int]) -> str:
        item_id, annotator, sample = key
        row = self.index.rows.get(item_id)
        found = self.index.prompt_hash(row) if row is not None else None
        if found is None or annotator not in self.names or not 0 <= sample < self.samples:
            raise KeyError(key)
        return found

    def __iter__(self) -> Iterator[tuple[str, str, int]]:
        for item_id, row in self.index.rows.items():
            if self.index.hashes[row]:
                yield from ((item_id, name, s) for name in self.names for s in range(self.samples))

    def __len__(self) -> int:
        return self.index.n_items * len(self.names) * self.samples


class StreamRunner(Runner):
    """A :class:`Runner` fed chunk by chunk, that keeps no vote once written."""

    async def run_chunks(self, chunks: Iterable[tuple[Dataset, list[str]]], wanted: Mapping[tuple[str, str, int], str],
                         n_items: int) -> None:
        """Annotate an input given chunk by chunk (each a Dataset and its prompt hashes).

        Votes go to the log only: the runner keeps the keys of resumed votes and nothing
        of a chunk once it is done, so memory does not grow with the corpus.
        """
        assert self.out_dir is not None
        started = time.perf_counter()
        self._prompt = compile_prompt(self.task)
        self.stats.requested_votes = n_items * len(self.specs) * self.samples
        self._log = VoteLog(self.out_dir)
        self._done = self._log.open(wanted, keep=False)
        for name in ("labels.csv", "labels.jsonl", "run.json"):
            (self.out_dir / name).unlink(missing_ok=True)
        self.stats.resumed_votes = len(self._done)
        self.stats.log_repaired = self._log.repaired
        self.stats.stale_dropped = self._log.dropped
        checked: set[str] = set()
        try:
            if self.progress:
                from tqdm import tqdm

                self._bar = tqdm(total=self.stats.requested_votes, initial=len(self._done), unit="vote",
                                 desc="annotating", file=sys.stderr, dynamic_ncols=True)
            if self.batch_mode == "collect":
                assert self.batch_state is not None
                self.stats.batch_answers = await batch.gather(self.batch_state, self)
            for dataset, hashes in chunks:
                self.dataset, self.hashes = dataset, hashes
                jobs = self._replay_cache()
                self._votes.clear()
                if self.batch_mode == "collect":
                    self._settle_batch(jobs)
                    self._votes.clear()
                    continue
                if self.batch_mode == "submit":
                    assert self.batch_state is not None
                    await batch.submit(self, jobs, self.batch_state)
                    continue
                if self.batch_state is not None:
                    jobs = self._without_in_flight(jobs)
                for spec in self.specs:
                    if spec.name not in checked and any(job.spec is spec for job in jobs):
                        llm.check_model(spec)
                        checked.add(spec.name)
                await self._work(jobs)
                self._votes.clear()
                self._prompt_tokens.clear()
        finally:
            if self._bar is not None:
                self._bar.close()
            self._log.close()
            if self.cache is not None:
                self.stats.cache_corrupted = self.cache.corrupted
            self.stats.wall_s = time.perf_counter() - started


def _build_index(source: _Input, task: Task, id_column: str | None, shard: tuple[int, int] | None) -> _Index:
    """Pass 1: ids, rendering and prompt hashes of every row; the first bad row stops it."""
    from .shard import shard_of

    prompt = compile_prompt(task)
    schema = task.response_schema()
    name = source.name
    assign = IdAssigner(name, id_column)
    hashes = array("Q")
    columns: dict[str, None] = {}
    n_items = 0
    for records, names, offset in source.chunks():
        columns.update(dict.fromkeys(names))
        for position, (row, item_id) in enumerate(zip(records, assign(records, offset), strict=True)):
            if shard is not None and shard_of(item_id, shard[1]) != shard[0]:
                hashes.append(0)
                continue
            rendered = prompt.render(row, item_id=item_id, where=f"{name} row {offset + position + 1}")
            hashes.append(int(prompt_hash(rendered, schema), 16) or 1)  # 0 marks "not in the job"
            n_items += 1
    return _Index(name, list(columns), assign, hashes, n_items)


def _datasets(source: _Input, index: _Index) -> Iterator[tuple[Dataset, list[str]]]:
    """Pass 2: the rows of the job, chunk by chunk, with their item ids and prompt hashes."""
    total = 0
    index.assign.restart()
    for records, _, offset in source.chunks():
        total = offset + len(records)
        if total > len(index.hashes):
            break
        keep = [n for n in range(len(records)) if index.hashes[offset + n]]
        if not keep:
            continue
        ids = index.assign.replay(records, offset)
        hashes = [str(index.prompt_hash(offset + n)) for n in keep]
        yield Dataset([records[n] for n in keep], [ids[n] for n in keep], index.columns, index.source, offset), hashes
    if total != len(index.hashes):
        raise DataError(f"{index.source} gave {total} rows on a second reading, {len(index.hashes)} on the first",
                        fix="pass an input that reads the same each time (a file, or a re-iterable dataset)")


@dataclass
class _Sums:
    """Pass 3: what the log holds, reduced to numbers per item."""

    probs: np.ndarray           # item x label, combined over annotators (NaN: no valid vote)
    n_valid: np.ndarray         # valid votes per item
    tally: dict[str, Any]


def _sum_votes(path: Path, index: _Index, task: Task, names: Sequence[str]) -> _Sums:
    labels = list(task.labels)
    position = {label: k for k, label in enumerate(labels)}
    annotator = {name: a for a, name in enumerate(names)}
    rows = len(index.hashes)
    sums = np.zeros((len(names), rows, len(labels)))
    counts = np.zeros((len(names), rows), dtype=np.int64)
    errors: Counter[str] = Counter()
    n_votes, cost = 0, 0.0
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            vote = json.loads(line)
            row = index.rows[vote["item_id"]]
            a = annotator[vote["annotator"]]
            n_votes += 1
            cost += float(vote.get("cost_usd") or 0.0)
            label = vote.get("label")
            if label is None:
                errors[str(vote.get("error")).split(":", 1)[0]] += 1
                continue
            vector = np.zeros(len(labels))
            distribution = vote.get("distribution")
            if isinstance(distribution, dict) and distribution:
                vector[:] = [float(distribution.get(x, 0.0)) for x in labels]
            total = vector.sum()
            if total > 0:
                vector /= total
            else:
                vector[:] = 0.0
                vector[position[label]] = 1.0
            sums[a, row] += vector
            counts[a, row] += 1
    has = counts > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        per_annotator = sums / counts[:, :, None]
        combined = np.where(has[:, :, None], per_annotator, 0.0).sum(axis=0) / has.sum(axis=0)[:, None]
    tally = {"votes": n_votes, "valid": int(counts.sum()), "errors": errors, "cost_usd": cost}
    return _Sums(combined, counts.sum(axis=0), tally)


def _write_labels(source: _Input, index: _Index, sums: _Sums, task: Task, n_requested: int, out_dir: Path) -> None:
    """Pass 3, continued: labels.csv and labels.jsonl, chunk by chunk, each through a rename."""
    import pandas as pd

    from .result import item_table, label_table, write_csv_rows, write_jsonl_rows

    input_columns = [c for c in index.columns if c != "context"]
    labels = list(task.labels)

    def rows_of_chunks() -> Iterator[Any]:
        for dataset, _ in _datasets(source, index):
            positions = [index.rows[i] for i in dataset.item_ids]
            items = pd.DataFrame([{c: r.get(c) for c in input_columns} for r in dataset.rows], columns=input_columns)
            items.insert(0, "item_id", dataset.item_ids)
            table = label_table(dataset.item_ids, sums.probs[positions], sums.n_valid[positions], n_requested, labels)
            yield item_table(items, table, labels)

    csv_tmp, jsonl_tmp = out_dir / "labels.csv.part", out_dir / "labels.jsonl.part"
    try:
        with csv_tmp.open("w", encoding="utf-8", newline="") as csv_out, \
                jsonl_tmp.open("w", encoding="utf-8") as jsonl_out:
            for number, frame in enumerate(rows_of_chunks()):
                write_csv_rows(frame, csv_out, header=number == 0)
                write_jsonl_rows(frame, jsonl_out)
            for handle in (csv_out, jsonl_out):
                handle.flush()
                os.fsync(handle.fileno())
        csv_tmp.replace(out_dir / "labels.csv")
        jsonl_tmp.replace(out_dir / "labels.jsonl")
    finally:
        csv_tmp.unlink(missing_ok=True)
        jsonl_tmp.unlink(missing_ok=True)


async def annotate_stream_async(data: Any, task: str | Path | Task = "classification", models: Any = None, *,
                                out: str | Path, samples: int = 1, temperature: float | None = None,
                                labels: Sequence[str] | None = None, id_column: str | None = None,
                                columns: Mapping[str, str] | None = None, cache: Any = True,
                                budget_usd: float | None = None, concurrency: int | None = None,
                                max_tokens: int | None = None, api_base: str | None = None,
                                api_key: str | None = None, timeout: float | None = None,
                                progress: bool | None = None, shard: str | tuple[int, int] | None = None,
                                context: int | None = None, chunk_rows: int = CHUNK_ROWS, batch: bool = False,
                                _batch_mode: str | None = None) -> StreamedRun:
    """The async twin of :func:`annotate_stream`."""
    from .api import _check_arguments, _check_batch, _manifest, _open_cache
    from .batch import STATE, BatchState, job_call
    from .models import as_specs
    from .shard import parse_shard
    from .task import load_task

    _check_arguments(samples, budget_usd, context)
    the_task = load_task(task, labels)
    if context or (context is None and the_task.context_window):
        raise ConfigError(f"task {the_task.name!r} asks for dialogue context, which needs whole dialogues in memory",
                          fix="pass context=0 (CLI: --context 0), or annotate without streaming (split with --shard)")
    specs: list[ModelSpec] = as_specs(models, temperature=temperature, concurrency=concurrency,
                                      max_tokens=max_tokens, api_base=api_base, api_key=api_key, timeout=timeout)
    the_shard = (parse_shard(shard) if isinstance(shard, str) else shard) if shard is not None else None
    out_dir = Path(out)
    mode = _batch_mode or ("submit" if batch else None)
    if mode is not None:
        _check_batch(specs, out_dir, cache)
    source = _Input(data, columns, chunk_rows)
    index = _build_index(source, the_task, id_column, the_shard)
    answer_cache = _open_cache(cache)
    batch_state = BatchState.load(out_dir) if mode is not None or (out_dir / STATE).exists() else None
    if mode == "submit" and batch_state is not None:
        batch_state.call = job_call(data, the_task, specs, samples=samples, id_column=id_column, context=0,
                                    columns=columns, shard=shard, cache=answer_cache, budget_usd=budget_usd,
                                    stream={"chunk_rows": chunk_rows})
    started = dt.datetime.now(dt.UTC)
    runner = StreamRunner(Dataset([], [], index.columns, index.source), the_task, specs, samples=samples, out_dir=out_dir,
                    cache=answer_cache, budget_usd=budget_usd, progress=progress, batch_mode=mode,
                    batch_state=batch_state)
    try:
        await runner.run_chunks(_datasets(source, index), _Wanted(index, [s.name for s in specs], samples),
                                index.n_items)
    finally:
        if answer_cache is not None and cache is not answer_cache:
            answer_cache.close()
    names = [s.name for s in specs]
    sums = _sum_votes(out_dir / "votes.jsonl", index, the_task, names)
    _write_labels(source, index, sums, the_task, samples * len(specs), out_dir)
    input_columns = [c for c in index.columns if c != "context"]
    manifest = _manifest(the_task, specs, samples, 0, id_column, budget_usd, index.source, input_columns,
                         index.n_items, sums.tally, runner.stats, started, answer_cache, shard, batch_state)
    manifest["parameters"]["stream"] = {"chunk_rows": chunk_rows}
    write_atomic(out_dir / "run.json", json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
    return StreamedRun(out_dir, manifest)


def annotate_stream(data: Any, task: str | Path | Task = "classification", models: Any = None,
                    **options: Any) -> StreamedRun:
    """:func:`annotate` for corpora larger than memory: the same options and run directory
    (``out`` is required), the input read in chunks and nothing of the votes kept in memory.

    ``data`` is a path (.csv/.tsv, .jsonl, .parquet, also gzipped text) or any re-iterable
    of dicts, e.g. ``datasets.load_dataset(..., streaming=True)``. Returns a
    :class:`StreamedRun`; ``.load()`` reads the whole result when it fits in memory.
    """
    from .api import run_sync

    return run_sync(annotate_stream_async(data, task, models, **options))


__all__ = ["CHUNK_ROWS", "StreamedRun", "annotate_stream", "annotate_stream_async"]

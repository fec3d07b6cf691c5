"""``labels.csv``, ``labels.jsonl`` and ``explanations.csv`` of a streamed run, written chunk by chunk.

The log is read once for its tally, and then, one chunk of the input at a time, its
votes of that chunk's rows are read again (in row order, from a sorter on disk) into
per-item sums of every output of the task (numbers only): per annotator and item, the
sum of its valid votes' category vectors (a multi-label output's: one per label its set
holds), their count, and for a numeric output the sums of x and x². Nothing per item is
kept beyond the chunk. The labels are written beside the input columns, one chunk at a
time, each file through a rename: the primary output's columns, then one
column group per other output (:func:`llm_annotator.outputs.tables.item_table`), each
table by the rules of :func:`llm_annotator.analysis.kinds.output_table`. An in-memory
run writes the same files from its :class:`~llm_annotator.outputs.result.AnnotationResult`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from llm_annotator.analysis.aggregate import combine_soft, vote_vector
from llm_annotator.analysis.kinds import members, number
from llm_annotator.core.data import Dataset
from llm_annotator.core.errors import ErrorKind
from llm_annotator.core.outputs import OutputSpec
from llm_annotator.core.task import Task
from llm_annotator.core.votes import count_error
from llm_annotator.outputs.tables import EXPLANATIONS

#: Rows of ``explanations.csv`` written at a time.
EXPLANATION_ROWS = 10_000


@dataclass
class OutputSums:
    """One output's numbers per item, combined over the annotators."""

    probs: np.ndarray               # item x category (NaN: no valid vote)
    n_valid: np.ndarray             # valid votes of this output per item
    moments: np.ndarray | None      # a numeric output's item x (E[x], E[x²]); else None


class Rows(Protocol):
    """Where a streamed run's votes go: item id -> input row, and a sorter by row (both on
    disk: :class:`llm_annotator.store.item_index.ItemIndex`)."""

    def row_of(self, item_id: str) -> int | None: ...

    def row_order(self) -> Any: ...


class LabelSums:
    """What the log holds: its tally, read in one pass, and every output's sums per item,
    summed a window of rows at a time (:meth:`at`) from the log's lines in row order.

    Nothing per item is held but the window asked for: the first pass keeps each vote's
    row and byte offset in a sorter on disk, and :meth:`at` reads the window's lines again.
    """

    def __init__(self, path: Path, order: Iterable[tuple[int, int]], task: Task, names: Sequence[str],
                 tally: dict[str, Any], explanation_keys: frozenset[str]) -> None:
        self.log, self.task, self.tally, self.explanation_keys = path, task, tally, explanation_keys
        self._annotator = {name: a for a, name in enumerate(names)}
        self._order = iter(order)
        self._next: tuple[int, int] | None = next(self._order, None)

    def at(self, positions: Sequence[int]) -> dict[str, OutputSums]:
        """Every output's sums of the rows at ``positions`` (ascending; each call's rows
        after the last call's), the primary output's first."""
        if not positions:
            return {spec.name: OutputSums(np.zeros((0, len(spec.categories))), np.zeros(0, dtype=np.int64), None)
                    for spec in self.task.output_specs}
        low, high = positions[0], positions[-1] + 1
        sums = [_Accumulator(spec, len(self._annotator), high - low) for spec in self.task.output_specs]
        with self.log.open("rb") as handle:
            while self._next is not None and self._next[0] < high:
                row, offset = self._next
                if row >= low:
                    handle.seek(offset)
                    vote = json.loads(handle.readline())
                    a = self._annotator[vote["annotator"]]
                    for n, (spec, accumulator) in enumerate(zip(self.task.output_specs, sums, strict=True)):
                        answer = _answer(vote, spec, n == 0)
                        if answer is not None:
                            label, value, distribution, _ = answer
                            accumulator.add(a, row - low, label, value, distribution)
                self._next = next(self._order, None)
        window = [p - low for p in positions]
        out = {}
        for spec, accumulator in zip(self.task.output_specs, sums, strict=True):
            whole = accumulator.result()
            out[spec.name] = OutputSums(whole.probs[window], whole.n_valid[window],
                                        whole.moments[window] if whole.moments is not None else None)
        return out


class _Accumulator:
    """Per annotator and item sums of one output's valid votes."""

    def __init__(self, spec: OutputSpec, n_annotators: int, n_rows: int) -> None:
        self.spec = spec
        self.categories = list(spec.categories)
        self.position = {label: k for k, label in enumerate(self.categories)}
        self.sums = np.zeros((n_annotators, n_rows, len(self.categories)))
        self.counts = np.zeros((n_annotators, n_rows), dtype=np.int64)
        numeric = spec.kind == "numeric"
        self.moments = np.zeros((n_annotators, n_rows, 2)) if numeric else None
        self.numbers = np.zeros((n_annotators, n_rows), dtype=np.int64) if numeric else None

    def add(self, a: int, row: int, label: Any, value: Any, distribution: Any) -> None:
        if label is None:
            return
        if self.spec.kind == "multi_label":
            for member in members(value, label):
                if member not in self.position:
                    raise ValueError(f"vote label {member!r} is not in output {self.spec.name!r}'s label set")
                self.sums[a, row, self.position[member]] += 1.0
        else:
            self.sums[a, row] += vote_vector(label, distribution, self.categories, self.position)
        self.counts[a, row] += 1
        if self.moments is not None and self.numbers is not None:
            x = number(value, label, self.spec)
            if x == x:
                self.moments[a, row] += (x, x * x)
                self.numbers[a, row] += 1

    def result(self) -> OutputSums:
        with np.errstate(invalid="ignore", divide="ignore"):
            probs = combine_soft(self.sums / self.counts[:, :, None], self.counts > 0)
            moments = None
            if self.moments is not None and self.numbers is not None:
                moments = combine_soft(self.moments / self.numbers[:, :, None], self.numbers > 0)
        return OutputSums(probs, self.counts.sum(axis=0), moments)


def _answer(vote: Mapping[str, Any], spec: OutputSpec, primary: bool) -> tuple[Any, Any, Any, Any] | None:
    """(label, value, distribution, error) of one output in one vote, as
    :func:`llm_annotator.core.votes.output_frame` reads it: a failed request or a refusal
    has no value of any output, the log-probability distribution is the primary's alone.
    None: the vote's annotator was not asked this output (its outputs lack it)."""
    cell = vote.get("outputs")
    if primary:
        mine = cell.get(spec.name) if isinstance(cell, Mapping) else None
        return vote.get("label"), (mine or {}).get("value"), vote.get("distribution"), vote.get("error")
    if isinstance(cell, Mapping) and spec.name not in cell:
        return None
    kind = ErrorKind.of(vote.get("error"))
    if isinstance(cell, Mapping) and (kind is None or (kind.invalid_answer and kind is not ErrorKind.REFUSED)):
        mine = cell.get(spec.name) or {"error": f"{ErrorKind.MISSING_FIELD.value}:{spec.name}"}
        return mine.get("label"), mine.get("value"), None, mine.get("error")
    return None, None, None, vote.get("error")


def sum_votes(path: Path, rows: Rows, task: Task, names: Sequence[str]) -> LabelSums:
    """The tally of ``votes.jsonl`` and its per-item soft labels of every output, by the
    rows of ``rows`` (item id -> input row); a vote of an item ``rows`` does not know is
    not the job's and is left out."""
    annotator = {name: a for a, name in enumerate(names)}
    specs = task.output_specs
    order = rows.row_order()
    reasons: list[dict[str, int]] = [{} for _ in specs]  # votes per error kind, of each output
    asked = [0] * len(specs)  # votes per output: the annotators that answer it
    valid = [0] * len(specs)
    by_annotator = [0] * len(names)
    keys: set[str] = set()
    n_votes, cost, offset = 0, 0.0, 0
    with path.open("rb") as handle:
        for line in handle:
            at, offset = offset, offset + len(line)
            vote = json.loads(line)
            row = rows.row_of(vote["item_id"])
            if row is None:
                continue
            order.add(row, at)
            n_votes += 1
            cost += float(vote.get("cost_usd") or 0.0)
            explanation = vote.get("explanation")
            if isinstance(explanation, Mapping):
                keys.update(explanation)
            if vote.get("label") is None:
                count_error(reasons[0], str(vote.get("error")))
            else:
                by_annotator[annotator[vote["annotator"]]] += 1
            for n, spec in enumerate(specs):
                answer = _answer(vote, spec, n == 0)
                if answer is None:
                    continue
                asked[n] += 1
                label, _, _, error = answer
                valid[n] += label is not None
                if label is None and n:
                    count_error(reasons[n], str(error))
    tally = {"votes": n_votes, "valid": valid[0], "errors": dict(sorted(reasons[0].items())), "cost_usd": cost,
             "valid_by_annotator": {name: by_annotator[a] for name, a in annotator.items()}}
    if len(specs) > 1:
        tally["by_output"] = {spec.name: {"votes": asked[n], "valid": valid[n],
                                          "by_reason": dict(sorted(reasons[n].items()))}
                              for n, spec in enumerate(specs)}
    return LabelSums(path, order, task, names, tally, frozenset(keys))


def output_tables(task: Task, item_ids: Sequence[str], positions: Sequence[int], sums: LabelSums,
                  n_requested: int | Mapping[str, int]) -> list[Any]:
    """Every output's labels table of the items at ``positions``: a categorical output's by
    :func:`~llm_annotator.outputs.tables.label_table`, the other kinds' by
    :func:`~llm_annotator.analysis.kinds.output_table` (what the in-memory results give).
    ``n_requested``: votes asked per item, or per output (annotators may answer some only)."""
    from llm_annotator.analysis.kinds import output_table
    from llm_annotator.outputs.tables import label_table

    tables = []
    outputs = sums.at(positions)
    for spec in task.output_specs:
        mine = outputs[spec.name]
        requested = n_requested[spec.name] if isinstance(n_requested, Mapping) else n_requested
        if spec.kind == "categorical":
            tables.append(label_table(item_ids, mine.probs, mine.n_valid, requested, list(spec.categories)))
        else:
            tables.append(output_table(spec, item_ids, mine.probs, mine.n_valid, requested, mine.moments))
    return tables


def write_labels(chunks: Iterable[tuple[Dataset, Any]], columns: Sequence[str], sums: LabelSums, task: Task,
                 n_requested: int | Mapping[str, int], out_dir: Path) -> None:
    """labels.csv and labels.jsonl, chunk by chunk, each through a rename; the input
    ``columns`` named as :func:`~llm_annotator.outputs.tables.output_names` says, every
    output of the task in its column group. A task with explanations (or votes with
    reasoning) also gets ``explanations.csv`` (:func:`write_explanations`)."""
    from llm_annotator.outputs.tables import (
        item_table,
        items_frame,
        soft_label_columns,
        write_csv_rows,
        write_jsonl_rows,
    )

    input_columns = list(columns)
    labels = list(task.labels)
    others = [spec.name for spec in task.output_specs[1:]]
    drop = soft_label_columns(task)

    def frames() -> Iterator[Any]:
        for dataset, _ in chunks:
            positions = [dataset.input_row(n) for n in range(len(dataset.rows))]
            items = items_frame(dataset.rows, dataset.item_ids, input_columns)
            table, *groups = output_tables(task, dataset.item_ids, positions, sums, n_requested)
            yield item_table(items, table, labels, dict(zip(others, groups, strict=True)))

    csv_tmp, jsonl_tmp = out_dir / f".labels.csv.{os.getpid()}.part", out_dir / f".labels.jsonl.{os.getpid()}.part"
    try:
        with csv_tmp.open("w", encoding="utf-8", newline="") as csv_out, \
                jsonl_tmp.open("w", encoding="utf-8") as jsonl_out:
            for number_, frame in enumerate(frames()):
                write_csv_rows(frame, csv_out, header=number_ == 0, drop=drop)
                write_jsonl_rows(frame, jsonl_out)
            for handle in (csv_out, jsonl_out):
                handle.flush()
                os.fsync(handle.fileno())
        csv_tmp.replace(out_dir / "labels.csv")
        jsonl_tmp.replace(out_dir / "labels.jsonl")
    finally:
        csv_tmp.unlink(missing_ok=True)
        jsonl_tmp.unlink(missing_ok=True)
    if task.explanations or sums.explanation_keys:
        write_explanations(sums.log, task, sums.explanation_keys, out_dir / EXPLANATIONS)


def write_explanations(path: Path, task: Task, keys: Iterable[str], out: Path) -> None:
    """``explanations.csv`` from ``votes.jsonl`` (``path``), in the log's order, written
    atomically: one row per vote with an explanation (item_id, annotator, sample_index,
    then the task's explanation fields and ``reasoning`` when ``keys`` holds it)."""
    from llm_annotator.outputs.tables import (
        explanation_fields,
        explanation_rows,
        explanation_table,
        write_csv_rows,
    )
    from llm_annotator.store.files import write_atomic

    fields = explanation_fields(task, keys)

    def votes() -> Iterator[dict[str, Any]]:
        with path.open(encoding="utf-8") as handle:
            for line in handle:
                yield json.loads(line)

    def write(handle: Any) -> None:
        batch: list[list[Any]] = []
        header = True
        for row in explanation_rows(votes(), fields):
            batch.append(row)
            if len(batch) == EXPLANATION_ROWS:
                write_csv_rows(explanation_table(batch, fields), handle, header=header, drop=())
                batch, header = [], False
        if batch or header:
            write_csv_rows(explanation_table(batch, fields), handle, header=header, drop=())

    write_atomic(out, write)


__all__ = ["EXPLANATION_ROWS", "LabelSums", "OutputSums", "Rows", "output_tables", "sum_votes",
           "write_explanations", "write_labels"]

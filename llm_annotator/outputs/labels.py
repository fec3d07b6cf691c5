"""``labels.csv``, ``labels.jsonl`` and ``explanations.csv`` of a streamed run, written chunk by chunk.

The log is read back into per-item sums of every output of the task (numbers only):
per annotator and item, the sum of its valid votes' category vectors (a multi-label
output's: one per label its set holds), their count, and for a numeric output the sums
of x and x². The labels are then written beside the input columns, one chunk of the
input at a time, each file through a rename: the primary output's columns, then one
column group per other output (:func:`llm_annotator.outputs.tables.item_table`), each
table by the rules of :func:`llm_annotator.analysis.kinds.output_table`. An in-memory
run writes the same files from its :class:`~llm_annotator.outputs.result.AnnotationResult`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from llm_annotator.analysis.aggregate import combine_soft, vote_vector
from llm_annotator.analysis.kinds import members, number
from llm_annotator.core.data import Dataset
from llm_annotator.core.errors import ErrorKind
from llm_annotator.core.outputs import OutputSpec
from llm_annotator.core.task import Task
from llm_annotator.core.votes import error_counts
from llm_annotator.outputs.tables import EXPLANATIONS

#: Rows of ``explanations.csv`` written at a time.
EXPLANATION_ROWS = 10_000


@dataclass
class OutputSums:
    """One output's numbers per item, combined over the annotators."""

    probs: np.ndarray               # item x category (NaN: no valid vote)
    n_valid: np.ndarray             # valid votes of this output per item
    moments: np.ndarray | None      # a numeric output's item x (E[x], E[x²]); else None


@dataclass
class LabelSums:
    """What the log holds, reduced to numbers per item."""

    probs: np.ndarray           # item x label of the primary output, combined over annotators (NaN: no valid vote)
    n_valid: np.ndarray         # valid votes per item
    tally: dict[str, Any]       # votes, valid, errors by kind, cost_usd
    outputs: dict[str, OutputSums] = field(default_factory=dict)  # every output's, the primary's first
    explanation_keys: frozenset[str] = frozenset()  # the keys the votes' explanations have
    log: Path = Path("votes.jsonl")  # the log they were read from


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


def sum_votes(path: Path, rows: Mapping[str, int], n_rows: int, task: Task, names: Sequence[str]) -> LabelSums:
    """Per-item soft labels of every output from ``votes.jsonl`` (``rows``: item id -> row number)."""
    annotator = {name: a for a, name in enumerate(names)}
    specs = task.output_specs
    sums = [_Accumulator(spec, len(names), n_rows) for spec in specs]
    errors: list[str] = []
    output_errors: list[list[str]] = [[] for _ in specs]
    asked = [0] * len(specs)  # votes per output: the annotators that answer it
    keys: set[str] = set()
    n_votes, cost = 0, 0.0
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            vote = json.loads(line)
            row = rows[vote["item_id"]]
            a = annotator[vote["annotator"]]
            n_votes += 1
            cost += float(vote.get("cost_usd") or 0.0)
            explanation = vote.get("explanation")
            if isinstance(explanation, Mapping):
                keys.update(explanation)
            if vote.get("label") is None:
                errors.append(str(vote.get("error")))
            for n, (spec, accumulator) in enumerate(zip(specs, sums, strict=True)):
                answer = _answer(vote, spec, n == 0)
                if answer is None:
                    continue
                asked[n] += 1
                label, value, distribution, error = answer
                accumulator.add(a, row, label, value, distribution)
                if label is None and n:
                    output_errors[n].append(str(error))
    counts = sums[0].counts
    outputs = {spec.name: accumulator.result() for spec, accumulator in zip(specs, sums, strict=True)}
    tally = {"votes": n_votes, "valid": int(counts.sum()), "errors": error_counts(errors), "cost_usd": cost,
             "valid_by_annotator": {name: int(counts[a].sum()) for name, a in annotator.items()}}
    if len(specs) > 1:
        tally["by_output"] = {spec.name: {"votes": asked[n], "valid": int(accumulator.counts.sum()),
                                          "by_reason": error_counts(errors if n == 0 else output_errors[n])}
                              for n, (spec, accumulator) in enumerate(zip(specs, sums, strict=True))}
    primary = outputs[specs[0].name]
    return LabelSums(primary.probs, primary.n_valid, tally, outputs, frozenset(keys), path)


def output_tables(task: Task, item_ids: Sequence[str], positions: Sequence[int], sums: LabelSums,
                  n_requested: int | Mapping[str, int]) -> list[Any]:
    """Every output's labels table of the items at ``positions``: a categorical output's by
    :func:`~llm_annotator.outputs.tables.label_table`, the other kinds' by
    :func:`~llm_annotator.analysis.kinds.output_table` (what the in-memory results give).
    ``n_requested``: votes asked per item, or per output (annotators may answer some only)."""
    from llm_annotator.analysis.kinds import output_table
    from llm_annotator.outputs.tables import label_table

    tables = []
    for spec in task.output_specs:
        mine = sums.outputs.get(spec.name) or OutputSums(sums.probs, sums.n_valid, None)
        probs, n_valid = mine.probs[positions], mine.n_valid[positions]
        requested = n_requested[spec.name] if isinstance(n_requested, Mapping) else n_requested
        if spec.kind == "categorical":
            tables.append(label_table(item_ids, probs, n_valid, requested, list(spec.categories)))
        else:
            moments = mine.moments[positions] if mine.moments is not None else None
            tables.append(output_table(spec, item_ids, probs, n_valid, requested, moments))
    return tables


def write_labels(chunks: Iterable[tuple[Dataset, Any]], rows: Mapping[str, int], columns: Sequence[str],
                 sums: LabelSums, task: Task, n_requested: int | Mapping[str, int], out_dir: Path) -> None:
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
            positions = [rows[i] for i in dataset.item_ids]
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


__all__ = ["EXPLANATION_ROWS", "LabelSums", "OutputSums", "output_tables", "sum_votes", "write_explanations",
           "write_labels"]

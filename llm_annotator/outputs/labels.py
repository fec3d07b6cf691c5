"""``labels.csv`` and ``labels.jsonl`` of a streamed run, written chunk by chunk.

The log is read back into per-item label sums (numbers only), then the labels are
written beside the input columns, one chunk of the input at a time, each file through
a rename. An in-memory run writes the same files from its
:class:`~llm_annotator.outputs.result.AnnotationResult`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from llm_annotator.analysis.aggregate import combine_soft, vote_vector
from llm_annotator.core.data import Dataset
from llm_annotator.core.task import Task
from llm_annotator.core.votes import error_counts


@dataclass
class LabelSums:
    """What the log holds, reduced to numbers per item."""

    probs: np.ndarray           # item x label, combined over annotators (NaN: no valid vote)
    n_valid: np.ndarray         # valid votes per item
    tally: dict[str, Any]       # votes, valid, errors by kind, cost_usd


def sum_votes(path: Path, rows: Mapping[str, int], n_rows: int, task: Task, names: Sequence[str]) -> LabelSums:
    """Per-item soft labels from ``votes.jsonl`` (``rows``: item id -> row number)."""
    labels = list(task.labels)
    position = {label: k for k, label in enumerate(labels)}
    annotator = {name: a for a, name in enumerate(names)}
    sums = np.zeros((len(names), n_rows, len(labels)))
    counts = np.zeros((len(names), n_rows), dtype=np.int64)
    errors: list[str] = []
    n_votes, cost = 0, 0.0
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            vote = json.loads(line)
            row = rows[vote["item_id"]]
            a = annotator[vote["annotator"]]
            n_votes += 1
            cost += float(vote.get("cost_usd") or 0.0)
            label = vote.get("label")
            if label is None:
                errors.append(str(vote.get("error")))
                continue
            sums[a, row] += vote_vector(label, vote.get("distribution"), labels, position)
            counts[a, row] += 1
    has = counts > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        per_annotator = sums / counts[:, :, None]
    combined = combine_soft(per_annotator, has)
    tally = {"votes": n_votes, "valid": int(counts.sum()), "errors": error_counts(errors), "cost_usd": cost,
             "valid_by_annotator": {name: int(counts[a].sum()) for name, a in annotator.items()}}
    return LabelSums(combined, counts.sum(axis=0), tally)


def write_labels(chunks: Iterable[tuple[Dataset, Any]], rows: Mapping[str, int], columns: Sequence[str],
                 sums: LabelSums, task: Task, n_requested: int, out_dir: Path) -> None:
    """labels.csv and labels.jsonl, chunk by chunk, each through a rename; the input
    ``columns`` named as :func:`~llm_annotator.outputs.tables.output_names` says."""
    from llm_annotator.outputs.tables import (
        item_table,
        items_frame,
        label_table,
        write_csv_rows,
        write_jsonl_rows,
    )

    input_columns = list(columns)
    labels = list(task.labels)

    def frames() -> Iterator[Any]:
        for dataset, _ in chunks:
            positions = [rows[i] for i in dataset.item_ids]
            items = items_frame(dataset.rows, dataset.item_ids, input_columns)
            table = label_table(dataset.item_ids, sums.probs[positions], sums.n_valid[positions], n_requested, labels)
            yield item_table(items, table, labels)

    csv_tmp, jsonl_tmp = out_dir / f".labels.csv.{os.getpid()}.part", out_dir / f".labels.jsonl.{os.getpid()}.part"
    try:
        with csv_tmp.open("w", encoding="utf-8", newline="") as csv_out, \
                jsonl_tmp.open("w", encoding="utf-8") as jsonl_out:
            for number, frame in enumerate(frames()):
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


__all__ = ["LabelSums", "sum_votes", "write_labels"]

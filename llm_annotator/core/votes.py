"""The one data model: a vote, one row per (item_id, annotator, sample_index).

Every figure of a run — soft labels, consensus, agreement, reports, exports — is a
function of the table of votes (docs/votes.md lists every field).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from typing import Any

from llm_annotator.core.errors import ErrorKind

#: The format of the files a run directory holds (votes.jsonl, run.json, ledger.jsonl).
FORMAT_VERSION = 2

VoteKey = tuple[str, str, int]


@dataclass(frozen=True, slots=True)
class Vote:
    """One answer of one annotator to one item (see docs/votes.md for every field)."""

    item_id: str
    annotator: str
    sample_index: int
    label: str | None
    error: str | None
    raw: str | None
    distribution: dict[str, float] | None
    model: str
    prompt_hash: str
    template_hash: str
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: float = 0.0
    latency_s: float = 0.0
    cached: bool = False
    deployment: str | None = None
    fingerprint: str = ""
    # a structured task's outputs, each {"label", "value", "error"} (None keys left out),
    # the primary's as in label/error; and the answer's free-text fields (never labels)
    outputs: dict[str, dict[str, Any]] | None = None
    explanation: dict[str, str] | None = None
    # the pool ids of the labelled examples its prompt showed (a task with demonstrations)
    demonstrations: list[str] | None = None

    @property
    def key(self) -> VoteKey:
        return (self.item_id, self.annotator, self.sample_index)

    @property
    def error_kind(self) -> ErrorKind | None:
        return ErrorKind.of(self.error)

    def to_json(self) -> str:
        """One line of votes.jsonl (a plain one-label task's votes leave out the empty
        ``outputs``, ``explanation`` and ``demonstrations``)."""
        record = {f: getattr(self, f) for f in _ALWAYS}
        for name in _OPTIONAL:
            value = getattr(self, name)
            if value is not None:
                record[name] = value
        return _ENCODER.encode(record)

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> Vote:
        return cls(**{f: data[f] for f in VOTE_COLUMNS if f in data})


VOTE_COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(Vote))
_OPTIONAL = ("outputs", "explanation", "demonstrations")
_ALWAYS = tuple(f for f in VOTE_COLUMNS if f not in _OPTIONAL)
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))  # one encoder: dumps(**kw) builds one per call


def votes_frame(votes: Iterable[Vote]) -> Any:
    """The votes as a pandas DataFrame with the columns of :data:`VOTE_COLUMNS`."""
    import pandas as pd

    rows = [{f: getattr(v, f) for f in VOTE_COLUMNS} for v in votes]
    frame = pd.DataFrame(rows, columns=list(VOTE_COLUMNS))
    return frame.astype({"sample_index": "int64", "tokens_in": "int64", "tokens_out": "int64",
                         "cost_usd": "float64", "latency_s": "float64", "cached": "bool"})


def output_frame(frame: Any, primary: str, name: str) -> Any:
    """The votes of one output (``name``) of a structured task: the votes table with that
    output's ``label``, ``value`` and ``error`` (and an ``output`` column). A vote whose
    request failed, or that a content filter refused, is the same for every output; the
    log-probability ``distribution`` belongs to the primary output alone."""
    out = frame.copy()
    rows = len(out)
    cells = out["outputs"].tolist() if "outputs" in out else [None] * rows
    labels: list[Any] = []
    values: list[Any] = []
    errors: list[Any] = []
    keep: list[bool] = []
    for cell, label, error in zip(cells, out["label"].tolist(), out["error"].tolist(), strict=True):
        kind = ErrorKind.of(error)
        # a vote with a label and no outputs (a reviewer's, an input column's) labels the primary
        # only; a vote whose outputs lack this one is an annotator's that was not asked it
        keep.append(name == primary or (name in cell if isinstance(cell, dict) else kind is not None))
        own = isinstance(cell, dict) and (kind is None or (kind.invalid_answer and kind is not ErrorKind.REFUSED))
        if own:
            mine = cell.get(name)
            mine = mine if mine is not None else {"error": f"{ErrorKind.MISSING_FIELD.value}:{name}"}
            labels.append(mine.get("label"))
            values.append(mine.get("value"))
            errors.append(mine.get("error"))
        else:
            labels.append(label if name == primary else None)
            values.append(None)
            errors.append(error if (error is not None and error == error) or name == primary
                          else f"{ErrorKind.MISSING_FIELD.value}:{name}")
    out["label"] = labels
    out["value"] = values
    out["error"] = errors
    if name != primary and "distribution" in out:
        out["distribution"] = None
    out.insert(2, "output", name)
    return out[keep].reset_index(drop=True) if not all(keep) else out


def count_error(counts: dict[str, int], error: Any) -> None:
    """One more vote of ``error``'s kind in ``counts`` (None/NaN: no error, not counted)."""
    kind = ErrorKind.of(error)
    if kind is not None:
        counts[kind.value] = counts.get(kind.value, 0) + 1


def error_counts(errors: Iterable[Any]) -> dict[str, int]:
    """Votes per error kind, from an iterable of ``error`` texts (None/NaN skipped)."""
    counts: dict[str, int] = {}
    for error in errors:
        count_error(counts, error)
    return dict(sorted(counts.items()))


def invalid_and_failed(counts: dict[str, int]) -> tuple[int, int]:
    """(invalid answers, failed requests) of :func:`error_counts`."""
    invalid = sum(n for kind, n in counts.items() if ErrorKind(kind).invalid_answer)
    return invalid, sum(counts.values()) - invalid


__all__ = ["FORMAT_VERSION", "VOTE_COLUMNS", "Vote", "VoteKey", "count_error", "error_counts",
           "invalid_and_failed", "output_frame", "votes_frame"]

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

    @property
    def key(self) -> VoteKey:
        return (self.item_id, self.annotator, self.sample_index)

    @property
    def error_kind(self) -> ErrorKind | None:
        return ErrorKind.of(self.error)

    def to_json(self) -> str:
        return _ENCODER.encode({f: getattr(self, f) for f in VOTE_COLUMNS})

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> Vote:
        return cls(**{f: data[f] for f in VOTE_COLUMNS if f in data})


VOTE_COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(Vote))
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))  # one encoder: dumps(**kw) builds one per call


def votes_frame(votes: Iterable[Vote]) -> Any:
    """The votes as a pandas DataFrame with the columns of :data:`VOTE_COLUMNS`."""
    import pandas as pd

    rows = [{f: getattr(v, f) for f in VOTE_COLUMNS} for v in votes]
    frame = pd.DataFrame(rows, columns=list(VOTE_COLUMNS))
    return frame.astype({"sample_index": "int64", "tokens_in": "int64", "tokens_out": "int64",
                         "cost_usd": "float64", "latency_s": "float64", "cached": "bool"})


def error_counts(errors: Iterable[Any]) -> dict[str, int]:
    """Votes per error kind, from an iterable of ``error`` texts (None/NaN skipped)."""
    counts: dict[str, int] = {}
    for error in errors:
        kind = ErrorKind.of(error)
        if kind is not None:
            counts[kind.value] = counts.get(kind.value, 0) + 1
    return dict(sorted(counts.items()))


def invalid_and_failed(counts: dict[str, int]) -> tuple[int, int]:
    """(invalid answers, failed requests) of :func:`error_counts`."""
    invalid = sum(n for kind, n in counts.items() if ErrorKind(kind).invalid_answer)
    return invalid, sum(counts.values()) - invalid


__all__ = ["FORMAT_VERSION", "VOTE_COLUMNS", "Vote", "VoteKey", "error_counts", "invalid_and_failed", "votes_frame"]

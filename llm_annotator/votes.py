"""The votes table: one row per (item_id, annotator, sample_index), and its JSONL log.

``votes.jsonl`` is appended to as answers arrive. On a restart the log is read back, a
torn last line (the process was killed mid-write) is cut off, votes asked with another
prompt are dropped, and only the missing votes are requested again: none lost, none
duplicated.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import IO, Any

from .errors import RunDirError

FORMAT_VERSION = 1

#: Errors that mean "no answer came" (not an invalid answer): a re-run asks again.
TRANSIENT_ERRORS = frozenset({"rate_limited", "timeout", "server_error", "connection_error",
                              "api_error", "empty_response", "error", "batch_failed"})


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

    @property
    def key(self) -> tuple[str, str, int]:
        return (self.item_id, self.annotator, self.sample_index)

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


def read_votes(path: str | Path) -> Iterator[Vote]:
    """Votes from a ``votes.jsonl`` file; a torn last line is skipped."""
    with Path(path).open(encoding="utf-8") as handle:
        for line in handle:
            if not line.endswith("\n"):
                break
            try:
                yield Vote.from_mapping(json.loads(line))
            except (json.JSONDecodeError, TypeError, KeyError):
                continue


class VoteLog:
    """An append-only ``votes.jsonl`` in a run directory, locked against a second writer."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self.path = self.directory / "votes.jsonl"
        self._handle: IO[str] | None = None
        self._lock: IO[str] | None = None
        self.repaired = False
        self.dropped = 0

    def open(self, wanted: Mapping[tuple[str, str, int], str], *,
             keep: bool = True) -> dict[tuple[str, str, int], Vote | None]:
        """Lock the directory, read back the votes still wanted, open for appending.

        ``wanted`` maps each vote key to its current prompt hash (anything with ``get``);
        recorded votes with another hash or an unknown key are dropped (the file is
        rewritten atomically). Returns the kept votes by key; with ``keep=False`` only
        their keys (values None), so a resumed corpus larger than memory stays on disk.
        """
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            self._lock = (self.directory / ".lock").open("w")
        except OSError as exc:
            raise RunDirError(f"cannot write the output directory {self.directory}: {exc.strerror}",
                              fix="choose a writable --out directory") from None
        try:
            fcntl.flock(self._lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise RunDirError(f"another process is annotating into {self.directory}",
                              fix="wait for it to finish, or choose another --out directory") from None
        kept: dict[tuple[str, str, int], Vote | None] = {}
        if self.path.exists():
            rewrite = self._read_back(wanted, kept, keep=keep, out=None)
            if rewrite:  # a second pass copies the kept lines: nothing but their keys is held
                tmp = self.path.with_suffix(".jsonl.tmp")
                with tmp.open("w", encoding="utf-8") as out:
                    self._read_back(wanted, {}, keep=False, out=out)
                    out.flush()
                    os.fsync(out.fileno())
                os.replace(tmp, self.path)
        try:
            self._handle = self.path.open("a", encoding="utf-8", buffering=1 << 16)
        except OSError as exc:
            raise RunDirError(f"cannot write {self.path}: {exc.strerror}",
                              fix="choose a writable --out directory") from None
        return kept

    def _read_back(self, wanted: Mapping[tuple[str, str, int], str], kept: dict[tuple[str, str, int], Vote | None],
                   *, keep: bool, out: IO[str] | None) -> bool:
        """Fill ``kept`` with the wanted votes of the log (copying their lines to ``out``);
        True when a line had to be dropped or repaired."""
        rewrite = False
        dropped = 0
        with self.path.open(encoding="utf-8", errors="replace") as handle:
            for line in handle:
                if not line.endswith("\n"):
                    self.repaired = rewrite = True
                    break
                try:
                    vote = Vote.from_mapping(json.loads(line))
                except (json.JSONDecodeError, TypeError, KeyError):
                    self.repaired = rewrite = True
                    continue
                if (wanted.get(vote.key) != vote.prompt_hash or vote.key in kept
                        or str(vote.error).split(":", 1)[0] in TRANSIENT_ERRORS):
                    dropped += 1
                    rewrite = True
                    continue
                kept[vote.key] = vote if keep else None
                if out is not None:
                    out.write(line)
        if out is None:
            self.dropped = dropped
        return rewrite

    def write(self, votes: Iterable[Vote]) -> None:
        assert self._handle is not None
        try:
            self._handle.write("".join(v.to_json() + "\n" for v in votes))
        except OSError as exc:
            raise RunDirError(f"cannot append to {self.path}: {exc.strerror}",
                              fix="free disk space or choose another --out directory; "
                                  "answers are cached, a re-run resumes") from None

    def flush(self) -> None:
        if self._handle is not None:
            try:
                self._handle.flush()
            except OSError as exc:
                raise RunDirError(f"cannot append to {self.path}: {exc.strerror}",
                                  fix="free disk space or choose another --out directory; "
                                      "answers are cached, a re-run resumes") from None

    def close(self) -> None:
        try:
            if self._handle is not None:
                self.flush()
                os.fsync(self._handle.fileno())
                self._handle.close()
        finally:
            self._handle = None
            if self._lock is not None:
                fcntl.flock(self._lock.fileno(), fcntl.LOCK_UN)
                self._lock.close()
                self._lock = None


def write_atomic(path: Path, content: str | Callable[[IO[str]], None]) -> None:
    """Write ``content`` (text, or a function that writes to the file) to ``path`` through a
    temporary file, fsync and a rename: readers see the old file or the whole new one."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        with tmp.open("w", encoding="utf-8", newline="") as out:
            if isinstance(content, str):
                out.write(content)
            else:
                content(out)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise RunDirError(f"cannot write {path}: {exc.strerror}",
                          fix="free disk space or choose a writable --out directory") from None


__all__ = ["FORMAT_VERSION", "TRANSIENT_ERRORS", "VOTE_COLUMNS", "Vote", "VoteLog", "read_votes", "votes_frame", "write_atomic"]

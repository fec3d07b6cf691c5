"""``votes.jsonl``: the run's votes, appended as answers arrive.

On a restart the log is read back: a torn last line (the process was killed mid-write)
is cut off, votes whose request fingerprint is not what the job asks now are dropped
(stale), failed requests are dropped (asked again), and only the missing votes are
requested: none lost, none duplicated. The run directory's owner
(:class:`llm_annotator.store.rundir.RunDir`) holds the lock while the log is open.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, MutableMapping
from pathlib import Path
from typing import IO

from llm_annotator.core.errors import RunDirError
from llm_annotator.core.votes import Vote, VoteKey


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
    """An append-only ``votes.jsonl``."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._handle: IO[str] | None = None
        self.repaired = False
        self.dropped = 0      # votes recorded for another fingerprint (other parameters or endpoint)
        self.failed = 0       # failed requests of earlier runs, asked again
        self.reparsed = 0

    def open(self, wanted: Mapping[VoteKey, str], *, keep: bool = True,
             judge: Callable[[Vote], Vote] | None = None,
             keys: Callable[[], MutableMapping[VoteKey, Vote | None]] = dict) -> MutableMapping[VoteKey, Vote | None]:
        """Read back the votes still wanted and open for appending.

        ``wanted`` maps each vote key to the request fingerprint the job asks now
        (anything with ``get``); recorded votes with another fingerprint, an unknown key
        or a failed request are dropped (the file is rewritten atomically). Returns the
        kept votes by key; with ``keep=False`` only their keys (values None), in what
        ``keys`` makes (a streamed run's: a table on disk, so a resumed corpus larger than
        memory stays there). ``judge`` parses a recorded answer again by the task's
        current rules; a vote it changes is rewritten.
        """
        kept = keys()
        if self.path.exists():
            rewrite = self._read_back(wanted, kept, keep=keep, out=None, judge=judge)
            if rewrite:  # a second pass copies the kept lines: nothing but their keys is held
                tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
                try:
                    with tmp.open("w", encoding="utf-8") as out:
                        self._read_back(wanted, keys(), keep=False, out=out, judge=judge)
                        out.flush()
                        os.fsync(out.fileno())
                    os.replace(tmp, self.path)
                finally:
                    tmp.unlink(missing_ok=True)
        try:
            self._handle = self.path.open("a", encoding="utf-8", buffering=1 << 16)
        except OSError as exc:
            raise RunDirError(f"cannot write {self.path}: {exc.strerror}",
                              fix="choose a writable --out directory") from None
        return kept

    def _read_back(self, wanted: Mapping[VoteKey, str], kept: MutableMapping[VoteKey, Vote | None],
                   *, keep: bool, out: IO[str] | None, judge: Callable[[Vote], Vote] | None) -> bool:
        """Fill ``kept`` with the wanted votes of the log (copying their lines to ``out``);
        True when a line had to be dropped or repaired."""
        rewrite = False
        dropped = failed = reparsed = 0
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
                kind = vote.error_kind
                if not vote.fingerprint or wanted.get(vote.key) != vote.fingerprint or vote.key in kept:
                    dropped += 1
                    rewrite = True
                    continue
                if kind is not None and kind.transient:
                    failed += 1
                    rewrite = True
                    continue
                if judge is not None:
                    judged = judge(vote)
                    if judged is not vote:
                        vote, line = judged, judged.to_json() + "\n"
                        reparsed += 1
                        rewrite = True
                kept[vote.key] = vote if keep else None
                if out is not None:
                    out.write(line)
        if out is None:
            self.dropped, self.failed, self.reparsed = dropped, failed, reparsed
        return rewrite

    def write(self, votes: Iterable[Vote]) -> None:
        assert self._handle is not None
        try:
            self._handle.write("".join(v.to_json() + "\n" for v in votes))
        except OSError as exc:
            raise self._cannot_append(exc) from None

    def flush(self) -> None:
        if self._handle is not None:
            try:
                self._handle.flush()
            except OSError as exc:
                raise self._cannot_append(exc) from None

    def _cannot_append(self, exc: OSError) -> RunDirError:
        return RunDirError(f"cannot append to {self.path}: {exc.strerror}",
                           fix="free disk space or choose another --out directory; answers are cached, a re-run resumes")

    def close(self) -> None:
        if self._handle is not None:
            try:
                self.flush()
                os.fsync(self._handle.fileno())
            finally:
                self._handle.close()
                self._handle = None


__all__ = ["VoteLog", "read_votes"]

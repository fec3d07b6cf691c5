"""``RUN_DIR/ledger.jsonl``: what the job has spent, or may have been billed, across runs.

One line per settled request (and per submitted and collected batch). A budget covers
the job: a re-run, a resume or a batch submission starts from the ledger's total, not
from zero. Entries::

    {"usd": 0.0012, "kind": "billed", "estimated": false}
    {"usd": 0.0030, "kind": "may_be_billed"}                    # a timeout, a dropped answer
    {"usd": 0.2000, "kind": "batch_reserved", "batch": "0001-gpt-4o.jsonl"}
    {"usd": 0.1100, "kind": "batch_billed", "batch": "0001-gpt-4o.jsonl"}

A collected batch's billed entry replaces its reservation. Without a run directory the
ledger lives in memory and covers the one call. Each entry is one ``write`` to a file
opened for appending, so the worker processes of one job (``--workers``) append to the
same ledger without tearing each other's lines.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from llm_annotator.core.errors import RunDirError

KINDS = frozenset({"billed", "may_be_billed", "batch_reserved", "batch_billed"})


class Ledger:
    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        self._fd: int | None = None
        self._spent = 0.0
        self._reserved: dict[str, float] = {}   # batch -> reserved dollars, until billed
        self.estimated = 0                       # entries whose cost was estimated
        if path is not None and path.exists():
            self._read(path)

    def _read(self, path: Path) -> None:
        with path.open(encoding="utf-8") as handle:
            for line in handle:
                if not line.endswith("\n"):
                    break  # torn by a kill: the request it records is counted by its vote's re-ask
                try:
                    entry = json.loads(line)
                    self._add(entry)
                except (json.JSONDecodeError, TypeError, KeyError, ValueError):
                    raise RunDirError(f"{path} has an unreadable line: {line[:80]!r}",
                                      fix="restore the file, or start the job anew with --overwrite") from None

    def _add(self, entry: dict[str, Any]) -> None:
        usd = float(entry["usd"])
        kind = entry["kind"]
        if kind not in KINDS or not usd >= 0:
            raise ValueError(kind)
        if kind == "batch_reserved":
            self._reserved[entry["batch"]] = self._reserved.get(entry["batch"], 0.0) + usd
        elif kind == "batch_billed":
            self._reserved.pop(entry["batch"], None)
            self._spent += usd
        else:
            self._spent += usd
        self.estimated += bool(entry.get("estimated"))

    @property
    def total(self) -> float:
        """Dollars spent or committed by the job so far."""
        return self._spent + sum(self._reserved.values())

    def record(self, usd: float, kind: str = "billed", *, estimated: bool = False, batch: str | None = None) -> None:
        entry: dict[str, Any] = {"usd": round(max(0.0, usd), 10), "kind": kind}
        if estimated:
            entry["estimated"] = True
        if batch is not None:
            entry["batch"] = batch
        self._add(entry)
        if self.path is None:
            return
        try:
            if self._fd is None:
                self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            os.write(self._fd, (json.dumps(entry, separators=(",", ":")) + "\n").encode())
        except OSError as exc:
            raise RunDirError(f"cannot append to {self.path}: {exc.strerror}",
                              fix="free disk space or choose another --out directory") from None

    def flush(self) -> None:
        """Nothing to do: every entry is written when it is recorded."""

    def close(self) -> None:
        if self._fd is not None:
            os.fsync(self._fd)
            os.close(self._fd)
            self._fd = None


__all__ = ["Ledger"]

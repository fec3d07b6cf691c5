"""``RUN_DIR/batches.json``: a batch job's arguments and every batch submitted for it.

Each request of a batch is named by its ``custom_id``, ``ITEM|ANNOTATOR|SAMPLES``; the
local copy of every request file (``RUN_DIR/batch/``) tells which votes a batch asked.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llm_annotator.core.errors import RunDirError
from llm_annotator.store.files import write_atomic

STATE = "batches.json"

VoteKey = tuple[str, str, int]


def custom_id(item_id: str, annotator: str, samples: Iterable[int]) -> str:
    return f"{item_id}|{annotator}|{','.join(str(s) for s in samples)}"


def parse_custom_id(text: str) -> tuple[str, str, list[int]]:
    item_id, annotator, samples = text.rsplit("|", 2)
    return item_id, annotator, [int(s) for s in samples.split(",")]


@dataclass
class BatchState:
    """``RUN_DIR/batches.json``: how to re-run the job, and every batch submitted for it."""

    run_dir: Path
    call: dict[str, Any] = field(default_factory=dict)
    batches: list[dict[str, Any]] = field(default_factory=list)
    _in_flight: set[VoteKey] | None = field(default=None, repr=False)
    _failures: dict[VoteKey, str] | None = field(default=None, repr=False)

    def forget(self) -> None:
        """Drop what was derived from the batches (after they were collected or resolved)."""
        self._in_flight = self._failures = None

    @classmethod
    def load(cls, run_dir: str | Path) -> BatchState:
        run_dir = Path(run_dir)
        path = run_dir / STATE
        if not path.exists():
            return cls(run_dir)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise RunDirError(f"{path} cannot be read: {exc}",
                              fix="restore it from a backup; batch ids are also on the provider's dashboard") from None
        return cls(run_dir, data.get("call", {}), data.get("batches", []))

    def save(self) -> None:
        payload = {"format_version": 1, "call": self.call, "batches": self.batches}
        write_atomic(self.run_dir / STATE, json.dumps(payload, indent=2, ensure_ascii=False) + "\n")

    def requests(self, entry: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
        """custom_id -> request body, from the local copy of a batch's input file."""
        out: dict[str, dict[str, Any]] = {}
        with (self.run_dir / entry["file"]).open(encoding="utf-8") as handle:
            for line in handle:
                request = json.loads(line)
                out[request["custom_id"]] = request["body"]
        return out

    def in_flight(self) -> set[VoteKey]:
        """Votes asked in batches that have not been collected: never to be asked again meanwhile."""
        if self._in_flight is None:
            self._in_flight = self._find_in_flight()
        return self._in_flight

    def _find_in_flight(self) -> set[VoteKey]:
        keys: set[VoteKey] = set()
        for entry in self.batches:
            if entry.get("status") in ("uploading", "abandoned") or entry.get("collected"):
                continue
            for cid in self.requests(entry):
                item_id, annotator, samples = parse_custom_id(cid)
                keys.update((item_id, annotator, s) for s in samples)
        return keys

    def failures(self) -> dict[VoteKey, str]:
        """The error of every vote whose batch line failed, unless a later batch asks it again."""
        if self._failures is None:
            self._failures = self._find_failures()
        return self._failures

    def _find_failures(self) -> dict[VoteKey, str]:
        out: dict[VoteKey, str] = {}
        for entry in self.batches:
            if entry.get("status") == "abandoned":
                continue
            if entry.get("collected"):
                for cid, error in entry.get("failed", {}).items():
                    item_id, annotator, samples = parse_custom_id(cid)
                    out.update({(item_id, annotator, s): error for s in samples})
            elif entry.get("status") != "uploading":
                for cid in self.requests(entry):
                    item_id, annotator, samples = parse_custom_id(cid)
                    for s in samples:
                        out.pop((item_id, annotator, s), None)
        return out

    def asked(self, custom_ids: Iterable[str]) -> None:
        """Note requests just submitted: in flight now, and no longer failed."""
        for cid in custom_ids:
            item_id, annotator, samples = parse_custom_id(cid)
            for s in samples:
                self.in_flight().add((item_id, annotator, s))
                if self._failures is not None:
                    self._failures.pop((item_id, annotator, s), None)

    def summary(self) -> list[dict[str, Any]]:
        keep = ("id", "annotator", "status", "requests", "votes", "counts", "collected", "submitted_at")
        return [{k: entry.get(k) for k in keep} for entry in self.batches]


__all__ = ["STATE", "BatchState", "VoteKey", "custom_id", "parse_custom_id"]

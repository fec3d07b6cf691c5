"""The run directory and its one owner.

:class:`RunDir` names every file of a run directory, holds its lock from the moment a
run opens it until every file of the run is written, refuses a different job, and reads
and writes ``run.json`` as a :class:`~llm_annotator.store.manifest.RunManifest`::

    RUN_DIR/
      run.json        the manifest: job identity, status, counts, cost (written first and last)
      votes.jsonl     one vote per line, appended as answers arrive
      ledger.jsonl    the job's spend across runs (the budget reads it)
      labels.csv      consensus and soft labels per item, beside the input columns
      labels.jsonl    the same as JSON lines, soft labels as lists
      explanations.csv  the answers' free-text fields per vote (tasks with explanations)
      batches.json    a batch job's arguments and batches; batch/ holds its request files
      .lock           held while a process writes here
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import shutil
from pathlib import Path
from typing import IO, Any

from llm_annotator.core.errors import RunDirError
from llm_annotator.core.identity import JobIdentity
from llm_annotator.store.files import write_atomic
from llm_annotator.store.ledger import Ledger
from llm_annotator.store.manifest import RunManifest
from llm_annotator.store.votelog import VoteLog

MANIFEST = "run.json"
VOTES = "votes.jsonl"
LEDGER = "ledger.jsonl"
LABELS_CSV = "labels.csv"
LABELS_JSONL = "labels.jsonl"
EXPLANATIONS = "explanations.csv"
BATCHES = "batches.json"
BATCH_DIR = "batch"
LOCK = ".lock"
#: What belongs to the job a directory holds (removed by ``overwrite``).
#: A worker process's votes (``--workers``), joined into votes.jsonl when its run ends.
WORKER_VOTES = "votes.w{}.jsonl"
#: A Ray worker's ledger (``--ray``: no lock across machines), joined into ledger.jsonl.
WORKER_LEDGER = "ledger.w{}.jsonl"
#: The budget the workers of a run share (the job's spend, their reservations).
SHARED_BUDGET = ".budget"
JOB_FILES = (MANIFEST, VOTES, LEDGER, LABELS_CSV, LABELS_JSONL, EXPLANATIONS, BATCHES, BATCH_DIR)


def read_manifest(directory: str | Path) -> dict[str, Any] | None:
    """``run.json`` of ``directory`` as a dict, None when there is none."""
    path = Path(directory) / MANIFEST
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise RunDirError(f"{path} cannot be read ({exc})",
                          fix="restore it, or start the job anew with --overwrite") from None
    if not isinstance(data, dict):
        raise RunDirError(f"{path} is not a run manifest", fix="start the job anew with --overwrite")
    return data


class RunDir:
    """One run directory, owned by one process at a time."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock: IO[str] | None = None

    def file(self, name: str) -> Path:
        return self.path / name

    @property
    def votes_path(self) -> Path:
        return self.path / VOTES

    # -- ownership ---------------------------------------------------------------------
    def open(self, job: JobIdentity | None = None, *, overwrite: bool = False) -> RunDir:
        """Lock the directory and check that it holds ``job`` (or nothing yet)."""
        try:
            self._created = not self.path.exists()
            self.path.mkdir(parents=True, exist_ok=True)
            self._lock = (self.path / LOCK).open("w")
        except OSError as exc:
            raise RunDirError(f"cannot write the output directory {self.path}: {exc.strerror}",
                              fix="choose a writable --out directory") from None
        try:
            fcntl.flock(self._lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self._lock.close()
            self._lock = None
            raise RunDirError(f"another process is annotating into {self.path} (or exporting or importing reviews)",
                              fix="wait for it to finish, or choose another --out directory") from None
        try:
            if job is not None:
                self._check_job(job, overwrite)
        except BaseException:
            self.close()
            raise
        return self

    def _check_job(self, job: JobIdentity, overwrite: bool) -> None:
        recorded = read_manifest(self.path) if not overwrite else None
        held = (recorded or {}).get("job") or {}
        if recorded is not None and held.get("fingerprint") != job.fingerprint:
            differs = job.differences(held) if held else ["written by an older version"]
            was = JobIdentity.model_validate({k: v for k, v in held.items() if k != "fingerprint"}).describe() \
                if held and "data" in held else "an earlier job"
            raise RunDirError(
                f"{self.path} holds another job ({was}); this one is {job.describe()} "
                f"(differs in: {', '.join(differs)})",
                fix="write to another --out directory, or pass --overwrite (overwrite=True) to replace that job")
        if overwrite:
            self.clear()

    def clear(self) -> None:
        """Remove the files of the job the directory holds."""
        for name in JOB_FILES:
            target = self.path / name
            if target.is_dir():
                shutil.rmtree(target)
            else:
                target.unlink(missing_ok=True)
        for target in [*self.path.glob(WORKER_VOTES.format("*")), *self.path.glob(WORKER_LEDGER.format("*")),
                       self.path / SHARED_BUDGET]:
            target.unlink(missing_ok=True)

    def close(self) -> None:
        if self._lock is not None:
            try:
                fcntl.flock(self._lock.fileno(), fcntl.LOCK_UN)
            finally:
                self._lock.close()
                self._lock = None

    def __enter__(self) -> RunDir:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- files -------------------------------------------------------------------------
    def begin(self, manifest: RunManifest) -> None:
        """Record the job as running; results of an earlier run are stale from here on."""
        self._fresh = not (self.path / MANIFEST).exists() and not (self.path / VOTES).exists()
        for name in (LABELS_CSV, LABELS_JSONL, EXPLANATIONS):
            (self.path / name).unlink(missing_ok=True)
        self.write_manifest(manifest)

    def abandon(self) -> None:
        """A run that failed: when it began the directory and wrote no vote, leave nothing."""
        if not getattr(self, "_fresh", False):
            return
        votes = self.path / VOTES
        if votes.exists() and votes.stat().st_size > 0:
            return
        for name in (MANIFEST, VOTES, LEDGER):
            (self.path / name).unlink(missing_ok=True)
        if getattr(self, "_created", False):  # this run made the directory: remove it too
            (self.path / LOCK).unlink(missing_ok=True)
            with contextlib.suppress(OSError):  # something else was put there meanwhile
                self.path.rmdir()

    def write_manifest(self, manifest: RunManifest) -> None:
        write_atomic(self.path / MANIFEST, json.dumps(manifest.to_dict(), indent=2, ensure_ascii=False) + "\n")

    def vote_log(self) -> VoteLog:
        return VoteLog(self.path / VOTES)

    def ledger(self) -> Ledger:
        return Ledger(self.path / LEDGER)


__all__ = ["BATCHES", "BATCH_DIR", "EXPLANATIONS", "JOB_FILES", "LABELS_CSV", "LABELS_JSONL", "LEDGER", "MANIFEST", "SHARED_BUDGET", "VOTES", "WORKER_LEDGER", "WORKER_VOTES",
           "RunDir", "read_manifest"]

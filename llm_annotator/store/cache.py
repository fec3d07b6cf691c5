"""The answer cache: one entry per (model, request, decoding parameters, sample index).

Keys are ``"v1:" + sha256(canonical JSON)`` of everything that changes an answer: the
model string, a hash of the API base, the rendered messages and answer schema (the
prompt hash), every decoding parameter and the sample index. The sample index keeps k
samples at temperature > 0 as k entries, so a re-run returns the same k answers.
Keys and values never contain API keys. Values are JSON text (no pickle; text UTF-8
cannot hold, such as a lone surrogate in an answer, as JSON escapes), checked on read: a
corrupted entry (or one whose value file is missing) is reported, dropped and fetched again.

A damaged database (truncated, overwritten, not SQLite) does not stop the cache from
opening: :meth:`AnswerCache.stats` and :meth:`AnswerCache.clear` work on it, and reading or
writing answers raises a one-line :class:`RunDirError` naming the directory and the fix
(``llm-annotator cache clear --cache-dir DIR``), before any call is made. A write that
fails (a full disk) raises one too, after keeping the answers in memory for the rest of
the process: the pipeline records them in ``votes.jsonl`` and goes on, batch collection
stops before it marks a batch collected.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sqlite3
import time
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from llm_annotator.core.errors import RunDirError

KEY_VERSION = "v1"
_ENCODER = json.JSONEncoder(ensure_ascii=True, separators=(",", ":"), default=str)
VALUE_FIELDS = ("content", "tokens_in", "tokens_out", "cost_usd", "latency_s")


def default_cache_dir() -> Path:
    """``$LLM_ANNOTATOR_CACHE_DIR``, else the user cache directory."""
    env = os.environ.get("LLM_ANNOTATOR_CACHE_DIR")
    if env:
        return Path(env)
    import platformdirs

    return Path(platformdirs.user_cache_dir("llm_annotator")) / "answers"


def key_prefix(*, model: str, api_base: str | None, params: Mapping[str, Any]) -> str:
    """The canonical JSON of what a key shares across one annotator's requests."""
    payload = {
        "model": model,
        "api_base": hashlib.sha256(api_base.encode()).hexdigest()[:16] if api_base else None,
        "params": dict(sorted(params.items())),
    }
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)


def cache_key(*, model: str, api_base: str | None, prompt_hash: str, params: Mapping[str, Any],
              sample_index: int, prefix: str | None = None) -> str:
    """``v1:`` + sha256 of (annotator prefix, prompt hash, sample index)."""
    if prefix is None:
        prefix = key_prefix(model=model, api_base=api_base, params=params)
    text = f"{prefix}|{prompt_hash}|{sample_index}"
    return f"{KEY_VERSION}:{hashlib.sha256(text.encode()).hexdigest()}"


class AnswerCache:
    """A process- and thread-safe disk cache of model answers (diskcache on SQLite)."""

    def __init__(self, directory: str | Path | None = None) -> None:
        self.directory = Path(directory) if directory is not None else default_cache_dir()
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise RunDirError(f"cannot use {self.directory} as the answer cache: {exc.strerror or exc}",
                              fix="choose another --cache-dir (or $LLM_ANNOTATOR_CACHE_DIR), or pass --no-cache") from None
        self.corrupted = 0   # entries dropped as unreadable
        self.unstored = 0    # answers a write failed to store (kept in memory for this process)
        self.damaged: str | None = None  # why the database cannot be read, when it cannot
        self._memory: dict[str, dict[str, Any]] = {}
        self._cache: Any = self._open()

    def _open(self) -> Any:
        import diskcache

        try:
            return diskcache.Cache(str(self.directory), size_limit=2**40, eviction_policy="none")
        except sqlite3.OperationalError as exc:  # cannot open at all (permissions, I/O): not damage
            raise RunDirError(f"cannot open the answer cache {self.directory}: {exc}",
                              fix="check the directory's permissions, choose another --cache-dir, or pass "
                                  "--no-cache") from None
        except sqlite3.DatabaseError as exc:  # truncated, overwritten, not a database
            self.damaged = str(exc)
            return None

    def _damage(self, exc: BaseException | None = None) -> RunDirError:
        if exc is not None:
            self.damaged = str(exc)
        return RunDirError(f"the answer cache {self.directory} is damaged ({self.damaged}); its answers cannot be read",
                           fix=f"run 'llm-annotator cache clear --cache-dir {self.directory}' (or delete that "
                               "directory): its answers are then asked again; or pass --no-cache")

    def check(self) -> None:
        """Raise the one-line error of a damaged cache (before a run asks anything)."""
        if self._cache is None:
            raise self._damage()

    def get(self, key: str) -> dict[str, Any] | None:
        if key in self._memory:
            return self._memory[key]
        self.check()
        try:
            raw = self._cache.get(key, default=None, retry=True)
        except sqlite3.DatabaseError as exc:
            raise self._damage(exc) from None
        except Exception as exc:  # unreadable entry or file
            self._drop(key, f"{type(exc).__name__}: {exc}")
            return None
        if raw is None:
            return None
        return self._check(key, raw)

    def get_many(self, keys: Iterable[str], chunk: int = 500) -> dict[str, dict[str, Any]]:
        """Many entries in few SQL queries (cache replay); anything unusual takes ``get``."""
        from diskcache.core import MODE_RAW

        found: dict[str, dict[str, Any]] = {}
        pending = []
        for key in keys:
            if key in self._memory:
                found[key] = self._memory[key]
            else:
                pending.append(key)
        if pending:
            self.check()
        for start in range(0, len(pending), chunk):
            part = pending[start:start + chunk]
            marks = ",".join("?" * len(part))
            try:
                rows = self._cache._sql(
                    f"SELECT key, mode, filename, value FROM Cache WHERE raw = 1 AND key IN ({marks})"
                    " AND (expire_time IS NULL OR expire_time > ?)", (*part, time.time())).fetchall()
            except sqlite3.DatabaseError as exc:
                raise self._damage(exc) from None
            for key, mode, filename, value in rows:
                if mode == MODE_RAW and filename is None and isinstance(value, str):
                    checked = self._check(key, value)
                else:
                    checked = self.get(key)
                    if checked is None and filename is not None:  # diskcache reads a lost file as a miss
                        self._drop(key, "its value file is missing")
                if checked is not None:
                    found[key] = checked
        return found

    def _check(self, key: str, raw: str) -> dict[str, Any] | None:
        try:
            value = json.loads(raw)
            if not isinstance(value, dict) or any(f not in value for f in VALUE_FIELDS):
                raise ValueError("missing fields")
            if value.get("key") != key:
                raise ValueError("entry stored under another key")
        except (TypeError, ValueError) as exc:
            self._drop(key, str(exc))
            return None
        return value

    def set(self, key: str, value: Mapping[str, Any]) -> None:
        self.set_many([(key, value)])

    def set_many(self, entries: Iterable[tuple[str, Mapping[str, Any]]]) -> None:
        """Store entries in one transaction (one commit for the k choices of a request).

        When the write fails (a full disk, a damaged database) the entries are kept in
        memory, where :meth:`get` and :meth:`get_many` of this process find them, and a
        one-line RunDirError says so: the caller decides whether to go on."""
        values = [(key, {**value, "key": key}) for key, value in entries]
        try:
            self.check()
            with self._cache.transact(retry=True):
                for key, value in values:
                    self._cache.set(key, _ENCODER.encode(value), retry=True)
        except (OSError, sqlite3.Error, RunDirError) as exc:
            self._memory.update(values)
            self.unstored += len(values)
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
            if isinstance(exc, RunDirError) or (isinstance(exc, sqlite3.DatabaseError)
                                                and not isinstance(exc, sqlite3.OperationalError)):
                raise self._damage(None if isinstance(exc, RunDirError) else exc) from None
            raise RunDirError(f"cannot store {len(values)} answers in the answer cache {self.directory} ({reason}); "
                              "they are kept in memory for this process",
                              fix="free disk space, or choose another --cache-dir, or pass --no-cache") from None

    def _drop(self, key: str, why: str) -> None:
        self.corrupted += 1
        warnings.warn(f"cache entry {key[:19]}… in {self.directory} is corrupted ({why}); fetching it again",
                      stacklevel=3)
        if self._cache is not None:
            with contextlib.suppress(Exception):
                self._cache.delete(key, retry=True)

    def stats(self) -> dict[str, Any]:
        """Entries, bytes on disk and, for a damaged database, why (``damaged``); works on a damaged cache."""
        size = 0
        for path in self.directory.rglob("*"):
            with contextlib.suppress(OSError):
                size += path.stat().st_size if path.is_file() else 0
        entries = 0
        if self._cache is not None:
            try:
                entries = len(self._cache)
            except sqlite3.DatabaseError as exc:
                self.damaged = str(exc)
        return {"directory": str(self.directory), "entries": entries, "bytes": size, "damaged": self.damaged}

    def clear(self) -> int:
        """Remove every entry; the number removed. A damaged database is removed with the
        cache's value files (nothing else in the directory) and made anew: 0 entries are
        counted then, since none could be read."""
        self._memory.clear()
        if self._cache is not None and self.damaged is None:
            try:
                return int(self._cache.clear(retry=True))
            except sqlite3.DatabaseError as exc:
                self.damaged = str(exc)
        self.close()
        for path in self.directory.glob("cache.db*"):
            path.unlink(missing_ok=True)
        for path in sorted(self.directory.rglob("*.val"), reverse=True):
            path.unlink(missing_ok=True)
        for path in sorted((p for p in self.directory.rglob("*") if p.is_dir()), reverse=True):
            with contextlib.suppress(OSError):
                path.rmdir()  # diskcache's value folders, once empty
        self.damaged = None
        self._cache = self._open()
        return 0

    def close(self) -> None:
        if self._cache is not None:
            with contextlib.suppress(Exception):  # a damaged database may fail to close cleanly
                self._cache.close()


__all__ = ["AnswerCache", "cache_key", "default_cache_dir", "key_prefix"]

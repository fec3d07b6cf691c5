"""The answer cache: one entry per (model, request, decoding parameters, sample index).

Keys are ``"v1:" + sha256(canonical JSON)`` of everything that changes an answer: the
model string, a hash of the API base, the rendered messages and answer schema (the
prompt hash), every decoding parameter and the sample index. The sample index keeps k
samples at temperature > 0 as k entries, so a re-run returns the same k answers.
Keys and values never contain API keys. Values are JSON text (no pickle), checked on
read: a corrupted entry is reported, dropped and fetched again.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

KEY_VERSION = "v1"
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))
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
        import diskcache

        self.directory = Path(directory) if directory is not None else default_cache_dir()
        self.directory.mkdir(parents=True, exist_ok=True)
        self._cache = diskcache.Cache(str(self.directory), size_limit=2**40,
                                      eviction_policy="none")
        self.corrupted = 0

    def get(self, key: str) -> dict[str, Any] | None:
        try:
            raw = self._cache.get(key, default=None, retry=True)
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
        pending = list(keys)
        for start in range(0, len(pending), chunk):
            part = pending[start:start + chunk]
            marks = ",".join("?" * len(part))
            try:
                rows = self._cache._sql(
                    f"SELECT key, mode, filename, value FROM Cache WHERE raw = 1 AND key IN ({marks})"
                    " AND (expire_time IS NULL OR expire_time > ?)", (*part, time.time())).fetchall()
            except Exception:
                rows = [(key, None, None, None) for key in part]
            for key, mode, filename, value in rows:
                if mode == MODE_RAW and filename is None and isinstance(value, str):
                    checked = self._check(key, value)
                else:
                    checked = self.get(key)
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
        """Store entries in one transaction (one commit for the k choices of a request)."""
        with self._cache.transact(retry=True):
            for key, value in entries:
                self._cache.set(key, _ENCODER.encode({**value, "key": key}), retry=True)

    def _drop(self, key: str, why: str) -> None:
        self.corrupted += 1
        warnings.warn(f"cache entry {key[:19]}… in {self.directory} is corrupted ({why}); fetching it again",
                      stacklevel=3)
        with contextlib.suppress(Exception):
            self._cache.delete(key, retry=True)

    def stats(self) -> dict[str, Any]:
        size = sum(p.stat().st_size for p in self.directory.rglob("*") if p.is_file())
        return {"directory": str(self.directory), "entries": len(self._cache), "bytes": size}

    def clear(self) -> int:
        return int(self._cache.clear(retry=True))

    def close(self) -> None:
        self._cache.close()


__all__ = ["AnswerCache", "cache_key", "default_cache_dir", "key_prefix"]

"""Checks of a job's options shared by ``annotate`` and ``plan``, made before anything is read."""

from __future__ import annotations

from pathlib import Path

from llm_annotator.core.errors import ConfigError
from llm_annotator.store.cache import AnswerCache


def open_cache(cache: bool | str | Path | AnswerCache | None) -> AnswerCache | None:
    if cache is False or cache is None:
        return None
    opened = cache if isinstance(cache, AnswerCache) else AnswerCache(None if cache is True else cache)
    opened.check()  # a damaged cache is refused before the run directory says "running"
    return opened


def check_arguments(samples: int, budget_usd: float | None, context: int | None) -> None:
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
        raise ConfigError(f"samples={samples!r}: at least one sample per item is needed",
                          fix="pass samples=1 or more (CLI: --samples K)")
    if budget_usd is not None and budget_usd < 0:
        raise ConfigError(f"budget_usd={budget_usd}: a budget cannot be negative", fix="pass a budget >= 0")
    if context is not None and context < 0:
        raise ConfigError(f"context={context}: the context window cannot be negative",
                          fix="pass 0 for no context or a positive number of previous turns")


__all__ = ["check_arguments", "open_cache"]

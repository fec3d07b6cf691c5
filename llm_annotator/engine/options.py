"""Checks of a job's options shared by ``annotate`` and ``plan``, made before anything is read."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from llm_annotator.core.errors import ConfigError
from llm_annotator.core.models import ModelSpec
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


def check_budget(specs: list[ModelSpec], budget_usd: float | None) -> None:
    """A budget can be kept only for models with a price."""
    if budget_usd is None:
        return
    from llm_annotator.providers.pricing import priced

    for spec in specs:
        if not priced(spec):
            raise ConfigError(f"annotator {spec.name!r}: model {spec.model!r} has no known price, so a budget "
                              "cannot be kept",
                              fix="give its price in US dollars per million input and output tokens: "
                                  f"models=[{{'model': {spec.model!r}, 'price': [IN, OUT]}}] (CLI: --price IN,OUT), "
                                  "or drop the budget")


def check_batch(specs: list[ModelSpec], out: Path | None, cache: Any) -> None:
    """A batch job needs a run directory, the cache and providers with a batch API."""
    from llm_annotator.providers.batch_api import check_spec

    if out is None:
        raise ConfigError("a batch job needs a run directory to record its batches in",
                          fix="pass out=RUN_DIR (CLI: --out RUN_DIR)")
    if cache is False or cache is None:
        raise ConfigError("a batch job needs the answer cache: collected answers are stored there",
                          fix="drop cache=False (CLI: --no-cache)")
    for spec in specs:
        check_spec(spec)


__all__ = ["check_arguments", "check_batch", "check_budget", "open_cache"]

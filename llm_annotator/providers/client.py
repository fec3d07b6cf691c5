"""LiteLLM, imported once and configured: no price-map fetch, no telemetry, no debug
output, unsupported parameters dropped. The only place LiteLLM is imported.

Importing LiteLLM takes seconds, more than a small re-run needs for everything else. A run
that will call a provider starts the import in a background thread
(:func:`start_import`) as soon as it knows a call is needed, and the first use
(:func:`litellm`) waits for it; an error of the import surfaces there, as a one-line
:class:`~llm_annotator.core.errors.ModelError`. Nothing is imported when the package is,
nor by a run that needs no call (a replay from the cache).
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any

from llm_annotator.core.errors import ModelError

_LOCK = threading.Lock()
_LOADED: dict[str, Any] = {}   # "module": LiteLLM configured, or "error": why it cannot be imported


def litellm() -> Any:
    """LiteLLM, configured never to fetch its price map from the network: imported here,
    or the import :func:`start_import` began, waited for."""
    module = _LOADED.get("module")
    if module is not None:
        return module
    with _LOCK:  # held by a background import under way: this waits for it
        if not _LOADED:
            _import()
    if "error" in _LOADED:
        exc = _LOADED["error"]
        raise ModelError(f"LiteLLM cannot be imported: {type(exc).__name__}: {exc}",
                         fix="reinstall it: pip install 'litellm>=1.80,<1.111,!=1.82.7,!=1.82.8,!=1.107.0'") from exc
    return _LOADED["module"]


def start_import() -> None:
    """Import LiteLLM in a background thread, once per process; :func:`litellm` waits for it.

    The thread is not a daemon: a process that ends before the import does waits for it
    rather than ending an import half-way."""
    if _LOADED or not _LOCK.acquire(blocking=False):  # imported, failed, or under way
        return

    def run() -> None:
        try:
            if not _LOADED:
                _import()
        finally:
            _LOCK.release()

    try:
        threading.Thread(target=run, name="llm-annotator: import litellm").start()
    except BaseException:  # no thread to be had: the first use imports it instead
        _LOCK.release()
        raise


def _import() -> None:
    """Import and configure LiteLLM into ``_LOADED`` (its module, or the error); ``_LOCK`` held."""
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    try:
        import litellm as _litellm
    except Exception as exc:  # whatever its import raises is told where LiteLLM is needed
        _LOADED["error"] = exc
        return
    _litellm.suppress_debug_info = True
    _litellm.drop_params = True
    _litellm.telemetry = False
    for name in ("LiteLLM", "LiteLLM Router", "LiteLLM Proxy", "httpx"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    _LOADED["module"] = _litellm


__all__ = ["litellm", "start_import"]

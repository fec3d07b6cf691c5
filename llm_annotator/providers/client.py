"""LiteLLM, imported once and configured: no price-map fetch, no telemetry, no debug
output, unsupported parameters dropped. The only place LiteLLM is imported.

Importing LiteLLM takes seconds, more than a small re-run needs for everything else. A run
that will call a provider starts the import in a background thread
(:func:`start_import`) as soon as it knows a call is needed, and the first use
(:func:`litellm`) waits for it; an error of the import surfaces there, as a one-line
:class:`~llm_annotator.core.errors.ModelError`. Nothing is imported when the package is,
nor by a run that needs no call (a replay from the cache).

LiteLLM's import and calls allocate so much that Python's cyclic garbage collector took a
quarter of a call's CPU: :func:`quiet_collector` tunes it while they run. ``acompletion``
hands its request building to a thread of the event loop's executor and back for each call:
:func:`setup_inline` keeps it on the loop's thread for the providers where that building
does no I/O (docs/cpu.md).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
import functools
import gc
import logging
import os
import threading
from collections.abc import Callable, Iterator
from typing import Any

from llm_annotator.core.errors import ModelError

_LOCK = threading.Lock()
_LOADED: dict[str, Any] = {}   # "module": LiteLLM configured, or "error": why it cannot be imported

#: The young generation's threshold while the collector is tuned (CPython's default: 700).
YOUNG_THRESHOLD = 50_000
_COLLECTOR = threading.Lock()
_TUNED: dict[str, Any] = {"depth": 0, "given": None}  # users now, and the thresholds to give back


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
        fix = "reinstall it: pip install 'litellm>=1.80,<1.111,!=1.82.7,!=1.82.8,!=1.107.0'"
        if isinstance(exc, OSError) and "temporary directory" in str(exc):  # tempfile's, while LiteLLM loads
            fix = "set TMPDIR to a writable folder: LiteLLM needs one as it loads"
        raise ModelError(f"LiteLLM cannot be imported: {type(exc).__name__}: {exc}", fix=fix) from exc
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
    """Import and configure LiteLLM into ``_LOADED`` (its module, or the error); ``_LOCK`` held.
    Its hundreds of thousands of new objects need no collection meanwhile."""
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    try:
        with quiet_collector():
            import litellm as _litellm

            _settle()
    except Exception as exc:  # whatever its import raises is told where LiteLLM is needed
        _LOADED["error"] = exc
        return
    _litellm.suppress_debug_info = True
    _litellm.drop_params = True
    _litellm.telemetry = False
    for name in ("LiteLLM", "LiteLLM Router", "LiteLLM Proxy", "httpx"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    _LOADED["module"] = _litellm


@contextlib.contextmanager
def quiet_collector() -> Iterator[None]:
    """The cyclic garbage collector, tuned while a run goes through the pipeline (replay,
    calls, votes) or LiteLLM is imported, and given back when the last of them ends.

    At the ceiling the collector took a quarter of a request's CPU: each LiteLLM call
    allocates thousands of short-lived containers, so collections ran every few requests,
    and each full one walked the whole heap (LiteLLM's modules and price map, the job)
    again (and importing LiteLLM took 0.6 s longer). Meanwhile the objects alive when the
    tuning starts sit out collections (``gc.freeze``), and the young generation is collected
    every 50,000 allocations instead of 700 (cycles wait a little longer: a few MB at most).
    Reference counting frees
    everything else as before. Runs in several threads, and an import in the background,
    share one tuning, given back when the last of them ends; a process that froze objects
    itself or turned the collector off is left as it is.
    """
    with _COLLECTOR:
        if _TUNED["depth"] == 0 and gc.isenabled() and gc.get_freeze_count() == 0:
            _TUNED["given"] = gc.get_threshold()
            gc.freeze()
            gc.set_threshold(max(_TUNED["given"][0], YOUNG_THRESHOLD), *_TUNED["given"][1:])
        _TUNED["depth"] += 1
    try:
        yield
    finally:
        with _COLLECTOR:
            _TUNED["depth"] -= 1
            if _TUNED["depth"] == 0 and _TUNED["given"] is not None:
                gc.set_threshold(*_TUNED["given"])
                gc.unfreeze()
                _TUNED["given"] = None


def _settle() -> None:
    """Within a tuning, set what has been allocated since it began (LiteLLM's modules, just
    imported) aside from collections too."""
    with _COLLECTOR:
        if _TUNED["given"] is not None:
            gc.freeze()


#: Providers whose request building (LiteLLM's sync ``completion`` under ``acompletion``)
#: only transforms parameters and returns the coroutine of the HTTP call: no credential
#: fetch, no file upload, nothing that waits. Others keep LiteLLM's thread hop.
INLINE_PROVIDERS = frozenset({"openai"})
_INLINE: contextvars.ContextVar[bool] = contextvars.ContextVar("llm_annotator_setup_inline", default=False)


def _is_request_building(fn: Callable[..., Any]) -> bool:
    """Whether ``fn`` is what ``litellm.acompletion`` hands to the executor:
    ``partial(Context.run, partial(litellm.main.completion, ...))``."""
    if not isinstance(fn, functools.partial) or not fn.args or not isinstance(fn.args[0], functools.partial):
        return False
    inner = fn.args[0].func
    return getattr(inner, "__module__", None) == "litellm.main" and getattr(inner, "__name__", None) == "completion"


class _LoopExecutor(concurrent.futures.ThreadPoolExecutor):
    """The default executor of an event loop :func:`setup_inline` runs in: a thread pool as
    asyncio makes one, except that LiteLLM's request building for a call made under
    :func:`setup_inline` runs at once on the calling (the loop's) thread.

    Measured at the ceiling (benchmarks/cpu_per_request.py, docs/cpu.md): the hop to a
    pool thread and back (a future, a self-pipe write, a thread woken, the GIL passed twice)
    cost 4 to 9% of a request's CPU; the building itself is the same work on either thread.
    """

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> concurrent.futures.Future[Any]:
        if not (_INLINE.get() and _is_request_building(fn)):
            return super().submit(fn, *args, **kwargs)
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        try:
            result = fn(*args, **kwargs)
        except Exception as exc:  # as a pool thread would: the awaiting caller gets it
            future.set_exception(exc)
        else:
            future.set_result(result)
        return future


@contextlib.contextmanager
def setup_inline(provider: str) -> Iterator[None]:
    """While a LiteLLM call to ``provider`` is awaited: its request building runs on the
    event loop's thread (see :class:`_LoopExecutor`), where the provider is one of
    :data:`INLINE_PROVIDERS` and the running loop has no default executor of its own yet
    (one the caller set is left alone, and the call keeps the hop)."""
    if provider not in INLINE_PROVIDERS:
        yield
        return
    loop = asyncio.get_running_loop()
    executor = getattr(loop, "_default_executor", False)  # False: a loop that is not asyncio's own
    if executor is None:
        loop.set_default_executor(executor := _LoopExecutor(thread_name_prefix="asyncio"))
    if not isinstance(executor, _LoopExecutor):
        yield
        return
    token = _INLINE.set(True)
    try:
        yield
    finally:
        _INLINE.reset(token)


__all__ = ["INLINE_PROVIDERS", "YOUNG_THRESHOLD", "litellm", "quiet_collector", "setup_inline", "start_import"]

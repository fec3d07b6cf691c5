"""llm_annotator: label datasets with LLMs and know how far to trust the labels.

>>> from llm_annotator import annotate                                # doctest: +SKIP
>>> result = annotate("dialogues.csv", task="emotion_melt", models=["gpt-4o"], samples=5)

Importing the package is cheap: LiteLLM, pandas and the local model runtime load on
first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .errors import (
    AnnotatorError,
    ConfigError,
    DataError,
    ModelError,
    RunDirError,
    TaskError,
    TemplateError,
)

if TYPE_CHECKING:
    from .api import annotate, annotate_async
    from .cache import AnswerCache
    from .models import ModelSpec
    from .result import AnnotationResult
    from .stream import StreamedRun, annotate_stream, annotate_stream_async
    from .task import Task, load_task

__version__ = "0.1.0"

_LAZY = {
    "annotate": "api", "annotate_async": "api", "AnswerCache": "cache", "ModelSpec": "models",
    "AnnotationResult": "result", "Task": "task", "load_task": "task",
    "annotate_stream": "stream", "annotate_stream_async": "stream", "StreamedRun": "stream",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'llm_annotator' has no attribute {name!r}")


__all__ = [
    "AnnotationResult",
    "AnnotatorError",
    "AnswerCache",
    "ConfigError",
    "DataError",
    "ModelError",
    "ModelSpec",
    "RunDirError",
    "StreamedRun",
    "Task",
    "TaskError",
    "TemplateError",
    "annotate",
    "annotate_async",
    "annotate_stream",
    "annotate_stream_async",
    "load_task",
]

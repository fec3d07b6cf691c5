"""llm_annotator: label datasets with LLMs and know how far to trust the labels.

>>> from llm_annotator import annotate                                # doctest: +SKIP
>>> result = annotate("dialogues.csv", task="emotion_melt", models=["gpt-4o"], samples=5)

Importing the package is cheap: LiteLLM, pandas and the local model runtime load on
first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from llm_annotator.core.errors import (
    AnnotatorError,
    ConfigError,
    DataError,
    ModelError,
    RunDirError,
    RunWarning,
    TaskError,
    TemplateError,
)

if TYPE_CHECKING:
    from llm_annotator.api import (
        StreamedRun,
        annotate,
        annotate_async,
        annotate_stream,
        annotate_stream_async,
    )
    from llm_annotator.core.models import ModelSpec
    from llm_annotator.core.task import Task, load_task
    from llm_annotator.engine.plan import plan
    from llm_annotator.outputs.result import AnnotationResult
    from llm_annotator.store.cache import AnswerCache

__version__ = "0.1.0"

_LAZY = {
    "annotate": "api", "annotate_async": "api", "AnswerCache": "store.cache", "ModelSpec": "core.models",
    "AnnotationResult": "outputs.result", "Task": "core.task", "load_task": "core.task",
    "annotate_stream": "api", "annotate_stream_async": "api", "StreamedRun": "api", "collect": "api",
    "plan": "engine.plan",
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
    "RunWarning",
    "StreamedRun",
    "Task",
    "TaskError",
    "TemplateError",
    "annotate",
    "annotate_async",
    "annotate_stream",
    "annotate_stream_async",
    "collect",
    "load_task",
    "plan",
]

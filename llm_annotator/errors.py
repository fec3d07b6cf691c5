"""The one error family of llm_annotator.

Every error the library raises on purpose derives from :class:`AnnotatorError` and
renders as one line that names what was wrong (file, row, field, item id), what was
expected, and the fix::

    AnnotatorError
    ├── DataError        the input table: unreadable file, missing column, duplicate ids
    ├── TemplateError    a prompt template: unknown name, syntax error, unsafe code
    ├── TaskError        a task definition: label set, output field
    ├── ConfigError      arguments: samples, temperature, model strings, budget
    ├── ModelError       a model could not be reached or loaded (not an invalid answer)
    └── RunDirError      the output directory: unwritable, belongs to another job

An invalid *answer* from a model is never an exception: it is a vote whose ``label`` is
null and whose ``error`` says why.
"""

from __future__ import annotations


class AnnotatorError(Exception):
    """Base class: a one-line message that says what is wrong and how to fix it."""

    def __init__(self, message: str, *, fix: str | None = None) -> None:
        self.message = " ".join(message.split())
        self.fix = fix
        text = self.message if fix is None else f"{self.message}; fix: {' '.join(fix.split())}"
        super().__init__(text)


class DataError(AnnotatorError):
    """The input data cannot be used as it is."""


class TemplateError(AnnotatorError):
    """A prompt template is unknown, malformed or unsafe."""


class TaskError(AnnotatorError):
    """A task definition (label set, output field, front matter) is invalid."""


class ConfigError(AnnotatorError):
    """An argument is out of range or inconsistent."""


class ModelError(AnnotatorError):
    """A model could not be loaded or addressed at all."""


class RunDirError(AnnotatorError):
    """The output directory cannot be written or holds another job."""


__all__ = [
    "AnnotatorError",
    "ConfigError",
    "DataError",
    "ModelError",
    "RunDirError",
    "TaskError",
    "TemplateError",
]

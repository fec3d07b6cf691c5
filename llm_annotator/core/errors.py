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

from enum import StrEnum


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


class RunWarning(UserWarning):
    """What the user of a run must know that is not an error: it ended ``failed`` or
    ``partial`` (the library's word for what the CLI's exit code says), or the answer
    cache could not store answers."""


class ErrorKind(StrEnum):
    """Why a vote holds no label: the one list of kinds, read and written everywhere.

    A vote's ``error`` is ``"KIND: detail"`` (``"KIND:value"`` for the parser's kinds).
    Invalid answers (an answer came and is not a label) stay; failed requests (no
    answer came) are asked again by a re-run.
    """

    # invalid answers, produced by the parser (core.parse) or the provider's finish reason
    EMPTY = "empty"
    UNPARSEABLE = "unparseable"
    MISSING_FIELD = "missing_field"
    OUT_OF_LABEL_SET = "out_of_label_set"
    OUT_OF_RANGE = "out_of_range"
    REFUSED = "refused"
    # failed requests, produced by the providers layer (providers.llm) and batch collection
    RATE_LIMITED = "rate_limited"
    TIMEOUT = "timeout"
    SERVER_ERROR = "server_error"
    CONNECTION_ERROR = "connection_error"
    API_ERROR = "api_error"
    EMPTY_RESPONSE = "empty_response"
    BATCH_FAILED = "batch_failed"
    CONTEXT_TOO_LONG = "context_too_long"
    NOT_FOUND = "not_found"
    BAD_REQUEST = "bad_request"
    AUTH = "auth"
    ERROR = "error"

    @property
    def invalid_answer(self) -> bool:
        """An answer came and is not a label (kept on a re-run), as opposed to a failed request."""
        return self in _INVALID

    @property
    def transient(self) -> bool:
        """No answer came for a reason that may pass: a re-run asks again."""
        return self in _TRANSIENT

    @property
    def fatal(self) -> bool:
        """The request cannot succeed on any retry or item (credentials, model name,
        parameters): the annotator's remaining requests are not sent."""
        return self in _FATAL

    @property
    def fix(self) -> str:
        """What to do about votes that failed or were invalid for this reason."""
        return _FIXES.get(self, "see the error column of votes.jsonl; re-run to ask failed votes again")

    @classmethod
    def of(cls, error: str | None) -> ErrorKind | None:
        """The kind of a vote's ``error`` text (None for a valid vote); unknown kinds are ERROR."""
        if error is None or error != error:  # None or NaN (pandas)
            return None
        head = str(error).split(":", 1)[0].strip()
        try:
            return cls(head)
        except ValueError:
            return cls.ERROR

    def message(self, detail: str) -> str:
        """The vote's ``error`` text for this kind."""
        return f"{self.value}: {detail}" if detail else self.value


_INVALID = frozenset({ErrorKind.EMPTY, ErrorKind.UNPARSEABLE, ErrorKind.MISSING_FIELD,
                      ErrorKind.OUT_OF_LABEL_SET, ErrorKind.OUT_OF_RANGE, ErrorKind.REFUSED})
# a fatal kind is asked again too: a re-run after the fix (a new key, the server's model
# loaded) must not keep the votes the old set-up failed
_TRANSIENT = frozenset({ErrorKind.RATE_LIMITED, ErrorKind.TIMEOUT, ErrorKind.SERVER_ERROR,
                        ErrorKind.CONNECTION_ERROR, ErrorKind.API_ERROR, ErrorKind.EMPTY_RESPONSE,
                        ErrorKind.ERROR, ErrorKind.BATCH_FAILED, ErrorKind.AUTH, ErrorKind.NOT_FOUND,
                        ErrorKind.BAD_REQUEST})
_FATAL = frozenset({ErrorKind.AUTH, ErrorKind.NOT_FOUND, ErrorKind.BAD_REQUEST})
_RERUN = "run the same job again (the same command or call): it asks only the failed votes"
_FIXES = {
    ErrorKind.EMPTY: "raise --max-tokens, or check that the template asks for an answer",
    ErrorKind.UNPARSEABLE: "the answers are not in the template's format: check the template's instructions, "
                           "raise --max-tokens, or use a model that follows JSON schemas",
    ErrorKind.MISSING_FIELD: "the JSON answers lack the template's output field: check the template's "
                             "instructions and its 'output' setting",
    ErrorKind.OUT_OF_LABEL_SET: "check the label set (--labels, the template's 'labels' and 'aliases') against "
                                "the raw answers in votes.jsonl",
    ErrorKind.OUT_OF_RANGE: "the answers' numbers lie outside the output's range (or are not whole on an integer "
                            "scale): check the template's instructions and the output's 'range'",
    ErrorKind.REFUSED: "the provider's content filter refused these items: review them or use another model",
    ErrorKind.RATE_LIMITED: f"lower --concurrency, then {_RERUN}",
    ErrorKind.TIMEOUT: f"raise --timeout or lower --concurrency, then {_RERUN}",
    ErrorKind.SERVER_ERROR: _RERUN,
    ErrorKind.CONNECTION_ERROR: f"check that the server is running and --api-base (or OPENAI_API_BASE) is right, "
                                f"then {_RERUN}",
    ErrorKind.API_ERROR: _RERUN,
    ErrorKind.EMPTY_RESPONSE: _RERUN,
    ErrorKind.BATCH_FAILED: f"see 'llm-annotator batch status RUN_DIR', then {_RERUN}",
    ErrorKind.CONTEXT_TOO_LONG: "shorten the prompt or its dialogue context (--context), or use a model with a "
                                "longer context window",
    ErrorKind.NOT_FOUND: "check the model name (-m) and the API base: the server does not serve this model",
    ErrorKind.BAD_REQUEST: "the server refused the request's parameters (see the message): change the "
                           "option it names, or the model",
    ErrorKind.AUTH: "set the provider's API key (e.g. OPENAI_API_KEY) or pass api_key=",
}


__all__ = [
    "AnnotatorError",
    "ConfigError",
    "DataError",
    "ErrorKind",
    "ModelError",
    "RunDirError",
    "RunWarning",
    "TaskError",
    "TemplateError",
]

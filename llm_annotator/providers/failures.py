"""What a failed provider call means: its kind, whether a retry may mend it, how long the
provider asks to wait, whether the attempt may have been billed, and what went wrong in a line.

A provider's error is read by what it says, most specific first: the HTTP client's and
LiteLLM's own messages (missing credentials, an answer that came and could not be read),
the provider's error code (``model_not_found``, ``insufficient_quota``), the exception
class LiteLLM raised, the HTTP status, and, for an error object sent with HTTP 200, its
message. Each is one table.
"""

from __future__ import annotations

import asyncio
import email.utils
import math
import re
import time
from datetime import UTC
from typing import Any

from llm_annotator.core.errors import ErrorKind
from llm_annotator.providers.client import litellm

#: The longest wait a provider's ``Retry-After`` is honoured for. A provider that asks for
#: more (a quota that returns tomorrow) ends the request at once; a re-run asks again.
MAX_RETRY_AFTER_S = 300.0


def maybe_billed(kind: ErrorKind, exc: BaseException) -> bool:
    """Did the failed attempt reach the provider? Timeouts and answers that came but could
    not be read did; a refused connection did not."""
    if kind is ErrorKind.TIMEOUT or unreadable(exc):
        return True
    if kind is not ErrorKind.CONNECTION_ERROR:
        return False
    seen: BaseException | None = exc
    for _ in range(8):
        if seen is None:
            break
        name = type(seen).__name__
        if name in ("ConnectError", "ConnectionRefusedError", "ConnectTimeout", "gaierror"):
            return False
        seen = seen.__cause__ or seen.__context__
    text = str(exc).lower()
    return not any(s in text for s in ("connection refused", "connecterror", "name or service not known",
                                       "cannot connect", "failed to establish"))


def retry_after(exc: BaseException) -> float | None:
    """Seconds the provider asks to wait before a retry: ``retry-after-ms``, else
    ``Retry-After`` as seconds or an HTTP date. Never negative (a date in the past is 0);
    ``inf`` for a number too large to hold; None where absent or unreadable."""
    headers = getattr(exc, "litellm_response_headers", None)
    if headers is None:
        response = getattr(exc, "response", None)
        headers = getattr(response, "headers", None)
    try:
        found = {str(k).lower(): v for k, v in headers.items()} if headers else {}
    except (AttributeError, TypeError):
        return None
    for name, scale in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        seconds = _seconds(found.get(name), scale)
        if seconds is not None:
            return seconds
    return None


def _seconds(value: Any, scale: float) -> float | None:
    """A header's number of seconds (``scale``: its units per second), or an HTTP date's distance."""
    if value is None:
        return None
    text = str(value).strip()
    try:
        seconds = float(text) / scale
    except ValueError:
        if scale != 1.0:
            return None
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
        if when.tzinfo is None:  # HTTP dates are GMT
            when = when.replace(tzinfo=UTC)
        seconds = when.timestamp() - time.time()
    if math.isnan(seconds):
        return None
    return max(0.0, seconds)


#: What the HTTP client or LiteLLM itself says, before any provider answered or after an
#: answer that could not be read: (pattern, kind, retryable).
_CLIENT_MESSAGES: list[tuple[re.Pattern[str], ErrorKind, bool]] = [
    (re.compile(r"Missing credentials"), ErrorKind.AUTH, False),
    (re.compile(r"credentials encoded in URL"), ErrorKind.BAD_REQUEST, False),
    (re.compile(r"no 'choices'|'choices' that is not a list"), ErrorKind.EMPTY_RESPONSE, True),
    (re.compile(r"Invalid response object|Empty or invalid response from LLM endpoint|Expecting value: line"
                r"|Unterminated string|Expecting (property name|',' delimiter|':' delimiter)|Extra data: line"
                r"|Invalid control character|JSONDecodeError"), ErrorKind.API_ERROR, True),
]

#: Error codes providers put in their error objects (OpenAI's, Azure's, Anthropic's types),
#: lower-cased: (kind, retryable). What the provider says about its error comes first.
_PROVIDER_CODES: dict[str, tuple[ErrorKind, bool]] = {
    **dict.fromkeys(("invalid_api_key", "invalid_authentication", "authentication_error", "unauthorized",
                     "permission_denied", "permission_error", "insufficient_permissions", "access_denied",
                     "accessdenied", "invalid_organization", "unsupported_country_region_territory"),
                    (ErrorKind.AUTH, False)),
    **dict.fromkeys(("model_not_found", "not_found", "not_found_error", "deploymentnotfound",
                     "deployment_not_found"), (ErrorKind.NOT_FOUND, False)),
    **dict.fromkeys(("rate_limit_exceeded", "rate_limit_error", "too_many_requests", "requests", "tokens"),
                    (ErrorKind.RATE_LIMITED, True)),
    **dict.fromkeys(("insufficient_quota", "billing_hard_limit_reached", "billing_not_active"),
                    (ErrorKind.RATE_LIMITED, False)),
    **dict.fromkeys(("context_length_exceeded", "string_above_max_length"), (ErrorKind.CONTEXT_TOO_LONG, False)),
    **dict.fromkeys(("content_filter", "content_policy_violation"), (ErrorKind.REFUSED, False)),
    **dict.fromkeys(("invalid_request_error", "invalid_value", "invalid_parameter", "unsupported_parameter",
                     "unsupported_value", "missing_required_parameter", "bad_request", "invalid_type"),
                    (ErrorKind.BAD_REQUEST, False)),
    **dict.fromkeys(("server_error", "internal_error", "internal_server_error", "api_error", "overloaded_error",
                     "service_unavailable", "engine_overloaded"), (ErrorKind.SERVER_ERROR, True)),
    **dict.fromkeys(("timeout", "request_timeout"), (ErrorKind.TIMEOUT, True)),
}

#: HTTP statuses: (kind, retryable); other 5xx are server errors.
_HTTP_STATUSES: dict[int, tuple[ErrorKind, bool]] = {
    400: (ErrorKind.BAD_REQUEST, False), 401: (ErrorKind.AUTH, False), 403: (ErrorKind.AUTH, False),
    404: (ErrorKind.NOT_FOUND, False), 405: (ErrorKind.NOT_FOUND, False), 408: (ErrorKind.TIMEOUT, True),
    409: (ErrorKind.API_ERROR, True), 413: (ErrorKind.CONTEXT_TOO_LONG, False),
    422: (ErrorKind.BAD_REQUEST, False), 429: (ErrorKind.RATE_LIMITED, True),
}

#: An error object that came without an HTTP error status (a 200 whose body is an error)
#: and without a known code is read by its message: (pattern, kind, retryable).
_MESSAGES: list[tuple[re.Pattern[str], ErrorKind, bool]] = [
    (re.compile(r"(invalid|incorrect|missing|expired|revoked)\W+(api\W?key|key|token|credentials?)|unauthori[sz]ed"
                r"|authentication (failed|error|required)|permission denied|access denied", re.I),
     ErrorKind.AUTH, False),
    (re.compile(r"model\b.{0,80}\b(does not exist|not found|is not available|unknown)|no such model"
                r"|unknown model|deployment.{0,40}not found", re.I), ErrorKind.NOT_FOUND, False),
    (re.compile(r"insufficient.quota|exceeded your current quota|billing", re.I), ErrorKind.RATE_LIMITED, False),
    (re.compile(r"rate.?limit|too many requests|overloaded|slow down", re.I), ErrorKind.RATE_LIMITED, True),
    (re.compile(r"context.{0,20}(length|window)|maximum context|too many tokens|prompt is too long", re.I),
     ErrorKind.CONTEXT_TOO_LONG, False),
    (re.compile(r"invalid (parameter|value|request|argument)|unsupported (parameter|value)|bad request"
                r"|unrecognized (request )?argument|is required", re.I), ErrorKind.BAD_REQUEST, False),
    (re.compile(r"server (had an |)error|internal (server )?error|service unavailable|try again later", re.I),
     ErrorKind.SERVER_ERROR, True),
]


def _http_status(exc: BaseException) -> int | None:
    """The HTTP status the provider answered with, None where no HTTP error came (a refused
    connection, a timeout, an error object in a 200 answer: LiteLLM makes up a response
    without headers for those)."""
    response = getattr(exc, "response", None)
    status = getattr(response, "status_code", None)
    if not isinstance(status, int) or not getattr(response, "headers", None):
        return None
    return status


def _provider_code(exc: BaseException) -> str | None:
    """The error code of the provider's error object (``model_not_found``), if it gave one."""
    body = getattr(exc, "body", None)
    candidates = [getattr(exc, "status_code", None), body.get("code") if isinstance(body, dict) else None,
                  getattr(exc, "code", None)]
    for value in candidates:
        if isinstance(value, str) and value.strip() and not value.strip().isdigit():
            return value.strip().lower()
    return None


def classify(exc: BaseException) -> tuple[ErrorKind, bool]:
    """(error kind, retryable) for an exception raised by LiteLLM, by what it says: the
    client's own messages, the provider's error code, the exception LiteLLM raised (most
    specific classes first), the HTTP status, and the message of an error object that came
    with HTTP 200."""
    lm = litellm()
    text = str(exc)
    for pattern, kind, retryable in _CLIENT_MESSAGES:
        if pattern.search(text):
            return kind, retryable
    if isinstance(exc, lm.Timeout | asyncio.TimeoutError):
        return ErrorKind.TIMEOUT, True
    code = _provider_code(exc)
    if code in _PROVIDER_CODES:
        return _PROVIDER_CODES[code]
    status = _http_status(exc)
    if status is None and not isinstance(exc, lm.APIConnectionError):
        for pattern, kind, retryable in _MESSAGES:
            if pattern.search(text):
                return kind, retryable
    table: list[tuple[Any, ErrorKind, bool]] = [
        (lm.RateLimitError, ErrorKind.RATE_LIMITED, True),
        (lm.ContentPolicyViolationError, ErrorKind.REFUSED, False),
        (lm.ContextWindowExceededError, ErrorKind.CONTEXT_TOO_LONG, False),
        (lm.AuthenticationError | lm.PermissionDeniedError, ErrorKind.AUTH, False),
        (lm.NotFoundError, ErrorKind.NOT_FOUND, False),
        (lm.APIConnectionError, ErrorKind.CONNECTION_ERROR, True),
        (lm.InternalServerError | lm.ServiceUnavailableError | lm.BadGatewayError, ErrorKind.SERVER_ERROR, True),
        (lm.BadRequestError, ErrorKind.BAD_REQUEST, False),
    ]
    for classes, kind, retryable in table:
        if isinstance(exc, classes):
            return kind, retryable
    if status is None:
        found = getattr(exc, "status_code", None)
        status = found if isinstance(found, int) else None
    if status is not None and status in _HTTP_STATUSES:
        return _HTTP_STATUSES[status]
    if status is not None and status >= 500:
        return ErrorKind.SERVER_ERROR, True
    if isinstance(exc, lm.APIError):
        return ErrorKind.API_ERROR, True
    return ErrorKind.ERROR, False


def unreadable(exc: BaseException) -> bool:
    """An HTTP 200 came whose body is not a chat completion LiteLLM can read (it may be billed)."""
    return any(pattern.search(str(exc)) for pattern, kind, _ in _CLIENT_MESSAGES
               if kind in (ErrorKind.API_ERROR, ErrorKind.EMPTY_RESPONSE))


_LITELLM_PREFIX = re.compile(r"^(litellm\.\w+:\s*)?(\w+Error:\s*)?(\w+Exception\s*-\s*)?")


def detail(exc: BaseException) -> str:
    """What went wrong, in a line: LiteLLM's class prefixes and tracebacks dropped, the
    provider's error code added, and for an answer that could not be read, that it came."""
    text = str(exc)
    head, traceback, tail = text.partition("Traceback (most recent call last):")
    if traceback:
        last = [line.strip() for line in tail.strip().splitlines() if line.strip()]
        text = head.strip() + (f" ({last[-1]})" if last else "")
    text = text.strip()
    for _ in range(3):  # LiteLLM nests its prefixes when it wraps its own errors
        text = _LITELLM_PREFIX.sub("", text, count=1).strip()
    text = text or type(exc).__name__
    code = _provider_code(exc)
    if code and code not in text.lower():
        text += f" ({code})"
    if unreadable(exc):
        text = f"the provider's answer could not be read: {text}"
    return text


__all__ = ["MAX_RETRY_AFTER_S", "classify", "detail", "maybe_billed", "retry_after", "unreadable"]

"""The one module that talks to LiteLLM (imported lazily, on the first call).

Capability checks decide how k samples are collected (``n`` where the provider
supports it, else k calls, and again for the rest when a provider silently returns
fewer choices than ``n``), whether to ask for log-probabilities and for a JSON schema.
Calls retry rate limits, 5xx, connection errors, timeouts and answers that cannot be read
with exponential backoff and full jitter, honouring ``Retry-After`` (and ``retry-after-ms``)
up to ``MAX_RETRY_AFTER_S``; a provider that asks for a longer wait ends the request.
Errors no retry mends (credentials, an unknown model, a refused parameter) are not retried;
what an error means is read in :mod:`~llm_annotator.providers.failures`. No credential the
job knows reaches a message or a stored answer (:mod:`~llm_annotator.providers.redaction`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import math
import os
import random
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from llm_annotator.core.errors import ConfigError, ErrorKind
from llm_annotator.core.identity import public_url
from llm_annotator.core.models import ModelSpec
from llm_annotator.providers import failures, pricing
from llm_annotator.providers.client import litellm, setup_inline
from llm_annotator.providers.failures import MAX_RETRY_AFTER_S
from llm_annotator.providers.redaction import PLACEHOLDER_KEY, leaks, redact, scrub, secrets_of


@dataclass(frozen=True)
class Capabilities:
    n: bool
    logprobs: bool
    response_format: bool


@dataclass(frozen=True)
class Choice:
    content: str | None
    logprobs: list[dict[str, Any]] | None
    distribution: dict[str, float] | None
    finish_reason: str | None
    reasoning: str | None = None  # a reasoning model's reasoning content (kept, never a label)


@dataclass(frozen=True)
class Completion:
    choices: list[Choice]
    tokens_in: int
    tokens_out: int
    cost_usd: float
    latency_s: float
    deployment: str | None = None
    estimated: bool = False       # usage missing or implausible: tokens counted here


class CallFailed(Exception):
    """A request that failed after its retries; ``kind`` goes into the vote's error.

    ``maybe_billed``: the last attempt reached the provider and may have been billed
    (it timed out, or the connection dropped after the request was sent).
    """

    def __init__(self, kind: ErrorKind, detail: str, *, maybe_billed: bool = False) -> None:
        super().__init__(kind.message(detail))
        self.kind = kind
        self.detail = detail
        self.maybe_billed = maybe_billed


#: Called after an attempt that may have been billed and before it is retried: it
#: accounts for the lost attempt and says whether a retry may be paid for.
OnLost = Callable[[], Awaitable[bool]]


def check_model(spec: ModelSpec) -> None:
    """Fail before the first call when LiteLLM cannot route the model string."""
    if spec.router is not None:
        if not spec.deployments:
            names = sorted({str(d.get("model_name")) for d in spec.router["model_list"]})
            raise ConfigError(f"model {spec.model!r} is not a model_name of the router config",
                              fix=f"use one of {', '.join(names)}")
        return
    if spec.is_local:
        from . import local

        local.register(litellm())
        local.check_model_name(spec.model)
        return
    lm = litellm()  # an import that failed is told as itself, not as an unknown model
    try:
        lm.get_llm_provider(spec.model, api_base=spec.api_base)
    except Exception:
        raise ConfigError(f"unknown model string {spec.model!r}: LiteLLM cannot tell its provider",
                          fix="use a LiteLLM model string such as 'gpt-4o', 'anthropic/claude-sonnet-4-5', "
                              "'openai/NAME' with an API base, or 'local/smollm2-135m'") from None


@functools.cache
def _capabilities(model: str, local: bool) -> Capabilities:
    if local:  # one in-process call returns n choices; distributions come from label scoring
        return Capabilities(n=True, logprobs=False, response_format=False)
    lm = litellm()
    try:
        params = set(lm.get_supported_openai_params(model=model) or [])
    except Exception:
        params = set()
    return Capabilities(n="n" in params, logprobs="logprobs" in params,
                        response_format="response_format" in params)


def capabilities(spec: ModelSpec) -> Capabilities:
    model = spec.model
    if spec.deployments:  # a router name: ask about the first deployment's model
        model = str(spec.deployments[0].get("litellm_params", {}).get("model", model))
    found = _capabilities(model, spec.is_local)
    return Capabilities(
        n=found.n if spec.use_n is None else spec.use_n and found.n,
        logprobs=found.logprobs if spec.logprobs is None else spec.logprobs and found.logprobs,
        response_format=found.response_format if spec.json_schema is None
        else spec.json_schema and found.response_format,
    )


_ROUTERS: dict[str, Any] = {}


def _router(spec: ModelSpec) -> Any:
    """One LiteLLM Router per distinct configuration, built on first use."""
    import json

    assert spec.router is not None
    key = json.dumps(spec.router, sort_keys=True, default=str)
    if key not in _ROUTERS:
        _ROUTERS[key] = litellm().Router(**spec.router)
    return _ROUTERS[key]


def needs_placeholder_key(spec: ModelSpec) -> bool:
    """An OpenAI-compatible server at a custom address, and no key anywhere."""
    base = spec.api_base or os.environ.get("OPENAI_API_BASE") or os.environ.get("OPENAI_BASE_URL")
    if not base or os.environ.get("OPENAI_API_KEY") or spec.is_local:
        return False
    return provider(spec.model, spec.api_base)[0] in {"openai", "hosted_vllm", "openai_like", "llamafile",
                                                    "lm_studio", "text-completion-openai"}


#: Per (model, api_base): 0 json_schema, 1 json_object with the schema, 2 no response_format.
_SCHEMA_FORM: dict[tuple[str, str | None], int] = {}


def _schema_form(response_format: dict[str, Any], form: int) -> dict[str, Any] | None:
    if form == 0:
        return response_format
    if form == 1:
        return {"type": "json_object", "schema": response_format["json_schema"]["schema"]}
    return None


_SURROGATE = re.compile(r"[\ud800-\udfff]")


def _text(value: Any) -> str | None:
    """An answer's text as it can be stored: lone surrogates (which no UTF-8 file or
    database takes) become U+FFFD; anything but a string is no text."""
    if not isinstance(value, str):
        return None
    return _SURROGATE.sub("\ufffd", value)


def _token_logprobs(choice: Any) -> list[dict[str, Any]] | None:
    """A choice's token log-probabilities, or None where they are absent or malformed."""
    logprobs = getattr(choice, "logprobs", None)
    content = getattr(logprobs, "content", None) if logprobs is not None else None
    if not content:
        return None
    try:
        return [{"token": str(t.token), "logprob": float(t.logprob),
                 "top_logprobs": [{"token": str(a.token), "logprob": float(a.logprob)}
                                  for a in (getattr(t, "top_logprobs", None) or [])]}
                for t in content]
    except (AttributeError, TypeError, ValueError):
        return None


def choices_of(response: Any) -> list[Choice]:
    """The choices of a LiteLLM response, in the order given; malformed parts are absent."""
    hidden = getattr(response, "_hidden_params", None) or {}
    distributions = hidden.get("label_distributions") or []
    out: list[Choice] = []
    for position, choice in enumerate(getattr(response, "choices", None) or []):
        message = getattr(choice, "message", None)
        distribution = getattr(choice, "label_distribution", None) or (
            distributions[position] if position < len(distributions) else None)
        finish = getattr(choice, "finish_reason", None)
        reasoning = getattr(message, "reasoning_content", None)
        out.append(Choice(content=_text(getattr(message, "content", None)), logprobs=_token_logprobs(choice),
                          distribution=distribution, finish_reason=finish if isinstance(finish, str) else None,
                          reasoning=reasoning if isinstance(reasoning, str) and reasoning.strip() else None))
    return out


def request_parameters(spec: ModelSpec, messages: list[dict[str, str]], *, n: int, max_tokens: int,
                       logprobs: int | None) -> dict[str, Any]:
    """The chat-completion parameters of one request, shared by live calls and batch lines."""
    params: dict[str, Any] = {"messages": messages, "temperature": spec.temperature,
                              "max_tokens": spec.max_tokens or max_tokens}
    if n > 1:
        params["n"] = n
    if spec.top_p is not None:
        params["top_p"] = spec.top_p
    if logprobs:
        params["logprobs"] = True
        params["top_logprobs"] = logprobs
    params.update(spec.extra)
    return params


@functools.cache
def provider(model: str, api_base: str | None = None) -> tuple[str, str]:
    """(provider, the model name the provider knows) as LiteLLM routes ``model``."""
    lm = litellm()
    try:
        name, found, *_ = lm.get_llm_provider(model, api_base=api_base)
        return str(found), str(name)
    except Exception:
        return "", model


async def complete(spec: ModelSpec, messages: list[dict[str, str]], *, n: int,
                   max_tokens: int, response_format: dict[str, Any] | None,
                   logprobs: int | None, local: dict[str, Any] | None = None,
                   on_lost: OnLost | None = None, secrets: list[str] | None = None) -> Completion:
    """One chat completion with retries; raises :class:`CallFailed` when it gives up.

    ``on_lost`` is awaited after an attempt that may have been billed, before a retry;
    when it answers False the call gives up there (the budget cannot pay for a retry).
    ``secrets``: :func:`secrets_of` ``spec``, found once for a run by the caller (else here).
    """
    lm = litellm()
    kwargs = request_parameters(spec, messages, n=n, max_tokens=max_tokens, logprobs=logprobs)
    kwargs.update({"model": spec.model, "timeout": spec.timeout, "num_retries": 0, "max_retries": 0})
    if spec.api_base and spec.router is None:
        kwargs["api_base"] = spec.api_base
    if spec.api_key is not None:
        kwargs["api_key"] = spec.api_key.get_secret_value()
    elif spec.router is None and needs_placeholder_key(spec):
        kwargs["api_key"] = PLACEHOLDER_KEY  # self-hosted OpenAI-compatible servers check none
    if spec.is_local and local is not None:
        kwargs.update(local)
    where = (spec.model, spec.api_base)
    # LiteLLM's request building stays on the loop's thread for providers where it waits on nothing
    inline = "" if spec.router is not None or spec.is_local else str(
        kwargs.get("custom_llm_provider") or provider(spec.model, spec.api_base)[0])
    attempt = 0
    while True:
        form = _SCHEMA_FORM.get(where, 0)
        if response_format is not None:
            kwargs["response_format"] = _schema_form(response_format, form)
            if kwargs["response_format"] is None:
                kwargs.pop("response_format")
        started = time.perf_counter()
        try:
            if spec.router is not None:
                routed = {k: v for k, v in kwargs.items() if k not in ("api_base", "api_key", "max_retries")}
                call = _router(spec).acompletion(**routed)
            else:
                call = lm.acompletion(**kwargs)
            with setup_inline(inline):
                async with asyncio.timeout(spec.timeout + 5):  # here, where wait_for wraps each call in a task of its own
                    response = await call
        except Exception as exc:
            if "response_format" in kwargs and "response_format" in str(exc):
                # The server refuses this form of JSON schema (llama.cpp's wants json_object):
                # fall back to the next form, and remember it for this model and address.
                _SCHEMA_FORM[where] = max(_SCHEMA_FORM.get(where, 0), form + 1)
                continue
            kind, retryable = failures.classify(exc)
            detail = redact(failures.detail(exc), spec)
            if kind is ErrorKind.AUTH:  # fatal: the annotator stops, the run ends failed with what it paid for
                detail = f"model {spec.name!r} refused the credentials: {detail}"
            lost = failures.maybe_billed(kind, exc)
            if not retryable or attempt >= spec.max_retries:
                raise CallFailed(kind, detail, maybe_billed=lost) from None
            after = failures.retry_after(exc)
            if after is not None and after > MAX_RETRY_AFTER_S:
                raise CallFailed(kind, f"{detail} (not retried: the provider asks to wait {_duration(after)}, "
                                       f"more than {MAX_RETRY_AFTER_S:g} s)", maybe_billed=lost) from None
            if lost and on_lost is not None and not await on_lost():
                raise CallFailed(kind, detail + " (not retried: the budget is spent)") from None
            attempt += 1
            await _backoff(attempt, after)
            continue
        latency = time.perf_counter() - started
        if response is None:  # LiteLLM's answer to two HTTP 422s, its own retry included
            raise CallFailed(ErrorKind.BAD_REQUEST, "the server refused the request as unprocessable (HTTP 422), "
                                                    "also without the parameters LiteLLM could drop")
        try:
            completion = _completion(spec, response, messages, latency,
                                     secrets_of(spec) if secrets is None else secrets)
        except Exception as exc:  # a paid answer that cannot be read is a failed request, not a crash
            raise CallFailed(ErrorKind.API_ERROR, redact(f"the provider's answer could not be read: "
                                                         f"{type(exc).__name__}: {exc}", spec),
                             maybe_billed=True) from None
        if completion is None:
            if attempt >= spec.max_retries:
                raise CallFailed(ErrorKind.EMPTY_RESPONSE, "the provider returned no choices")
            attempt += 1
            await _backoff(attempt, None)
            continue
        return completion


async def _backoff(attempt: int, after: float | None) -> None:
    """Wait before retry ``attempt`` (1, 2, ...): exponential backoff with full jitter, at
    least what the provider asked for."""
    wait = random.uniform(0, min(30.0, 0.5 * 2 ** (attempt - 1)))
    if after is not None:
        wait = max(wait, after)
    await asyncio.sleep(wait)


def _duration(seconds: float) -> str:
    if math.isinf(seconds):
        return "for ever"
    return f"{seconds:,.0f} s" if seconds < 1e12 else f"{seconds:.2e} s"


def scrub_choices(choices: list[Choice], spec: ModelSpec, secrets: list[str]) -> list[Choice]:
    """The choices with any credential their text or reasoning repeats replaced."""
    if not any(leaks(c.content, secrets) or leaks(c.reasoning, secrets) for c in choices):
        return choices
    return [dataclasses.replace(c, content=scrub(c.content, spec, secrets) if c.content else c.content,
                                reasoning=scrub(c.reasoning, spec, secrets) if c.reasoning else c.reasoning)
            for c in choices]


def _completion(spec: ModelSpec, response: Any, messages: list[dict[str, str]], latency: float,
                secrets: list[str]) -> Completion | None:
    """A response as a :class:`Completion` (None: no choices). Credentials the answer repeats
    are replaced; usage that is missing or cannot be true is counted here instead."""
    choices = choices_of(response)
    if not choices:
        return None
    choices = scrub_choices(choices, spec, secrets)
    hidden = getattr(response, "_hidden_params", None) or {}
    model_for_price = None
    if spec.router is not None:
        model_for_price = str(hidden.get("litellm_model_name") or (getattr(response, "model", None) or spec.model))
    reported = pricing.usage_tokens(getattr(response, "usage", None))
    if reported is not None and reported[1] == 0 and any(c.content for c in choices):
        reported = None  # no completion tokens for an answer with text cannot be true
    estimated = reported is None
    if reported is None:
        counted = model_for_price or spec.model
        reported = (pricing.count_tokens(counted, messages),
                    sum(pricing.count_text_tokens(counted, c.content) for c in choices))
    tokens_in, tokens_out = reported
    deployment = public_url(str(hidden.get("api_base"))) if spec.router is not None and hidden.get("api_base") \
        else None
    return Completion(choices=choices, tokens_in=tokens_in, tokens_out=tokens_out,
                      cost_usd=pricing.price_of(spec, tokens_in, tokens_out, model=model_for_price),
                      latency_s=latency, deployment=deployment, estimated=estimated)


__all__ = ["CallFailed", "Capabilities", "Choice", "Completion", "OnLost", "capabilities",
           "check_model", "choices_of", "complete", "litellm", "needs_placeholder_key", "provider", "redact",
           "request_parameters", "scrub", "secrets_of"]

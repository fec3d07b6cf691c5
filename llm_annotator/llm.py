"""The one module that talks to LiteLLM (imported lazily, on the first call).

Capability checks decide how k samples are collected (``n`` where the provider
supports it, else k calls, and again for the rest when a provider silently returns
fewer choices than ``n``), whether to ask for log-probabilities and for a JSON schema.
Calls retry rate limits, 5xx, connection errors and timeouts with exponential backoff
and full jitter, honouring ``Retry-After``.
"""

from __future__ import annotations

import asyncio
import email.utils
import functools
import logging
import os
import random
import time
from dataclasses import dataclass
from typing import Any

from .errors import ConfigError, ModelError
from .models import ModelSpec


@functools.cache
def litellm() -> Any:
    """Import LiteLLM once, configured never to fetch its price map from the network."""
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    import litellm as _litellm

    _litellm.suppress_debug_info = True
    _litellm.drop_params = True
    _litellm.telemetry = False
    for name in ("LiteLLM", "LiteLLM Router", "LiteLLM Proxy", "httpx"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    return _litellm


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


@dataclass(frozen=True)
class Completion:
    choices: list[Choice]
    tokens_in: int
    tokens_out: int
    cost_usd: float
    latency_s: float
    deployment: str | None = None


class CallFailed(Exception):
    """A request that failed after its retries; ``kind`` goes into the vote's error."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind
        self.detail = detail


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
    try:
        litellm().get_llm_provider(spec.model, api_base=spec.api_base)
    except Exception:
        raise ConfigError(f"unknown model string {spec.model!r}: LiteLLM cannot tell its provider",
                          fix="use a LiteLLM model string such as 'gpt-4o', 'anthropic/claude-sonnet-4-5', "
                              "'openai/NAME' with an API base, or 'local/smollm2-135m'") from None


@functools.cache
def _capabilities(model: str, local: bool) -> Capabilities:
    if local:  # one in-process call returns n choices; distributions come from label scoring
        return Capabilities(n=True, logprobs=False, response_format=False)
    try:
        params = set(litellm().get_supported_openai_params(model=model) or [])
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


def count_tokens(model: str, messages: list[dict[str, str]]) -> int:
    try:
        return int(litellm().token_counter(model=model, messages=messages))
    except Exception:
        return sum(len(m.get("content", "")) // 4 + 4 for m in messages)


@functools.cache
def _unit_prices(model: str) -> tuple[float, float] | None:
    """Dollars per prompt and per completion token, or None for an unpriced model."""
    if model.startswith("local/"):
        return None
    try:
        cost_in, _ = litellm().cost_per_token(model=model, prompt_tokens=1_000_000, completion_tokens=0)
        _, cost_out = litellm().cost_per_token(model=model, prompt_tokens=0, completion_tokens=1_000_000)
    except Exception:
        return None
    return float(cost_in) / 1e6, float(cost_out) / 1e6


def price(model: str, tokens_in: int, tokens_out: int) -> float:
    """Dollars for the tokens under LiteLLM's price map; 0 for unpriced and local models.

    Unit prices are looked up once per model (the look-up is slow for unknown models);
    prompts past 128k tokens, where some models change tier, take the full look-up.
    """
    units = _unit_prices(model)
    if units is None:
        return 0.0
    if tokens_in > 128_000:
        try:
            cost_in, cost_out = litellm().cost_per_token(model=model, prompt_tokens=tokens_in,
                                                         completion_tokens=tokens_out)
            return float(cost_in + cost_out)
        except Exception:
            return 0.0
    return tokens_in * units[0] + tokens_out * units[1]


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


def _retry_after(exc: BaseException) -> float | None:
    headers = getattr(exc, "litellm_response_headers", None)
    if headers is None:
        response = getattr(exc, "response", None)
        headers = getattr(response, "headers", None)
    if not headers:
        return None
    value = headers.get("retry-after-ms")
    if value is not None:
        try:
            return float(value) / 1000
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        parsed = email.utils.parsedate_to_datetime(value) if value else None
        return max(0.0, parsed.timestamp() - time.time()) if parsed else None


#: Per (model, api_base): 0 json_schema, 1 json_object with the schema, 2 no response_format.
_SCHEMA_FORM: dict[tuple[str, str | None], int] = {}


def _schema_form(response_format: dict[str, Any], form: int) -> dict[str, Any] | None:
    if form == 0:
        return response_format
    if form == 1:
        return {"type": "json_object", "schema": response_format["json_schema"]["schema"]}
    return None


def _classify(exc: BaseException) -> tuple[str, bool]:
    """(error kind, retryable) for an exception raised by LiteLLM."""
    lm = litellm()
    if isinstance(exc, lm.RateLimitError):
        return "rate_limited", True
    if isinstance(exc, lm.Timeout | asyncio.TimeoutError):
        return "timeout", True
    if isinstance(exc, lm.ContentPolicyViolationError):
        return "refused", False
    if isinstance(exc, lm.ContextWindowExceededError):
        return "context_too_long", False
    if isinstance(exc, lm.AuthenticationError | lm.PermissionDeniedError) or "Missing credentials" in str(exc):
        return "auth", False
    if isinstance(exc, lm.NotFoundError):
        return "not_found", False
    if isinstance(exc, lm.APIConnectionError):
        return "connection_error", True
    if isinstance(exc, lm.InternalServerError | lm.ServiceUnavailableError | lm.BadGatewayError):
        return "server_error", True
    if isinstance(exc, lm.BadRequestError):
        return "bad_request", False
    status = getattr(exc, "status_code", None)
    if isinstance(status, int) and status >= 500:
        return "server_error", True
    if isinstance(exc, lm.APIError):
        return "api_error", True
    return "error", False


def redact(text: str, spec: ModelSpec) -> str:
    """Remove the API key (explicit or from the environment) from a message."""
    secrets = [spec.api_key.get_secret_value()] if spec.api_key else []
    secrets += [str(d.get("litellm_params", {}).get("api_key")) for d in spec.deployments
                if d.get("litellm_params", {}).get("api_key")]
    secrets += [v for k, v in os.environ.items()
                if len(v) >= 8 and any(s in k.upper() for s in ("API_KEY", "TOKEN", "SECRET"))]
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return " ".join(text.split())[:300]


def choices_of(response: Any) -> list[Choice]:
    out: list[Choice] = []
    for choice in getattr(response, "choices", None) or []:
        message = getattr(choice, "message", None)
        content = getattr(message, "content", None)
        logprobs = getattr(choice, "logprobs", None)
        tokens = None
        content_tokens = getattr(logprobs, "content", None) if logprobs is not None else None
        if content_tokens:
            tokens = [
                {"token": t.token, "logprob": t.logprob,
                 "top_logprobs": [{"token": a.token, "logprob": a.logprob} for a in (t.top_logprobs or [])]}
                for t in content_tokens
            ]
        hidden = getattr(response, "_hidden_params", None) or {}
        distribution = (getattr(choice, "label_distribution", None)
                        or (hidden.get("label_distributions") or [None] * (len(out) + 1))[len(out)])
        out.append(Choice(content=content, logprobs=tokens, distribution=distribution,
                          finish_reason=getattr(choice, "finish_reason", None)))
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


def batch_price(model: str, tokens_in: int, tokens_out: int) -> float:
    """Dollars for the tokens at the provider's batch price (LiteLLM's ``*_batches`` prices,
    else half the live price, as OpenAI, Azure and Vertex charge)."""
    entry = litellm().model_cost.get(model) or litellm().model_cost.get(model.split("/", 1)[-1]) or {}
    per_in, per_out = entry.get("input_cost_per_token_batches"), entry.get("output_cost_per_token_batches")
    if per_in is not None and per_out is not None and tokens_in <= 128_000:
        return tokens_in * float(per_in) + tokens_out * float(per_out)
    return price(model, tokens_in, tokens_out) / 2


@functools.cache
def provider(model: str, api_base: str | None = None) -> tuple[str, str]:
    """(provider, the model name the provider knows) as LiteLLM routes ``model``."""
    try:
        name, found, *_ = litellm().get_llm_provider(model, api_base=api_base)
        return str(found), str(name)
    except Exception:
        return "", model


async def complete(spec: ModelSpec, messages: list[dict[str, str]], *, n: int,
                   max_tokens: int, response_format: dict[str, Any] | None,
                   logprobs: int | None, local: dict[str, Any] | None = None) -> Completion:
    """One chat completion with retries; raises :class:`CallFailed` when it gives up."""
    lm = litellm()
    kwargs = request_parameters(spec, messages, n=n, max_tokens=max_tokens, logprobs=logprobs)
    kwargs.update({"model": spec.model, "timeout": spec.timeout, "num_retries": 0, "max_retries": 0})
    if spec.api_base and spec.router is None:
        kwargs["api_base"] = spec.api_base
    if spec.api_key is not None:
        kwargs["api_key"] = spec.api_key.get_secret_value()
    elif spec.router is None and needs_placeholder_key(spec):
        kwargs["api_key"] = "no-key"  # self-hosted OpenAI-compatible servers check none
    if spec.is_local and local is not None:
        kwargs.update(local)
    where = (spec.model, spec.api_base)
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
            response = await asyncio.wait_for(call, timeout=spec.timeout + 5)
        except Exception as exc:
            if "response_format" in kwargs and "response_format" in str(exc):
                # The server refuses this form of JSON schema (llama.cpp's wants json_object):
                # fall back to the next form, and remember it for this model and address.
                _SCHEMA_FORM[where] = max(_SCHEMA_FORM.get(where, 0), form + 1)
                continue
            kind, retryable = _classify(exc)
            if kind == "auth":
                raise ModelError(f"model {spec.name!r} refused the credentials: {redact(str(exc), spec)}",
                                 fix="set the provider's API key (e.g. OPENAI_API_KEY) or pass api_key=") from None
            if not retryable or attempt >= spec.max_retries:
                raise CallFailed(kind, redact(str(exc), spec)) from None
            wait = random.uniform(0, min(30.0, 0.5 * 2 ** attempt))
            after = _retry_after(exc)
            if after is not None:
                wait = max(wait, min(after, 300.0))
            attempt += 1
            await asyncio.sleep(wait)
            continue
        latency = time.perf_counter() - started
        usage = getattr(response, "usage", None)
        tokens_in = int(getattr(usage, "prompt_tokens", 0) or 0)
        tokens_out = int(getattr(usage, "completion_tokens", 0) or 0)
        choices = choices_of(response)
        if not choices:
            if attempt >= spec.max_retries:
                raise CallFailed("empty_response", "the provider returned no choices")
            attempt += 1
            continue
        hidden = getattr(response, "_hidden_params", None) or {}
        model_for_price = spec.model
        if spec.router is not None:
            model_for_price = str(hidden.get("litellm_model_name") or (getattr(response, "model", None) or spec.model))
        return Completion(choices=choices, tokens_in=tokens_in, tokens_out=tokens_out,
                          cost_usd=price(model_for_price, tokens_in, tokens_out), latency_s=latency,
                          deployment=hidden.get("api_base") if spec.router is not None else None)


__all__ = ["CallFailed", "Capabilities", "Choice", "Completion", "batch_price", "capabilities", "check_model",
           "choices_of", "complete", "count_tokens", "litellm", "needs_placeholder_key", "price", "provider", "redact", "request_parameters"]

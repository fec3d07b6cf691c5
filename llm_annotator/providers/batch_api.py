"""Provider batch APIs (OpenAI and Azure) through LiteLLM's files and batches calls."""

from __future__ import annotations

import asyncio
from typing import Any

from llm_annotator.core.errors import ConfigError, ModelError
from llm_annotator.core.models import ModelSpec
from llm_annotator.providers import llm

ENDPOINT = "/v1/chat/completions"
PROVIDERS = frozenset({"openai", "azure"})


def check_spec(spec: ModelSpec) -> str:
    """The LiteLLM provider that runs ``spec``'s batches; a clear error where none can."""
    if spec.router is not None:
        raise ConfigError(f"annotator {spec.name!r}: a batch goes to one provider, a router spreads live calls",
                          fix="drop --router, or drop --batch")
    if spec.is_local:
        raise ConfigError(f"annotator {spec.name!r}: the embedded model has no batch API",
                          fix="run it live (drop --batch)")
    headers = [k for k in spec.extra if k in ("extra_headers", "headers")]
    if headers:
        raise ConfigError(f"annotator {spec.name!r}: {headers[0]} are HTTP headers, and the lines of a batch file "
                          "carry none", fix=f"drop {headers[0]} from the annotator's extra, or drop --batch")
    if "|" in spec.name:
        raise ConfigError(f"annotator name {spec.name!r} contains '|', which batch request ids use",
                          fix="give the model another name=")
    found, _ = llm.provider(spec.model, spec.api_base)
    if found not in PROVIDERS:
        raise ConfigError(f"model {spec.model!r} ({found or 'unknown provider'}): batch jobs are supported for "
                          "OpenAI and Azure OpenAI models", fix="use an openai/ or azure/ model, or drop --batch")
    return found


def connection(spec: ModelSpec) -> dict[str, Any]:
    found, _ = llm.provider(spec.model, spec.api_base)
    conn: dict[str, Any] = {"custom_llm_provider": found}
    if spec.api_base:
        conn["api_base"] = spec.api_base
    if spec.api_key is not None:
        conn["api_key"] = spec.api_key.get_secret_value()
    elif llm.needs_placeholder_key(spec):
        conn["api_key"] = "no-key"
    return conn


async def call(function: str, **kwargs: Any) -> Any:
    """One files/batches call, LiteLLM's synchronous form in a thread: these are a few calls
    per job, and the async clients LiteLLM caches outlive the event loop they were made on."""
    return await asyncio.to_thread(getattr(llm.litellm(), function), **kwargs)


def failure(what: str, spec: ModelSpec, exc: BaseException) -> ModelError:
    return ModelError(f"batch {what} for annotator {spec.name!r} failed: {llm.redact(str(exc), spec)}",
                      fix="check the provider's credentials and status; re-running resumes where this stopped")




def request_line(spec: ModelSpec, cid: str, messages: list[dict[str, Any]], *, n: int, max_tokens: int,
                 schema: dict[str, Any] | None, labels: int) -> dict[str, Any]:
    """One line of a batch request file: the same parameters a live call sends."""
    caps = llm.capabilities(spec)
    body = llm.request_parameters(spec, messages, n=n, max_tokens=max_tokens,
                                  logprobs=min(20, max(5, labels)) if caps.logprobs else None)
    body["model"] = llm.provider(spec.model, spec.api_base)[1]
    if schema is not None and caps.response_format:
        body["response_format"] = schema
    return {"custom_id": cid, "method": "POST", "url": ENDPOINT, "body": body}


def completion_of(spec: ModelSpec, body: dict[str, Any]) -> llm.Completion | None:
    """The completion a batch answer line holds, priced at the batch price (None: no choices)."""
    from llm_annotator.providers import pricing

    try:
        response = llm.litellm().ModelResponse(**body)
    except Exception:
        return None
    choices = llm.choices_of(response)
    if not choices:
        return None
    secrets = llm.secrets_of(spec)  # an answer that repeats a credential is stored without it
    choices = llm.scrub_choices(choices, spec, secrets)
    reported = pricing.usage_tokens(body.get("usage"))
    estimated = reported is None
    if reported is None:
        reported = (0, sum(pricing.count_text_tokens(spec.model, c.content) for c in choices))
    tokens_in, tokens_out = reported
    return llm.Completion(choices=choices, tokens_in=tokens_in, tokens_out=tokens_out,
                          cost_usd=pricing.price_of(spec, tokens_in, tokens_out, batch=True), latency_s=0.0,
                          estimated=estimated)


__all__ = ["ENDPOINT", "PROVIDERS", "call", "check_spec", "completion_of", "connection", "failure", "request_line"]

"""Where an annotator's requests go, resolved the way LiteLLM resolves it, and its identity.

The API base comes from the annotator's ``api_base``, else a router's deployments, else
the environment variable LiteLLM reads for the model's provider (``OPENAI_BASE_URL`` or
``OPENAI_API_BASE`` for ``openai/...``, ``HOSTED_VLLM_API_BASE`` for ``hosted_vllm/...``,
and so on); a router deployment's ``os.environ/NAME`` is read as LiteLLM reads it. Two
servers behind the same model name are therefore two annotators' worth of answers, never
one shared cache entry. Credentials never enter an identity.
"""

from __future__ import annotations

import functools
import os
import re
from typing import Any

from llm_annotator.core.identity import AnnotatorIdentity, public_url
from llm_annotator.core.models import ModelSpec

#: Providers named by a prefix, and the environment variables LiteLLM reads for their base,
#: in LiteLLM's order. Providers not listed use PROVIDER_API_BASE, then PROVIDER_BASE_URL.
_BASE_VARIABLES = {
    "openai": ("OPENAI_BASE_URL", "OPENAI_API_BASE"),
    "text-completion-openai": ("OPENAI_BASE_URL", "OPENAI_API_BASE"),
    "azure": ("AZURE_API_BASE",),
}


def _provider_of(model: str) -> str:
    prefix, slash, _ = model.partition("/")
    if slash and prefix:
        return prefix
    from llm_annotator.providers.llm import provider

    found, _ = provider(model, None)
    return found or "openai"


def base_variables(model: str) -> tuple[str, ...]:
    """The environment variables that can set ``model``'s API base."""
    found = _provider_of(model)
    if found in _BASE_VARIABLES:
        return _BASE_VARIABLES[found]
    stem = re.sub(r"[^A-Za-z0-9]+", "_", found).upper()
    return (f"{stem}_API_BASE", f"{stem}_BASE_URL")


def environ_value(value: object) -> str | None:
    """A router parameter as LiteLLM reads it: ``os.environ/NAME`` is the variable's value."""
    if value is None:
        return None
    text = str(value)
    if text.startswith("os.environ/"):
        return os.environ.get(text.removeprefix("os.environ/"))
    return text


def deployment_base(deployment: dict[str, Any]) -> str | None:
    """The API base of one router deployment (``os.environ/NAME`` read), None for the provider's default."""
    return environ_value((deployment.get("litellm_params") or {}).get("api_base")) or None


def api_base(spec: ModelSpec) -> str | None:
    """The API base requests of ``spec`` go to (None: the provider's default)."""
    if spec.api_base:
        return spec.api_base
    if spec.router is not None or spec.is_local:
        return None
    for name in base_variables(spec.model):
        value = os.environ.get(name)
        if value:
            return value
    return None


@functools.cache
def _model_file(model: str) -> str | None:
    from llm_annotator.providers.local import model_sha256

    return model_sha256(model)


def identity(spec: ModelSpec, max_tokens: int) -> AnnotatorIdentity:
    """The identity of ``spec``'s answers (see :mod:`llm_annotator.core.identity`)."""
    deployments = tuple(sorted(
        f"{d.get('litellm_params', {}).get('model')}@{public_url(deployment_base(d))}" for d in spec.deployments))
    params = spec.decoding(max_tokens)
    params["json_schema"] = spec.json_schema
    params["logprobs"] = spec.logprobs
    return AnnotatorIdentity(
        name=spec.name, model=spec.model, api_base=public_url(api_base(spec)), deployments=deployments,
        model_file=_model_file(spec.model) if spec.is_local else None, params=params)


__all__ = ["api_base", "base_variables", "deployment_base", "environ_value", "identity"]

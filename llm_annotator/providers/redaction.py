"""Credentials never leave the process: every credential the job knows, found by value and
replaced in every message and answer before it is shown or stored.

Known are the annotator's API key, the keys of its router deployments (``os.environ/NAME``
read as LiteLLM reads it), secret-named parameters (``extra_headers={"Authorization": ...}``),
credentials written into its API bases (user-info, ``?api-key=``), and the environment's
variables named like keys. Each is looked for as it is, percent-encoded, and
Base64-encoded (an HTTP Basic header), since providers echo requests in all three.
"""

from __future__ import annotations

import os
from typing import Any

from llm_annotator.core.identity import is_secret_name, secret_forms, url_secrets
from llm_annotator.core.models import ModelSpec
from llm_annotator.providers.endpoints import api_base, deployment_base, environ_value

#: The key sent to self-hosted servers that check none: no secret.
PLACEHOLDER_KEY = "no-key"


def secrets_of(spec: ModelSpec) -> list[str]:
    """Every credential the job knows for ``spec``, in every form it may come back in
    (:func:`~llm_annotator.core.identity.secret_forms`), longest first: the API key, the
    keys of its router deployments (``os.environ/NAME`` read), credentials inside its API
    bases, and the environment's variables named like keys (``*API_KEY*``, ``*TOKEN*``,
    ``*SECRET*``, eight characters or more)."""
    found = [spec.api_key.get_secret_value()] if spec.api_key else []
    found += _secret_values(spec.extra)
    bases = [api_base(spec)]
    for deployment in spec.deployments:
        params = deployment.get("litellm_params") or {}
        found += _secret_values({k: environ_value(v) if isinstance(v, str) else v for k, v in params.items()})
        bases.append(deployment_base(deployment))
    for base in bases:
        found += url_secrets(base)
    found += [v for k, v in os.environ.items()
              if len(v) >= 8 and any(s in k.upper() for s in ("API_KEY", "TOKEN", "SECRET", "PASSWORD"))]
    forms = {form for secret in found if secret and secret != PLACEHOLDER_KEY for form in secret_forms(secret)}
    return sorted(forms, key=lambda f: (-len(f), f))


def _secret_values(node: Any, secret: bool = False) -> list[str]:
    """The strings held under secret-named keys of nested parameters (``extra_headers``)."""
    if isinstance(node, dict):
        return [v for k, value in node.items() for v in _secret_values(value, secret or is_secret_name(str(k)))]
    if isinstance(node, list | tuple):
        return [v for value in node for v in _secret_values(value, secret)]
    if secret and isinstance(node, str):
        return [node, node.split(" ", 1)[-1]]  # "Bearer KEY": the key alone too
    return []


def scrub(text: str, spec: ModelSpec, secrets: list[str] | None = None) -> str:
    """``text`` with every credential of ``spec`` (:func:`secrets_of`) replaced by ``***``."""
    for secret in secrets if secrets is not None else secrets_of(spec):
        if secret in text:
            text = text.replace(secret, "***")
    return text


def redact(text: str, spec: ModelSpec) -> str:
    """A message fit to show or store: no credential of ``spec``, one line, 300 characters."""
    return " ".join(scrub(text, spec).split())[:300]


__all__ = ["PLACEHOLDER_KEY", "redact", "scrub", "secrets_of"]

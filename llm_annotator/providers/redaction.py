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
import re
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
    """``text`` with every credential of ``spec`` (:func:`secrets_of`) replaced by ``***``.

    A credential written with JSON escapes (``sk\\u002dkey``) is one once the answer is
    parsed: when one is found that way, the escapes of such characters are undone first."""
    secrets = secrets if secrets is not None else secrets_of(spec)
    if "\\" in text:
        plain = json_unescaped(text)
        if plain != text and any(secret in plain and secret not in text for secret in secrets):
            text = plain
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, "***")
    return text


def leaks(text: str | None, secrets: list[str]) -> bool:
    """Whether ``text`` holds a credential, as written or behind JSON escapes."""
    if not text:
        return False
    return any(s in text for s in secrets) or ("\\" in text and any(s in json_unescaped(text) for s in secrets))


_ESCAPE = re.compile(r"\\u([0-9a-fA-F]{4})|\\/")


def json_unescaped(text: str) -> str:
    """``text`` with the JSON escapes of printable characters undone (``\\u002d`` as ``-``,
    ``\\/`` as ``/``); escapes of quotes, backslashes and control characters stay, so a
    JSON answer stays JSON."""
    def plain(match: re.Match[str]) -> str:
        if match.group(1) is None:
            return "/"
        char = chr(int(match.group(1), 16))
        return char if char.isprintable() and char not in '"\\' else match.group(0)

    return _ESCAPE.sub(plain, text)


def redact(text: str, spec: ModelSpec) -> str:
    """A message fit to show or store: no credential of ``spec``, no base64 payload a
    provider echoed from the request (a clip, an image: runs of 100 or more base64
    characters become ``<data>``), one line, 300 characters."""
    return " ".join(_PAYLOAD.sub("<data>", scrub(text, spec)).split())[:300]


_PAYLOAD = re.compile(r"[A-Za-z0-9+/]{100,}={0,2}")


__all__ = ["PLACEHOLDER_KEY", "json_unescaped", "leaks", "redact", "scrub", "secrets_of"]

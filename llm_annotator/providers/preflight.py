"""One cheap check per annotator before its first request: is what it needs there?

A run whose every request is bound to fail (the embedded model on an install without
llama-cpp-python, a server that is not listening) should say so at once, in one line,
not after k x n requests with their retries. Checked here:

- an embedded model: llama-cpp-python importable and the model file present;
- a self-hosted or explicitly addressed server: its host resolves and accepts a TCP
  connection (no request is sent, nothing is billed). For a router, one reachable
  deployment is enough.
"""

from __future__ import annotations

import socket
from urllib.parse import urlsplit

from llm_annotator.core.errors import ModelError
from llm_annotator.core.identity import public_url
from llm_annotator.core.models import ModelSpec
from llm_annotator.providers import endpoints

CONNECT_TIMEOUT_S = 5.0


def preflight(spec: ModelSpec) -> None:
    """Raise :class:`ModelError` when ``spec``'s requests cannot reach a model at all."""
    if spec.is_local:
        _check_local(spec)
        return
    bases = [b for d in spec.deployments if (b := endpoints.deployment_base(d))]
    if not bases:
        base = endpoints.api_base(spec)
        bases = [base] if base else []
    if not bases:
        return  # the provider's own address: its errors come back with the first request
    problems = [problem for problem in map(unreachable, bases) if problem]
    if len(problems) == len(bases):
        where = "; ".join(problems)
        raise ModelError(f"annotator {spec.name!r}: cannot reach {where}",
                         fix="start the server, or correct --api-base (api_base=, OPENAI_API_BASE, or the "
                             "router's api_base)")


def unreachable(base: str) -> str | None:
    """Why nothing listens at ``base`` (None: a TCP connection was accepted)."""
    parts = urlsplit(base if "//" in base else f"http://{base}")
    host = parts.hostname
    if not host:
        return f"{public_url(base)} (not a URL)"
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return f"{public_url(base)} (bad port)"
    try:
        with socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S):
            return None
    except socket.gaierror:
        return f"{public_url(base)} (the host name {host!r} does not resolve)"
    except TimeoutError:
        return f"{public_url(base)} (no answer within {CONNECT_TIMEOUT_S:g} s)"
    except OSError as exc:
        return f"{public_url(base)} ({(exc.strerror or str(exc)).lower()})"


def _check_local(spec: ModelSpec) -> None:
    from llm_annotator.providers import local

    try:
        import llama_cpp  # noqa: F401  (loaded by the first call anyway)
    except ImportError:
        raise ModelError(f"annotator {spec.name!r}: the embedded model {spec.model!r} needs llama-cpp-python, "
                         "which is not installed", fix=f"{local.INSTALL} (or pick a hosted model with -m)") from None
    name = spec.model.removeprefix("local/")
    if not name.startswith("/"):
        local.resolve(name)  # the model package is installed and its file verified


__all__ = ["CONNECT_TIMEOUT_S", "preflight", "unreachable"]

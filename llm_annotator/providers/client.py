"""LiteLLM, imported once on first use and configured: no price-map fetch, no telemetry,
no debug output, unsupported parameters dropped. The only place LiteLLM is imported."""

from __future__ import annotations

import functools
import logging
import os
from typing import Any


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


__all__ = ["litellm"]

"""Which media kinds an annotator's model takes, checked before any call (``docs/multimodal.md``)."""

from __future__ import annotations

from typing import Any

from llm_annotator.core.errors import ModelError
from llm_annotator.core.models import ModelSpec
from llm_annotator.providers import endpoints
from llm_annotator.providers.client import litellm

#: LiteLLM's capability flag of each media kind.
_MEDIA_FLAGS = {"audio": "supports_audio_input", "image": "supports_vision"}


def check_media(spec: ModelSpec, kinds: set[str]) -> None:
    """Refuse, before any call, an annotator that cannot take a media kind the task sends.

    ``spec.media`` (the kinds a self-hosted model takes) overrides LiteLLM's capability
    table. Otherwise a model LiteLLM knows is asked its ``supports_audio_input`` /
    ``supports_vision``; a model LiteLLM does not know is allowed only at an explicit API
    base (a self-hosted server, which says what it takes by answering); the embedded
    models take no media.
    """
    if spec.media is not None:
        refused = sorted(kinds - set(spec.media))
        why = f"its media override lists {', '.join(spec.media) or 'none'}"
    elif spec.is_local:
        refused, why = sorted(kinds), "the embedded models take text only"
    else:
        models = [str(d.get("litellm_params", {}).get("model", spec.model)) for d in spec.deployments] or [spec.model]
        refused, why = [], ""
        for model in models:  # a router may send any request to any deployment: each must take the media
            mine, reason = _refused(model, kinds, bool(spec.deployments or endpoints.api_base(spec)))
            if mine:
                refused, why = mine, reason if model == spec.model else f"its deployment {model!r}: {reason}"
                break
    if refused:
        kind = refused[0]
        raise ModelError(f"annotator {spec.name!r}: model {spec.model!r} cannot take {kind} input ({why})",
                         fix=f"pick a model that takes {kind}, or, for a self-hosted model that does, say so: "
                             f"models=[{{'model': {spec.model!r}, 'media': [{kind!r}]}}] "
                             f"(CLI: -m '{spec.model},media={kind}')")


def _refused(model: str, kinds: set[str], self_hosted: bool) -> tuple[list[str], str]:
    """The kinds LiteLLM's table says ``model`` cannot take, and why; a model the table does
    not know is allowed at an explicit API base only."""
    lm = litellm()
    try:
        lm.get_model_info(model=model)
        known = True
    except Exception:
        known = False
    if not known and self_hosted:
        return [], ""
    refused = sorted(k for k in kinds if not known or not _supports(lm, _MEDIA_FLAGS[k], model))
    return refused, ("LiteLLM's capability table says it does not" if known
                     else "LiteLLM's capability table does not know the model (it lists dated names, e.g. "
                          "gpt-4o-audio-preview-2024-12-17)")


def _supports(lm: Any, flag: str, model: str) -> bool:
    try:
        return bool(getattr(lm, flag)(model=model))
    except Exception:
        return False


__all__ = ["check_media"]

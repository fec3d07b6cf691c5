"""Embeddings through LiteLLM, for demonstrations chosen by similarity.

:func:`embedder` turns an embedding model's name into the function the core takes
(:data:`llm_annotator.core.demos.Embed`, texts to vectors), so the core never imports
LiteLLM::

    prompt = compile_prompt(task, media_root, embed=embedder("text-embedding-3-small"))

A task asks for it with ``demonstrations: {select: similar, embedding_model: NAME}``;
without one, similarity is lexical (TF-IDF cosine) and needs no call. Errors of the
provider become one-line :class:`~llm_annotator.core.errors.ModelError` s naming the
model, with credentials removed from the text.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from llm_annotator.core.demos import Embed
from llm_annotator.core.errors import ModelError
from llm_annotator.core.models import ModelSpec
from llm_annotator.providers.client import litellm
from llm_annotator.providers.redaction import redact


def embedder(model: str, *, api_base: str | None = None, api_key: str | None = None,
             timeout: float = 120.0, batch_size: int = 256) -> Embed:
    """A function from texts to their embeddings by ``model`` (a LiteLLM model string,
    e.g. ``text-embedding-3-small`` or ``openai/NAME`` with ``api_base``), ``batch_size``
    texts a request, vectors in the order of the texts."""
    spec = ModelSpec.model_validate({"model": model, "api_base": api_base, "api_key": api_key})

    def embed(texts: list[str]) -> Sequence[Sequence[float]]:
        vectors: list[Sequence[float]] = []
        for start in range(0, len(texts), batch_size):
            chunk = [text if text.strip() else " " for text in texts[start:start + batch_size]]
            options: dict[str, Any] = {"model": model, "input": chunk, "timeout": timeout}
            if api_base:
                options["api_base"] = api_base
            if api_key:
                options["api_key"] = api_key
            try:
                response = litellm().embedding(**options)
            except Exception as exc:  # any provider failure: one line, no credential
                raise ModelError(f"embedding model {model!r} failed: {type(exc).__name__}: "
                                 f"{redact(str(exc), spec)[:300]}",
                                 fix="check the model name, api_base and key, or drop embedding_model "
                                     "for the offline lexical similarity") from None
            items = sorted(response.data, key=lambda item: _get(item, "index"))
            vectors.extend(_get(item, "embedding") for item in items)
        return vectors

    return embed


def _get(item: Any, key: str) -> Any:
    return item[key] if isinstance(item, dict) else getattr(item, key)


__all__ = ["embedder"]

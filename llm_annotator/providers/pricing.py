"""What a request costs: LiteLLM's price map, the caller's own price, and token counts.

``price_of(spec, ...)`` is the one price of an annotator's tokens: the annotator's
``price`` (US dollars per million input and output tokens) when the caller gave one,
else LiteLLM's price map for the model (the deployment's model behind a router), else
nothing (:func:`priced` is False). Embedded models cost nothing. When a provider
reports no usage, or usage that cannot be true (negative, or no prompt tokens for a
prompt), the tokens are counted with the model's tokenizer instead.
"""

from __future__ import annotations

import functools
from typing import Any

from llm_annotator.core.models import ModelSpec
from llm_annotator.providers.client import litellm


def count_tokens(model: str, messages: list[dict[str, str]]) -> int:
    lm = litellm()  # an import that failed is told as itself, not hidden by the fallback
    try:
        return int(lm.token_counter(model=model, messages=messages))
    except Exception:
        return sum(len(m.get("content", "")) // 4 + 4 for m in messages)


@functools.cache
def _unit_prices(model: str) -> tuple[float, float] | None:
    """Dollars per prompt and per completion token, or None for an unpriced model."""
    if model.startswith("local/"):
        return None
    lm = litellm()
    try:
        cost_in, _ = lm.cost_per_token(model=model, prompt_tokens=1_000_000, completion_tokens=0)
        _, cost_out = lm.cost_per_token(model=model, prompt_tokens=0, completion_tokens=1_000_000)
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
        lm = litellm()
        try:
            cost_in, cost_out = lm.cost_per_token(model=model, prompt_tokens=tokens_in,
                                                         completion_tokens=tokens_out)
            return float(cost_in + cost_out)
        except Exception:
            return 0.0
    return tokens_in * units[0] + tokens_out * units[1]



def batch_price(model: str, tokens_in: int, tokens_out: int) -> float:
    """Dollars for the tokens at the provider's batch price (LiteLLM's ``*_batches`` prices,
    else half the live price, as OpenAI, Azure and Vertex charge)."""
    entry = litellm().model_cost.get(model) or litellm().model_cost.get(model.split("/", 1)[-1]) or {}
    per_in, per_out = entry.get("input_cost_per_token_batches"), entry.get("output_cost_per_token_batches")
    if per_in is not None and per_out is not None and tokens_in <= 128_000:
        return tokens_in * float(per_in) + tokens_out * float(per_out)
    return price(model, tokens_in, tokens_out) / 2



def count_text_tokens(model: str, text: str | None) -> int:
    """Tokens of an answer's text under the model's tokenizer (a word-ish count as fallback)."""
    if not text:
        return 0
    lm = litellm()
    try:
        return int(lm.token_counter(model=model, text=text, count_response_tokens=True))
    except Exception:
        return max(1, len(text) // 4)


def _model_for_price(spec: ModelSpec) -> str:
    if spec.deployments:
        return str(spec.deployments[0].get("litellm_params", {}).get("model", spec.model))
    return spec.model


def priced(spec: ModelSpec) -> bool:
    """Whether a budget can be kept for ``spec``: a known price, the caller's, or free."""
    return spec.is_local or spec.price is not None or _unit_prices(_model_for_price(spec)) is not None


def price_of(spec: ModelSpec, tokens_in: int, tokens_out: int, *, batch: bool = False,
             model: str | None = None) -> float:
    """Dollars of ``spec``'s tokens (``model``: the deployment that answered, behind a router)."""
    if spec.is_local:
        return 0.0
    if spec.price is not None:
        return (tokens_in * spec.price[0] + tokens_out * spec.price[1]) / 1e6
    chosen = model or _model_for_price(spec)
    return batch_price(chosen, tokens_in, tokens_out) if batch else price(chosen, tokens_in, tokens_out)


#: More tokens than any model reads or writes in one request: reported usage above it is
#: not true (and would overflow the integers of a table or a database).
MAX_PLAUSIBLE_TOKENS = 100_000_000


def usage_tokens(usage: Any) -> tuple[int, int] | None:
    """(prompt, completion) tokens of a reported usage, None where it is missing or cannot be
    true: not whole numbers, no prompt tokens, negative, or more than :data:`MAX_PLAUSIBLE_TOKENS`."""
    if usage is None:
        return None

    def get(name: str) -> Any:
        return usage.get(name) if isinstance(usage, dict) else getattr(usage, name, None)

    found = []
    for name in ("prompt_tokens", "completion_tokens"):
        value = get(name)
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if not isinstance(value, int) or isinstance(value, bool):
            return None
        found.append(value)
    tokens_in, tokens_out = found
    if not 0 < tokens_in <= MAX_PLAUSIBLE_TOKENS or not 0 <= tokens_out <= MAX_PLAUSIBLE_TOKENS:
        return None
    return tokens_in, tokens_out


__all__ = ["MAX_PLAUSIBLE_TOKENS", "batch_price", "count_text_tokens", "count_tokens", "price", "price_of", "priced", "usage_tokens"]

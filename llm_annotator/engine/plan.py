"""Tokens and dollars of a job before any call is made.

Prompt tokens are counted with each model's tokenizer (LiteLLM's ``token_counter``) on
every rendered row. Output tokens are given two ways: the task's
``expected_output_tokens`` (a typical answer) and ``max_tokens`` (the worst case, which
the budget guard reserves). With ``n`` supported, k samples cost one prompt; otherwise
k prompts. Votes already in the cache cost nothing and are subtracted. Media (audio and
images) are priced per request by :func:`llm_annotator.providers.pricing.media_cost`;
a part that cannot be priced leaves the annotator unpriced, with the reason.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from llm_annotator.core.data import load_dataset
from llm_annotator.core.media import default_root
from llm_annotator.core.models import as_specs
from llm_annotator.core.prompts import prompt_hash
from llm_annotator.core.task import Task, load_task
from llm_annotator.engine.jobs import JobBuilder
from llm_annotator.engine.options import check_arguments, open_cache
from llm_annotator.providers import llm, pricing
from llm_annotator.store.cache import AnswerCache


class ModelPlan(BaseModel):
    model_config = ConfigDict(frozen=True)

    annotator: str
    model: str
    items: int
    samples: int
    votes: int
    cached_votes: int
    requests: int
    uses_n: bool
    tokens_in: int
    tokens_out_expected: int
    tokens_out_max: int
    cost_usd_expected: float
    cost_usd_max: float
    priced: bool
    audio_seconds: float = 0.0      # media of the requests still to make
    audio_tokens: int = 0
    image_tokens: int = 0
    media_usd: float = 0.0          # their price, within both totals
    unpriced: list[str] = []        # media parts that could not be priced, and why


class Plan(BaseModel):
    model_config = ConfigDict(frozen=True)

    task: str
    items: int
    models: list[ModelPlan]

    @property
    def cost_usd_expected(self) -> float:
        return sum(m.cost_usd_expected for m in self.models)

    @property
    def cost_usd_max(self) -> float:
        return sum(m.cost_usd_max for m in self.models)

    def table(self) -> str:
        media = any(m.audio_seconds or m.image_tokens for m in self.models)
        head = ("annotator", "items", "samples", "requests", "cached", "tokens in", "tokens out (exp/max)",
                *(("audio s", "media tokens") if media else ()), "USD expected", "USD max")
        rows = [head]
        for m in self.models:
            price = (f"{m.cost_usd_expected:.4f}", f"{m.cost_usd_max:.4f}") if m.priced else ("n/a", "n/a")
            rows.append((m.annotator, str(m.items), str(m.samples), str(m.requests), str(m.cached_votes),
                         str(m.tokens_in), f"{m.tokens_out_expected}/{m.tokens_out_max}",
                         *((f"{m.audio_seconds:.1f}", "n/a" if m.unpriced else str(m.audio_tokens + m.image_tokens))
                           if media else ()), *price))
        widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
        lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
        unpriced = [m.annotator for m in self.models if not m.priced and not m.model.startswith("local/")]
        lines.append(f"total: ${self.cost_usd_expected:.4f} expected, ${self.cost_usd_max:.4f} at most"
                     + (f" (without {', '.join(unpriced)}: not priced)" if unpriced else ""))
        lines += [f"not priced: {why}" for m in self.models for why in m.unpriced]
        return "\n".join(lines)


def plan(data: Any, task: str | Path | Task = "classification", models: Any = None, *, samples: int = 1,
         labels: Sequence[str] | None = None, id_column: str | None = None, context: int | None = None,
         columns: Mapping[str, str] | None = None, cache: bool | str | Path | AnswerCache | None = True,
         temperature: float | None = None, max_tokens: int | None = None,
         api_base: str | None = None, batch: bool = False, media_root: str | Path | None = None) -> Plan:
    """What ``annotate`` with the same arguments would request and cost; makes no call.
    Media are read and checked as for ``annotate`` and priced per request.
    ``batch=True`` prices the requests as a provider batch job (half price for GPT-4o).
    The requests are built by the same job builder as ``annotate``'s, and a vote counts
    as cached when the cache holds an answer under its request fingerprint."""
    check_arguments(samples, None, context)
    the_task = load_task(task, labels)
    specs = as_specs(models, temperature=temperature, max_tokens=max_tokens, api_base=api_base)
    builder = JobBuilder(the_task, specs, samples, default_root(data, media_root), labels, context)
    window = builder.context_window
    dataset = load_dataset(data, id_column=id_column, context=window, columns=columns)
    rendered = [[builder.render(dataset, n, p) for n in range(len(dataset.rows))] for p in range(len(builder.prompts))]
    hashes = [[prompt_hash(m, schema) for m in messages] for messages, schema in zip(rendered, builder.schemas, strict=True)]
    answer_cache = open_cache(cache)
    plans = []
    try:
        for annotator in builder.annotators:
            spec, task = annotator.spec, annotator.task
            llm.check_model(spec)
            caps = llm.capabilities(spec)
            out_max = spec.max_tokens or task.max_tokens
            out_exp = min(out_max, task.expected_output_tokens or out_max)
            tokens_in = requests = cached = audio_tokens = image_tokens = 0
            seconds = media_usd = 0.0
            unpriced: list[str] = []
            for messages, phash in zip(rendered[annotator.prompt], hashes[annotator.prompt], strict=True):
                missing = samples
                if answer_cache is not None:
                    found = answer_cache.get_many(annotator.fingerprint(phash, s) for s in range(samples))
                    missing = samples - len(found)
                cached += samples - missing
                if missing == 0:
                    continue
                calls = 1 if caps.n else missing
                requests += calls
                tokens_in += calls * pricing.count_tokens(spec.model, messages)
                if annotator.task.media:
                    media = pricing.media_cost(spec, messages)
                    seconds += calls * media.audio_seconds
                    audio_tokens += calls * media.audio_tokens
                    image_tokens += calls * media.image_tokens
                    media_usd += calls * media.cost_usd * (0.5 if batch else 1.0)  # batch: half, as for text
                    unpriced += [why for why in media.unpriced if why not in unpriced]
            votes_left = len(dataset.rows) * samples - cached
            plans.append(ModelPlan(
                annotator=spec.name, model=spec.model, items=len(dataset.rows), samples=samples,
                votes=len(dataset.rows) * samples, cached_votes=cached, requests=requests, uses_n=caps.n,
                tokens_in=tokens_in, tokens_out_expected=votes_left * out_exp, tokens_out_max=votes_left * out_max,
                cost_usd_expected=pricing.price_of(spec, tokens_in, votes_left * out_exp, batch=batch) + media_usd,
                cost_usd_max=pricing.price_of(spec, tokens_in, votes_left * out_max, batch=batch) + media_usd,
                priced=pricing.priced(spec) and not spec.is_local and not unpriced,
                audio_seconds=round(seconds, 3), audio_tokens=audio_tokens, image_tokens=image_tokens,
                media_usd=media_usd, unpriced=unpriced))
    finally:
        if answer_cache is not None and not isinstance(cache, AnswerCache):
            answer_cache.close()
    return Plan(task=the_task.name, items=len(dataset.rows), models=plans)


__all__ = ["ModelPlan", "Plan", "plan"]

"""The live backend: requests sent now, in bounded asyncio workers per annotator.

k samples go in one request with ``n = k`` where the provider supports it, else one
request each, and again one by one for the rest when a provider silently returns fewer
choices than ``n`` (llama.cpp's server does). Every request reserves its worst case in
the budget first (:mod:`llm_annotator.engine.budget`).
"""

from __future__ import annotations

import asyncio
from typing import Any

from llm_annotator.core.prompts import compile_prompt
from llm_annotator.core.task import Task
from llm_annotator.engine.budget import Budget
from llm_annotator.engine.jobs import Request
from llm_annotator.engine.pipeline import Answer, Reporter
from llm_annotator.engine.stats import RunStats
from llm_annotator.providers import llm, pricing
from llm_annotator.providers.preflight import preflight
from llm_annotator.providers.redaction import secrets_of


def answers_of(completion: llm.Completion, count: int, *, spec: Any, batch: bool = False) -> list[Answer]:
    """The choices of a completion as answers; prompt tokens are billed to the first."""
    choices = completion.choices[:count]
    out = []
    for position, choice in enumerate(choices):
        tokens_in = completion.tokens_in if position == 0 else 0
        share, rest = divmod(completion.tokens_out, len(choices))
        tokens_out = share + (rest if position == 0 else 0)
        cost = (pricing.price_of(spec, tokens_in, tokens_out, batch=batch) if len(choices) > 1
                else completion.cost_usd)
        out.append(Answer(content=choice.content, logprobs=choice.logprobs, distribution=choice.distribution,
                          finish_reason=choice.finish_reason, reasoning=choice.reasoning, tokens_in=tokens_in, tokens_out=tokens_out,
                          cost_usd=cost, latency_s=completion.latency_s, deployment=completion.deployment))
    return out


class LiveBackend:
    """Calls the providers now; each request is asked as its annotator's task says."""

    def __init__(self, budget: Budget, stats: RunStats) -> None:
        self.budget = budget
        self.stats = stats
        self._checked: set[str] = set()
        self._secrets: dict[str, list[str]] = {}  # per annotator, found once a run
        self._n_ok: dict[str, bool] = {}
        self._prompt_tokens: dict[tuple[str, str], int] = {}

    async def run(self, requests: list[Request], report: Reporter) -> None:
        queues: dict[str, list[Request]] = {}
        for request in reversed(requests):
            queues.setdefault(request.annotator.name, []).append(request)
        workers = []
        for queue in queues.values():
            spec = queue[0].annotator.spec
            if spec.name not in self._checked:  # LiteLLM is imported only when something must be asked
                llm.check_model(spec)
                preflight(spec)
                self._secrets[spec.name] = secrets_of(spec)
                self._checked.add(spec.name)
            workers += [self._worker(queue, report) for _ in range(min(spec.concurrency, len(queue)))]
        await asyncio.gather(*workers)

    async def _worker(self, queue: list[Request], report: Reporter) -> None:
        while queue:
            await self._do(queue.pop(), report)

    def estimate(self, request: Request, n: int) -> float:
        """Worst-case dollars of one request for ``n`` samples (0 without a budget)."""
        spec = request.annotator.spec
        if self.budget.limit is None or spec.is_local:
            return 0.0
        key = (spec.model, request.prompt_hash)
        if key not in self._prompt_tokens:
            self._prompt_tokens[key] = pricing.count_tokens(spec.model, request.messages)
        return pricing.price_of(spec, self._prompt_tokens[key],
                                (spec.max_tokens or request.annotator.task.max_tokens) * n)

    async def _do(self, request: Request, report: Reporter) -> None:
        spec, task = request.annotator.spec, request.annotator.task
        caps = llm.capabilities(spec)
        remaining = list(request.samples)
        while remaining:
            if spec.name in self.stats.fatal:  # an earlier request of this annotator cannot succeed
                report.stopped(request, remaining)
                return
            n = len(remaining) if caps.n and self._n_ok.get(spec.name, True) else 1
            estimate = self.estimate(request, n)
            if not await self.budget.reserve(estimate):
                report.skipped(request, remaining)
                return
            self.stats.requests += 1
            held = [True]

            async def on_lost(estimate: float = estimate, held: list[bool] = held) -> bool:
                # the attempt reached the provider and may be billed: it costs its worst case
                self.budget.settle(estimate, estimate, kind="may_be_billed")
                held[0] = await self.budget.reserve(estimate)
                return held[0]

            try:
                completion = await llm.complete(
                    spec, request.messages, n=n, max_tokens=task.max_tokens,
                    response_format=request.annotator.schema if caps.response_format else None,
                    logprobs=min(20, max(5, len(task.labels))) if caps.logprobs else None,
                    local=self._local_params(spec, task) if spec.is_local else None, on_lost=on_lost,
                    secrets=self._secrets.get(spec.name))
            except llm.CallFailed as failure:
                if held[0]:
                    self.budget.settle(estimate, estimate if failure.maybe_billed else 0.0,
                                       kind="may_be_billed" if failure.maybe_billed else "billed")
                self.stats.failed_requests += 1
                report.failed(request, remaining[:n], failure.kind, failure.detail)
                remaining = remaining[n:]
                if failure.kind.fatal:
                    self.stats.fatal.setdefault(spec.name, failure.kind.message(failure.detail))
                continue
            except BaseException:
                if held[0]:
                    self.budget.settle(estimate, 0.0)
                raise
            self.budget.settle(estimate, completion.cost_usd, estimated=completion.estimated)
            self.stats.tokens_in += completion.tokens_in
            self.stats.tokens_out += completion.tokens_out
            self.stats.cost_usd += completion.cost_usd
            self.stats.cost_estimated += completion.estimated
            if n > 1 and len(completion.choices) < n:
                self._n_ok[spec.name] = False  # e.g. llama.cpp's server ignores n
                if spec.name not in self.stats.n_unsupported:
                    self.stats.n_unsupported.append(spec.name)
            answers = answers_of(completion, n, spec=spec)
            report.answered(request, remaining[:len(answers)], answers)
            remaining = remaining[len(answers):]

    def _local_params(self, spec: Any, task: Task) -> dict[str, Any]:
        """What the embedded provider needs beyond the messages (label scoring)."""
        params: dict[str, Any] = {"labels": list(task.labels), "output": task.output,
                                  "mode": spec.mode or ("generate" if task.primary.kind in ("numeric", "multi_label") else None),
                                  "calibrate": spec.calibrate}
        if spec.calibrate:
            prompt = compile_prompt(task)
            blank = {field: "N/A" for field in prompt.fields}
            params["calibration_messages"] = prompt.render(blank, item_id="content-free", where="calibration")
        return params


__all__ = ["LiveBackend", "answers_of"]

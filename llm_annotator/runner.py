"""Items x annotators x samples to votes: bounded asyncio, cache first, streamed out.

For every wanted vote the order is: the run directory's ``votes.jsonl`` (resume), then
the answer cache (no call), then a request. Requests run in ``concurrency`` workers
per annotator; each answer is cached before its vote is appended to the log, so a
process killed at any moment loses no paid answer.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from . import batch, llm
from .accounting import Budget, RunStats
from .cache import AnswerCache, cache_key, key_prefix
from .data import Dataset
from .models import ModelSpec
from .parse import Parsed, distribution_from_logprobs, parse_answer
from .prompts import Messages, compile_prompt, prompt_hash
from .task import Task
from .votes import Vote, VoteLog

if TYPE_CHECKING:
    from .batch import BatchState


@dataclass
class _Job:
    item: int
    spec: ModelSpec
    samples: list[int]
    followers: list[int] = field(default_factory=list)  # items with the very same prompt: answered alike


class Runner:
    def __init__(self, dataset: Dataset, task: Task, specs: list[ModelSpec], *, samples: int,
                 out_dir: Path | None, cache: AnswerCache | None, budget_usd: float | None,
                 progress: bool | None = None, on_vote: Callable[[Vote], None] | None = None,
                 batch_mode: str | None = None, batch_state: BatchState | None = None) -> None:
        self.dataset = dataset
        self.task = task
        self.specs = specs
        self.samples = samples
        self.out_dir = out_dir
        self.cache = cache
        self.budget = Budget(budget_usd)
        self.progress = sys.stderr.isatty() if progress is None else progress
        self.stats = RunStats()
        self.schema = task.response_schema()
        self.on_vote = on_vote
        self.batch_mode = batch_mode      # None: live calls; "submit": batch files; "collect": cache only
        self.batch_state = batch_state    # RUN_DIR/batches.json, where the run directory has one
        self._votes: dict[tuple[str, str, int], Vote] = {}
        self._log: VoteLog | None = None
        self._bar: Any = None
        self._n_ok: dict[str, bool] = {}
        self._prompt_tokens: dict[tuple[str, int], int] = {}
        self._prefixes: dict[str, str] = {}
        self._parsed: dict[str | None, Parsed] = {}
        self._flushed = time.monotonic()
        self._collected: set[str] = set()  # cache keys of batch answers collected by this run
        self._done: Collection[tuple[str, str, int]] = frozenset()  # streamed input: keys of resumed votes

    # -- preparation: every row is rendered and checked before the first call -------
    def render_all(self) -> list[str]:
        """Render and check every row; keep only the prompt hashes (messages are re-rendered
        for the rows that need a call, so a large replayed job holds no prompt text)."""
        self._prompt = compile_prompt(self.task)
        hashes = []
        for index, (row, item_id) in enumerate(zip(self.dataset.rows, self.dataset.item_ids, strict=True)):
            rendered = self._prompt.render(row, item_id=item_id, where=self.dataset.where(index))
            hashes.append(prompt_hash(rendered, self.schema))
        return hashes

    def messages(self, item: int) -> Messages:
        return self._prompt.render(self.dataset.rows[item], item_id=self.dataset.item_ids[item],
                                   where=self.dataset.where(item))

    def key(self, spec: ModelSpec, phash: str, sample: int) -> str:
        prefix = self._prefixes.get(spec.name)
        if prefix is None:
            prefix = self._prefixes[spec.name] = key_prefix(
                model=spec.model, api_base=spec.api_base, params=spec.decoding(self.task.max_tokens))
        return cache_key(model=spec.model, api_base=spec.api_base, prompt_hash=phash, params={},
                         sample_index=sample, prefix=prefix)

    def _parse(self, content: str | None) -> Parsed:
        """parse_answer, remembered per distinct answer text (label answers repeat a lot)."""
        parsed = self._parsed.get(content)
        if parsed is None:
            parsed = parse_answer(content, self.task)
            if len(self._parsed) < 100_000:
                self._parsed[content] = parsed
        return parsed

    async def run(self) -> list[Vote]:
        started = time.perf_counter()
        self.hashes = self.render_all()
        wanted = {
            (item_id, spec.name, s): self.hashes[i]
            for spec in self.specs for i, item_id in enumerate(self.dataset.item_ids)
            for s in range(self.samples)
        }
        self.stats.requested_votes = len(wanted)
        if self.out_dir is not None:
            self._log = VoteLog(self.out_dir)
            self._votes = cast(dict[tuple[str, str, int], Vote], self._log.open(wanted))
            for name in ("labels.csv", "labels.jsonl", "run.json"):  # an earlier run's results, now stale
                (self.out_dir / name).unlink(missing_ok=True)
            self.stats.resumed_votes = len(self._votes)
            self.stats.log_repaired = self._log.repaired
            self.stats.stale_dropped = self._log.dropped
        try:
            if self.batch_mode == "collect":
                assert self.batch_state is not None
                self.stats.batch_answers = await batch.gather(self.batch_state, self)
            jobs = self._replay_cache()
            if self.batch_mode == "collect":
                self._settle_batch(jobs)
                return self._ordered(wanted)
            if self.batch_mode == "submit":
                assert self.batch_state is not None
                await batch.submit(self, jobs, self.batch_state)
                return self._ordered(wanted)
            if self.batch_state is not None:
                jobs = self._without_in_flight(jobs)
            for spec in self.specs:  # LiteLLM is imported only when something must be asked
                if any(job.spec is spec for job in jobs):
                    llm.check_model(spec)
            if self.progress:
                from tqdm import tqdm

                self._bar = tqdm(total=len(wanted), initial=len(self._votes), unit="vote",
                                 desc="annotating", file=sys.stderr, dynamic_ncols=True)
            await self._work(jobs)
        finally:
            if self._bar is not None:
                self._bar.close()
            if self._log is not None:
                self._log.close()
            if self.cache is not None:
                self.stats.cache_corrupted = self.cache.corrupted
            self.stats.wall_s = time.perf_counter() - started
        return self._ordered(wanted)

    def _ordered(self, wanted: dict[tuple[str, str, int], str]) -> list[Vote]:
        order = {key: n for n, key in enumerate(wanted)}
        return sorted(self._votes.values(), key=lambda v: order[v.key])

    # -- batch jobs (see batch.py) -----------------------------------------------------
    def _without_in_flight(self, jobs: list[_Job]) -> list[_Job]:
        """A live run never asks again what a running batch has been asked."""
        assert self.batch_state is not None
        in_flight = self.batch_state.in_flight()
        kept = []
        for job in jobs:
            item_id = self.dataset.item_ids[job.item]
            samples = [s for s in job.samples if (item_id, job.spec.name, s) not in in_flight]
            self.stats.in_batch += len(job.samples) - len(samples)
            if samples:
                kept.append(_Job(job.item, job.spec, samples))
        return kept

    def _settle_batch(self, jobs: list[_Job]) -> None:
        """After collecting: failed batch lines become failed votes; the rest wait or were never asked."""
        assert self.batch_state is not None
        failures = self.batch_state.failures()
        in_flight = self.batch_state.in_flight()
        failed = []
        for job in jobs:
            item_id = self.dataset.item_ids[job.item]
            for s in job.samples:
                key = (item_id, job.spec.name, s)
                if key in failures:
                    kind, _, detail = failures[key].partition(": ")
                    failed.append(self._failed_vote(job.item, job.spec, s, llm.CallFailed(kind, detail)))
                elif key in in_flight:
                    self.stats.in_batch += 1
                else:
                    self.stats.not_issued += 1
        self._emit(failed)
        self.stats.new_votes -= len(failed)

    def store_collected(self, pairs: list[tuple[str, dict[str, Any]]]) -> None:
        """Cache the answers a batch gave; their votes count as this run's answers."""
        assert self.cache is not None
        self.cache.set_many(pairs)
        for key, entry in pairs:
            self._collected.add(key)
            self.stats.tokens_in += int(entry["tokens_in"])
            self.stats.tokens_out += int(entry["tokens_out"])
            self.stats.cost_usd += float(entry["cost_usd"])

    def batch_entries(self, spec: ModelSpec, request: dict[str, Any], body: dict[str, Any]) -> list[dict[str, Any]] | None:
        """Cache entries, one per choice, from the answer a batch gave to ``request``."""
        try:
            response = llm.litellm().ModelResponse(**body)
        except Exception:
            return None
        choices = llm.choices_of(response)
        if not choices:
            return None
        usage = body.get("usage") or {}
        tokens_in, tokens_out = int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)
        completion = llm.Completion(choices=choices, tokens_in=tokens_in, tokens_out=tokens_out,
                                    cost_usd=llm.batch_price(spec.model, tokens_in, tokens_out), latency_s=0.0)
        return [self._entry(spec, choice, completion, position, len(choices), batch=True)
                for position, choice in enumerate(choices)]

    def _replay_cache(self) -> list[_Job]:
        """Votes from the cache, and the jobs (item, annotator, missing samples) left over."""
        todo: list[tuple[ModelSpec, int, int, str]] = []
        for spec in self.specs:
            for i, item_id in enumerate(self.dataset.item_ids):
                for s in range(self.samples):
                    if (item_id, spec.name, s) not in self._votes and (item_id, spec.name, s) not in self._done:
                        todo.append((spec, i, s, self.key(spec, self.hashes[i], s)))
        hits = self.cache.get_many(key for *_, key in todo) if self.cache is not None else {}
        jobs: dict[tuple[str, int], _Job] = {}
        replayed: list[Vote] = []
        for spec, i, s, key in todo:
            hit = hits.get(key)
            if hit is None:
                job = jobs.get((spec.name, i))
                if job is None:
                    job = jobs[(spec.name, i)] = _Job(i, spec, [])
                job.samples.append(s)
                continue
            fresh = key in self._collected  # a batch answer collected by this run
            vote = self._vote(i, spec, s, hit, cached=not fresh)
            self._votes[vote.key] = vote
            replayed.append(vote)
            self.stats.new_votes += fresh
            self.stats.cached_votes += not fresh
        if self._log is not None and replayed:
            self._log.write(replayed)
            self._log.flush()
        if self.on_vote is not None:
            for vote in replayed:
                self.on_vote(vote)
        return list(jobs.values())

    # -- requests ---------------------------------------------------------------------
    def _dedupe(self, jobs: list[_Job]) -> list[_Job]:
        """One request for items whose prompts are identical (repeated rows): the others
        follow it and get the same answers, as they would from the cache on a re-run."""
        leaders: dict[tuple[str, str, tuple[int, ...]], _Job] = {}
        out = []
        for job in jobs:
            key = (job.spec.name, self.hashes[job.item], tuple(job.samples))
            leader = leaders.get(key)
            if leader is None:
                leaders[key] = job
                out.append(job)
            else:
                leader.followers.append(job.item)
        return out

    async def _work(self, jobs: list[_Job]) -> None:
        jobs = self._dedupe(jobs)
        queues: dict[str, list[_Job]] = {spec.name: [] for spec in self.specs}
        for job in reversed(jobs):
            queues[job.spec.name].append(job)
        workers = []
        for spec in self.specs:
            count = min(spec.concurrency, len(queues[spec.name]))
            workers += [self._worker(queues[spec.name]) for _ in range(count)]
        await asyncio.gather(*workers)

    async def _worker(self, queue: list[_Job]) -> None:
        while queue:
            await self._do(queue.pop())

    def estimate(self, spec: ModelSpec, item: int, n: int, *, batch: bool = False) -> float:
        """Worst-case dollars of one request for ``n`` samples (0 without a budget)."""
        if self.budget.limit is None or llm.price(spec.model, 1000, 1000) == 0.0:
            return 0.0
        key = (spec.model, item)
        if key not in self._prompt_tokens:
            self._prompt_tokens[key] = llm.count_tokens(spec.model, self.messages(item))
        pricing = llm.batch_price if batch else llm.price
        return pricing(spec.model, self._prompt_tokens[key], (spec.max_tokens or self.task.max_tokens) * n)

    async def _do(self, job: _Job) -> None:
        spec = job.spec
        caps = llm.capabilities(spec)
        remaining = list(job.samples)
        messages = self.messages(job.item)
        while remaining:
            use_n = caps.n and self._n_ok.get(spec.name, True)
            n = len(remaining) if use_n else 1
            estimate = self.estimate(spec, job.item, n)
            if not self.budget.reserve(estimate):
                self.stats.not_issued += len(remaining) * (1 + len(job.followers))
                return
            self.stats.requests += 1
            try:
                completion = await llm.complete(
                    spec, messages, n=n, max_tokens=self.task.max_tokens,
                    response_format=self.schema if caps.response_format else None,
                    logprobs=min(20, max(5, len(self.task.labels))) if caps.logprobs else None,
                    local=self._local_params(spec) if spec.is_local else None)
            except llm.CallFailed as failure:
                self.budget.settle(estimate, 0.0)
                self.stats.failed_requests += 1
                batch = [self._failed_vote(item, spec, s, failure)
                         for item in (job.item, *job.followers) for s in remaining[:n]]
                remaining = remaining[n:]
                self._emit(batch)
                continue
            self.budget.settle(estimate, completion.cost_usd)
            self.stats.tokens_in += completion.tokens_in
            self.stats.tokens_out += completion.tokens_out
            self.stats.cost_usd += completion.cost_usd
            choices = completion.choices[:n]
            if n > 1 and len(choices) < n:
                self._n_ok[spec.name] = False  # e.g. llama.cpp's server ignores n
                if spec.name not in self.stats.n_unsupported:
                    self.stats.n_unsupported.append(spec.name)
            batch, entries = [], []
            for position, (sample, choice) in enumerate(zip(remaining, choices, strict=False)):
                entry = self._entry(spec, choice, completion, position, len(choices))
                entries.append((self.key(spec, self.hashes[job.item], sample), entry))
                batch.append(self._vote(job.item, spec, sample, entry, cached=False))
                batch += [self._vote(item, spec, sample, entry, cached=True) for item in job.followers]
            if self.cache is not None:
                self.cache.set_many(entries)  # cached before the votes are written: a kill loses nothing paid
            remaining = remaining[len(choices):]
            self._emit(batch)

    def _local_params(self, spec: ModelSpec) -> dict[str, Any]:
        """What the embedded provider needs beyond the messages (label scoring)."""
        params: dict[str, Any] = {"labels": list(self.task.labels), "output": self.task.output,
                                  "mode": spec.mode, "calibrate": spec.calibrate}
        if spec.calibrate:
            prompt = compile_prompt(self.task)
            blank = {field: "N/A" for field in prompt.fields}
            params["calibration_messages"] = prompt.render(blank, item_id="content-free", where="calibration")
        return params

    def _entry(self, spec: ModelSpec, choice: llm.Choice, completion: llm.Completion,
               position: int, count: int, *, batch: bool = False) -> dict[str, Any]:
        """What the cache keeps of one choice; prompt tokens are billed to the first."""
        pricing = llm.batch_price if batch else llm.price
        tokens_in = completion.tokens_in if position == 0 else 0
        share, rest = divmod(completion.tokens_out, count)
        tokens_out = share + (rest if position == 0 else 0)
        parsed = self._parse(choice.content)
        distribution = choice.distribution
        if distribution is None and choice.logprobs:
            distribution = distribution_from_logprobs(choice.content or "", choice.logprobs, parsed, self.task)
        return {
            "content": choice.content, "distribution": distribution, "finish_reason": choice.finish_reason,
            "tokens_in": tokens_in, "tokens_out": tokens_out,
            "cost_usd": pricing(spec.model, tokens_in, tokens_out) if count > 1 else completion.cost_usd,
            "latency_s": round(completion.latency_s, 4), "deployment": completion.deployment,
        }

    def _vote(self, item: int, spec: ModelSpec, sample: int, entry: dict[str, Any], *, cached: bool) -> Vote:
        parsed = self._parse(entry.get("content"))
        distribution = entry.get("distribution") if parsed.label is not None else None
        if distribution is not None:
            distribution = {label: float(distribution.get(label, 0.0)) for label in self.task.labels}
        error = parsed.error
        if error is None and entry.get("finish_reason") == "content_filter":
            error = "refused"
        return Vote(
            item_id=self.dataset.item_ids[item], annotator=spec.name, sample_index=sample,
            label=parsed.label if error is None else None, error=error, raw=entry.get("content"),
            distribution=distribution, model=spec.model, prompt_hash=self.hashes[item],
            template_hash=self.task.template_hash, tokens_in=int(entry.get("tokens_in", 0)),
            tokens_out=int(entry.get("tokens_out", 0)), cost_usd=float(entry.get("cost_usd", 0.0)),
            latency_s=float(entry.get("latency_s", 0.0)), cached=cached, deployment=entry.get("deployment"),
        )

    def _failed_vote(self, item: int, spec: ModelSpec, sample: int, failure: llm.CallFailed) -> Vote:
        return Vote(
            item_id=self.dataset.item_ids[item], annotator=spec.name, sample_index=sample,
            label=None, error=f"{failure.kind}: {failure.detail}", raw=None, distribution=None, model=spec.model,
            prompt_hash=self.hashes[item], template_hash=self.task.template_hash,
        )

    def _emit(self, batch: list[Vote]) -> None:
        for vote in batch:
            self._votes[vote.key] = vote
            if self.on_vote is not None:
                self.on_vote(vote)
        shared = sum(v.cached for v in batch)  # followers of an identical prompt's request
        self.stats.new_votes += len(batch) - shared
        self.stats.cached_votes += shared
        if self._log is not None:
            self._log.write(batch)
            now = time.monotonic()
            if now - self._flushed >= 0.25:  # every answer is already in the cache: a kill costs nothing paid
                self._log.flush()
                self._flushed = now
        if self._bar is not None:
            self._bar.update(len(batch))
            self._bar.set_postfix_str(f"${self.stats.cost_usd:.4f}", refresh=False)


__all__ = ["Budget", "RunStats", "Runner"]

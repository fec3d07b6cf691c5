"""The one pipeline: chunks -> requests -> resume -> cache -> backend -> vote sink.

For every wanted vote the order is: the run directory's ``votes.jsonl`` (resume: a vote
recorded with the fingerprint the job asks now), then the answer cache (no call), then
a backend (live calls, a provider batch job, or batch collection). Each answer is
cached before its vote is appended to the log, so a process killed at any moment loses
no paid answer. A backend sees requests and reports outcomes through
:class:`Reporter`; it never sees the pipeline's state.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from llm_annotator.core.data import Dataset
from llm_annotator.core.errors import AnnotatorError, ErrorKind, RunWarning
from llm_annotator.core.parse import Parsed, distribution_from_logprobs, read_answer
from llm_annotator.core.task import Task
from llm_annotator.core.votes import Vote, VoteKey
from llm_annotator.engine.jobs import Annotator, Hashes, JobBuilder, Request
from llm_annotator.engine.stats import RunStats
from llm_annotator.providers.client import quiet_collector
from llm_annotator.store.cache import AnswerCache
from llm_annotator.store.votelog import VoteLog


@dataclass(frozen=True)
class Answer:
    """One choice of a completion, with its share of the request's tokens and cost."""

    content: str | None
    logprobs: list[dict[str, Any]] | None = None
    distribution: dict[str, float] | None = None
    finish_reason: str | None = None
    reasoning: str | None = None
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: float = 0.0
    latency_s: float = 0.0
    deployment: str | None = None


class Reporter(Protocol):
    """What a backend tells the pipeline about a request's samples."""

    def answered(self, request: Request, samples: Sequence[int], answers: Sequence[Answer]) -> None: ...

    def failed(self, request: Request, samples: Sequence[int], kind: ErrorKind, detail: str) -> None: ...

    def pending(self, request: Request, samples: Sequence[int]) -> None: ...

    def skipped(self, request: Request, samples: Sequence[int]) -> None: ...

    def stopped(self, request: Request, samples: Sequence[int]) -> None: ...


class Backend(Protocol):
    """Live calls, a provider batch submission, or batch collection."""

    async def run(self, requests: list[Request], report: Reporter) -> None: ...


class Pipeline:
    """Runs chunks of a job through resume, cache and a backend into the vote sink."""

    def __init__(self, builder: JobBuilder, *, cache: AnswerCache | None, log: VoteLog | None,
                 keep_votes: bool, stats: RunStats, progress: bool = False,
                 in_flight: Collection[VoteKey] = frozenset(), warm: Callable[[], None] | None = None,
                 bar: Any = None) -> None:
        self.builder = builder
        self.task = builder.task
        self.cache = cache
        self.log = log
        self.keep_votes = keep_votes
        self.stats = stats
        self.progress = progress
        self.in_flight = in_flight
        #: Called once, as soon as a vote is known to need a call (the run imports LiteLLM
        #: meanwhile, while the rest of the chunk is replayed and rendered); never for a replay.
        self.warm = warm
        self.votes: dict[VoteKey, Vote] = {}
        self.collected: set[str] = set()   # fingerprints of batch answers collected by this run
        self._read: dict[tuple[int, str | None], tuple[Parsed, Any, Any]] = {}
        self._scored = builder.task.primary.kind in ("categorical", "ordinal")  # a label distribution fits it
        self._flushed = time.monotonic()
        self._bar: Any = bar  # a progress display given (a worker's reports), else made by run()
        self._chunk: tuple[Dataset, list[Hashes]] | None = None

    # -- running -------------------------------------------------------------------------
    async def run(self, chunks: Iterable[tuple[Dataset, list[Hashes]]], backend: Backend,
                  resumed: Collection[VoteKey] = frozenset()) -> None:
        started = time.perf_counter()
        if self.progress and self._bar is None:
            from tqdm import tqdm

            self._bar = tqdm(total=self.stats.requested_votes, initial=len(resumed), unit="vote",
                             desc="annotating", file=sys.stderr, dynamic_ncols=True)
        try:
            with quiet_collector():
                for dataset, hashes in chunks:
                    self._chunk = (dataset, hashes)
                    requests = self._dedupe(self._without_in_flight(self._replay(dataset, hashes, resumed)))
                    if requests:
                        await backend.run(requests, self)
                    self.flush(force=True)
        finally:
            if self._bar is not None:
                self._bar.close()
            if self.cache is not None:
                self.stats.cache_corrupted = self.cache.corrupted
            self.stats.wall_s += time.perf_counter() - started

    def _replay(self, dataset: Dataset, hashes: list[Hashes], resumed: Collection[VoteKey]) -> list[Request]:
        """Votes from the cache, and requests (item, annotator, missing samples) for the rest."""
        todo: list[tuple[Annotator, int, int, str]] = []
        for annotator in self.builder.annotators:
            for i, item_id in enumerate(dataset.item_ids):
                for s in range(self.builder.samples):
                    if (item_id, annotator.name, s) not in resumed:
                        todo.append((annotator, i, s, annotator.fingerprint(hashes[i][annotator.prompt], s)))
        hits = self.cache.get_many(fp for *_, fp in todo) if self.cache is not None else {}
        requests: dict[tuple[str, int], Request] = {}
        replayed: list[Vote] = []
        for annotator, i, s, fp in todo:
            hit = hits.get(fp)
            if hit is None:
                if self.warm is not None and (dataset.item_ids[i], annotator.name, s) not in self.in_flight:
                    self.warm()
                    self.warm = None
                request = requests.get((annotator.name, i))
                if request is None:
                    request = requests[(annotator.name, i)] = Request(
                        annotator, i, dataset.item_ids[i], hashes[i][annotator.prompt], [], messages=[])
                request.samples.append(s)
                continue
            fresh = fp in self.collected  # a batch answer collected by this run
            replayed.append(self._vote(i, annotator, s, hit, cached=not fresh))
            self.stats.new_votes += fresh
            self.stats.cached_votes += not fresh
        self._write(replayed)
        for request in requests.values():  # rendered again only where a call is needed
            request.messages = self.builder.render(dataset, request.item, request.annotator.prompt)
        return list(requests.values())

    def _without_in_flight(self, requests: list[Request]) -> list[Request]:
        """Votes asked in a batch that is still running are never asked again meanwhile."""
        if not self.in_flight:
            return requests
        kept = []
        for request in requests:
            waiting = [s for s in request.samples if (request.item_id, request.annotator.name, s) in self.in_flight]
            if waiting:
                self.stats.in_batch += len(waiting)
                request.samples = [s for s in request.samples if s not in waiting]
            if request.samples:
                kept.append(request)
        return kept

    def _dedupe(self, requests: list[Request]) -> list[Request]:
        """One request for the same question: items whose prompts are identical (repeated
        rows), and annotators identical but for their name, follow the first such request
        and get its answers, as they would from the cache on a re-run (one fingerprint, one
        answer: a run never asks it twice)."""
        leaders: dict[tuple[str, str, tuple[int, ...]], Request] = {}
        out = []
        for request in requests:
            key = (request.annotator.digest, request.prompt_hash, tuple(request.samples))
            leader = leaders.get(key)
            if leader is None:
                leaders[key] = request
                out.append(request)
            else:
                leader.followers.append((request.item, request.annotator))
        return out

    # -- what backends report ---------------------------------------------------------------
    def answered(self, request: Request, samples: Sequence[int], answers: Sequence[Answer]) -> None:
        entries, votes = [], []
        for sample, answer in zip(samples, answers, strict=False):
            entry = self.entry(answer, request.annotator)
            entries.append((request.fingerprint(sample), entry))
            votes.append(self._vote(request.item, request.annotator, sample, entry, cached=False))
            votes += [self._vote(item, annotator, sample, entry, cached=True) for item, annotator in request.followers]
        if self.cache is not None:
            self._store(entries)  # cached before the votes are written: a kill loses nothing paid
        self._emit(votes)

    def _store(self, entries: list[tuple[str, dict[str, Any]]]) -> None:
        """Cache answers; a cache that cannot store them (a full disk, a damaged database)
        costs the cache, never the answers: they still reach votes.jsonl and the result."""
        assert self.cache is not None
        try:
            self.cache.set_many(entries)
        except Exception as exc:  # whatever the store raises, the paid answers go on
            if not self.stats.cache_write_failed:
                import warnings

                why = exc.message if isinstance(exc, AnnotatorError) else str(exc)
                warnings.warn(f"the answer cache {self.cache.directory} cannot store answers ({why}); they are "
                              "kept in votes.jsonl and the result, but a run without --out cannot resume them: "
                              "free disk space or pass another cache directory", RunWarning, stacklevel=2)
            self.stats.cache_write_failed += len(entries)

    def failed(self, request: Request, samples: Sequence[int], kind: ErrorKind, detail: str) -> None:
        self.stats.example(kind.value, detail)
        self._emit([self._failed_vote(item, annotator, s, kind, detail)
                    for item, annotator in ((request.item, request.annotator), *request.followers) for s in samples],
                   fresh=True)

    def pending(self, request: Request, samples: Sequence[int]) -> None:
        self.stats.in_batch += len(samples) * (1 + len(request.followers))

    def skipped(self, request: Request, samples: Sequence[int]) -> None:
        self.stats.not_issued += len(samples) * (1 + len(request.followers))

    def stopped(self, request: Request, samples: Sequence[int]) -> None:
        self.stats.stopped += len(samples) * (1 + len(request.followers))

    # -- votes -----------------------------------------------------------------------------
    def read(self, content: str | None, annotator: Annotator) -> tuple[Parsed, Any, Any]:
        """read_answer by the annotator's task, remembered per distinct answer text (label
        answers repeat a lot)."""
        key = (annotator.prompt, content)
        found = self._read.get(key)
        if found is None:
            found = read_answer(content, annotator.task, cells=annotator.partial)
            if len(self._read) < 100_000:
                self._read[key] = found
        return found

    def entry(self, answer: Answer, annotator: Annotator) -> dict[str, Any]:
        """What the cache keeps of one answer of ``annotator``."""
        distribution = answer.distribution
        if not self._scored:  # a number's first token starts many bins, a set is not one label
            distribution = None
        elif distribution is None and answer.logprobs:
            parsed = self.read(answer.content, annotator)[0]
            distribution = distribution_from_logprobs(answer.content or "", answer.logprobs, parsed, annotator.task)
        entry = {"content": answer.content, "distribution": distribution, "finish_reason": answer.finish_reason,
                 "tokens_in": answer.tokens_in, "tokens_out": answer.tokens_out, "cost_usd": answer.cost_usd,
                 "latency_s": round(answer.latency_s, 4), "deployment": answer.deployment}
        if answer.reasoning:
            entry["reasoning"] = answer.reasoning
        return entry

    def _vote(self, item: int, annotator: Annotator, sample: int, entry: dict[str, Any], *, cached: bool) -> Vote:
        assert self._chunk is not None
        dataset, hashes = self._chunk
        parsed, outputs, explanation = self.read(entry.get("content"), annotator)
        distribution = entry.get("distribution") if parsed.label is not None and self._scored else None
        if distribution is not None:
            distribution = {label: float(distribution.get(label, 0.0)) for label in self.task.labels}
        error = parsed.error
        if error is None and entry.get("finish_reason") == "content_filter":
            error = ErrorKind.REFUSED.value
        if error is not None:
            self.stats.example(error.split(":", 1)[0], f"answer {str(entry.get('content'))[:120]!r}")
        if entry.get("reasoning"):
            explanation = {**(explanation or {}), "reasoning": str(entry["reasoning"])}
        return Vote(
            item_id=dataset.item_ids[item], annotator=annotator.name, sample_index=sample,
            label=parsed.label if error is None else None, error=error, raw=entry.get("content"),
            distribution=distribution, model=annotator.spec.model, prompt_hash=hashes[item][annotator.prompt],
            template_hash=annotator.task.template_hash, tokens_in=int(entry.get("tokens_in", 0)),
            tokens_out=int(entry.get("tokens_out", 0)), cost_usd=float(entry.get("cost_usd", 0.0)),
            latency_s=float(entry.get("latency_s", 0.0)), cached=cached, deployment=entry.get("deployment"),
            fingerprint=annotator.fingerprint(hashes[item][annotator.prompt], sample), outputs=outputs,
            explanation=explanation, demonstrations=self._shown(dataset, item, annotator),
        )

    def _failed_vote(self, item: int, annotator: Annotator, sample: int, kind: ErrorKind, detail: str) -> Vote:
        assert self._chunk is not None
        dataset, hashes = self._chunk
        return Vote(
            item_id=dataset.item_ids[item], annotator=annotator.name, sample_index=sample, label=None,
            error=kind.message(detail), raw=None, distribution=None, model=annotator.spec.model,
            prompt_hash=hashes[item][annotator.prompt], template_hash=annotator.task.template_hash,
            fingerprint=annotator.fingerprint(hashes[item][annotator.prompt], sample),
            outputs={} if annotator.partial else None,  # none of the others' outputs failed
            demonstrations=self._shown(dataset, item, annotator),
        )

    def _shown(self, dataset: Dataset, item: int, annotator: Annotator) -> list[str] | None:
        """The pool ids of the demonstrations the annotator's prompt showed the item."""
        if annotator.task.demonstrations is None:
            return None
        return self.builder.prompts[annotator.prompt].demonstrations_of(dataset.rows[item], dataset.item_ids[item])

    def _emit(self, votes: list[Vote], *, fresh: bool = False) -> None:
        shared = sum(v.cached for v in votes)  # followers of an identical prompt's request
        self.stats.new_votes += len(votes) - shared
        self.stats.cached_votes += shared
        self._write(votes)

    def _write(self, votes: list[Vote]) -> None:
        if not votes:
            return
        if self.keep_votes:
            for vote in votes:
                self.votes[vote.key] = vote
        if self.log is not None:
            self.log.write(votes)
            self.flush()
        if self._bar is not None:
            self._bar.update(len(votes))
            self._bar.set_postfix_str(f"${self.stats.cost_usd:.4f}", refresh=False)

    def flush(self, *, force: bool = False) -> None:
        """Flush the log every 0.25 s (every answer is already in the cache: a kill costs nothing paid)."""
        now = time.monotonic()
        if self.log is not None and (force or now - self._flushed >= 0.25):
            self.log.flush()
            self._flushed = now


def judge_again(task: Task, own: Mapping[str, Task] | None = None) -> Callable[[Vote], Vote]:
    """A recorded vote judged by its task's current parsing rules (labels, aliases, output
    field): the same vote when nothing changes, else a copy with the new label or error.
    ``own``: annotators with a task of their own (name -> task); the others answer ``task``.
    Failed requests (no answer) and refusals by a content filter are kept as they are."""
    memo: dict[tuple[str, str], tuple[Parsed, Any, Any]] = {}
    tasks = dict(own or {})

    def judge(vote: Vote) -> Vote:
        kind = vote.error_kind
        if vote.raw is None or kind is ErrorKind.REFUSED or (kind is not None and not kind.invalid_answer):
            return vote
        its = tasks.get(vote.annotator, task)
        found = memo.get((its.template_hash, vote.raw))
        if found is None:
            partial = len(its.output_specs) != len(task.output_specs)
            found = memo[(its.template_hash, vote.raw)] = read_answer(vote.raw, its, cells=partial)
        parsed, outputs, explanation = found
        if vote.explanation and "reasoning" in vote.explanation:  # the provider's, not in the answer text
            explanation = {**(explanation or {}), "reasoning": vote.explanation["reasoning"]}
        label = parsed.label if parsed.error is None else None
        if label == vote.label and parsed.error == vote.error and outputs == vote.outputs \
                and explanation == vote.explanation:
            return vote
        return dataclasses.replace(vote, label=label, error=parsed.error, outputs=outputs, explanation=explanation,
                                   distribution=vote.distribution if label is not None else None)

    return judge


__all__ = ["Answer", "Backend", "Pipeline", "Reporter", "judge_again"]

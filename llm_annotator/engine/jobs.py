"""The job builder: rows to rendered prompts, request fingerprints and requests.

The one place where a row becomes what is asked: ``annotate`` (in memory or streamed),
``plan`` (no backend) and batch collection all build their requests here, so an answer
is always found by the same fingerprint.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llm_annotator.core.data import Dataset
from llm_annotator.core.errors import ConfigError
from llm_annotator.core.identity import AnnotatorIdentity, JobIdentity
from llm_annotator.core.models import ModelSpec
from llm_annotator.core.prompts import Messages, compile_prompt, prompt_hash
from llm_annotator.core.task import Task, load_task
from llm_annotator.core.votes import VoteKey
from llm_annotator.providers.endpoints import identity


@dataclass(frozen=True)
class Annotator:
    """A model plus a prompt and the parameters that make it distinct, with its identity.
    ``prompt`` is the position of its task among the job's distinct prompts; a ``partial``
    annotator's votes always carry the outputs it answers (and only those)."""

    spec: ModelSpec
    identity: AnnotatorIdentity
    digest: str
    task: Task
    prompt: int = 0
    partial: bool = False  # its task answers some of the job's outputs, not all

    @property
    def name(self) -> str:
        return self.spec.name

    def fingerprint(self, phash: str, sample: int) -> str:
        from llm_annotator.core.identity import request_fingerprint

        return request_fingerprint(self.digest, phash, sample)

    @property
    def schema(self) -> dict[str, Any] | None:
        return self.task.response_schema()


@dataclass
class Request:
    """What a backend is asked: one item's prompt, for one annotator, for some samples.

    ``followers`` are (item, annotator) pairs of the chunk asking the very same question
    (a repeated row, an annotator identical but for its name): they get the same
    answers (a re-run would find them in the cache under the same fingerprints).
    """

    annotator: Annotator
    item: int                       # position in the chunk
    item_id: str
    prompt_hash: str
    samples: list[int]
    messages: Messages
    followers: list[tuple[int, Annotator]] = field(default_factory=list)

    def fingerprint(self, sample: int) -> str:
        return self.annotator.fingerprint(self.prompt_hash, sample)


#: An item's prompt hashes, one per distinct prompt of the job (one for most jobs).
Hashes = tuple[str, ...]


def annotator_task(spec: ModelSpec, task: Task, labels: Sequence[str] | None = None) -> Task:
    """The task ``spec`` answers: its own, or the job's. Its own declares the job's primary
    output and may declare others of the job's outputs, each defined as the job defines it
    (kind, labels, range, bins), so its votes are comparable; the wording, media, answer
    fields, aliases and explanations are its own. An annotator answers only its task's
    outputs: e.g. a clip-only annotator the emotion, beside MELT's five elements."""
    if spec.task is None:
        return task
    own = load_task(spec.task, labels)

    def shape(o: Any) -> tuple[Any, ...]:
        return o.name, o.kind, o.labels, o.range, o.integer, o.bins

    def said(o: Any) -> str:
        return f"{o.name} ({o.kind}: {', '.join(o.labels) if o.labels else o.range})"

    job = {o.name: o for o in task.output_specs}
    if own.primary.name != task.primary.name:
        raise ConfigError(f"annotator {spec.name!r}: its task {own.name!r} answers {own.primary.name!r} first, the "
                          f"job's task {task.name!r} {task.primary.name!r}; the annotators of one job share the "
                          "primary output", fix="give that task the job's primary output first, or annotate it in "
                          "a job of its own")
    for o in own.output_specs:
        if o.name not in job or shape(job[o.name]) != shape(o):
            theirs = f"; the job's is {said(job[o.name])}" if o.name in job else ", which the job's task lacks"
            raise ConfigError(f"annotator {spec.name!r}: its task {own.name!r} declares the output {said(o)}{theirs}",
                              fix="define the output as the job's task does (the same kind, labels, range and "
                                  "bins), or annotate it in a job of its own")
    return own


def _embedding(task: Task) -> Any:
    """The embedding function a task's demonstrations rank by (None: lexical, or none):
    its ``embedding_model`` through LiteLLM, with the provider's key and base from the
    environment (``OPENAI_API_KEY``, ``OPENAI_API_BASE``, ...)."""
    spec = task.demonstrations
    if spec is None or not spec.embedding_model:
        return None
    from llm_annotator.providers.embeddings import embedder

    return embedder(spec.embedding_model)


class JobBuilder:
    """The job's annotators, each with its task, and the distinct prompts they are asked with."""

    def __init__(self, task: Task, specs: Sequence[ModelSpec], samples: int, media_root: Path | None = None,
                 labels: Sequence[str] | None = None, context: int | None = None) -> None:
        """``context``: the previous turns every prompt shows (None: each task's own window)."""
        self.task = task  # its outputs are every annotator's
        self.samples = samples
        self.tasks: list[Task] = []  # distinct, in the order of the annotators
        self.annotators = []
        for spec in specs:
            own = annotator_task(spec, task, labels)
            if own.media:  # before anything is read: the annotator must take its task's media
                from llm_annotator.providers.media import check_media

                check_media(spec, {m.kind for m in own.media.values()})
            key = next((n for n, t in enumerate(self.tasks) if t.template_hash == own.template_hash
                        and t.response_schema() == own.response_schema()), None)
            if key is None:
                key = len(self.tasks)
                self.tasks.append(own)
            found = identity(spec, own.max_tokens)
            partial = len(own.output_specs) != len(task.output_specs)
            self.annotators.append(Annotator(spec, found, found.digest, own, key, partial))
        self.prompts = [compile_prompt(t, media_root, embed=_embedding(t)) for t in self.tasks]
        self.schemas = [t.response_schema() for t in self.tasks]
        self.context = context
        self.windows = [t.context_window if context is None else context for t in self.tasks]

    @property
    def names(self) -> list[str]:
        return [a.name for a in self.annotators]

    def answering(self, output: str) -> list[str]:
        """The annotators whose task answers ``output`` (the primary: every one)."""
        return [a.name for a in self.annotators if any(o.name == output for o in a.task.output_specs)]

    @property
    def context_window(self) -> int:
        """Previous turns to read for the rows: the most any prompt shows."""
        return max(self.windows) if self.context is None else self.context

    def render(self, dataset: Dataset, index: int, prompt: int = 0) -> Messages:
        return self.render_row(dataset.rows[index], dataset.item_ids[index], dataset.where(index), prompt)

    def render_row(self, row: Mapping[str, Any], item_id: str, where: str, prompt: int = 0) -> Messages:
        """The row as prompt ``prompt`` shows it: its dialogue context cut to that task's window."""
        turns, window = row.get("context"), self.windows[prompt]
        if isinstance(turns, list) and len(turns) > window:
            row = {**row, "context": turns[len(turns) - window:] if window else []}
        return self.prompts[prompt].render(row, item_id=item_id, where=where)

    def row_hashes(self, row: Mapping[str, Any], item_id: str, where: str) -> Hashes:
        """Render and check one row with every prompt of the job; keep the prompt hashes."""
        return tuple(prompt_hash(self.render_row(row, item_id, where, p), schema)
                     for p, schema in enumerate(self.schemas))

    def prompt_hashes(self, dataset: Dataset) -> list[Hashes]:
        """Render and check every row of ``dataset``; keep only the prompt hashes."""
        return [self.row_hashes(dataset.rows[n], dataset.item_ids[n], dataset.where(n))
                for n in range(len(dataset.rows))]

    def job(self, source: str, data: dict[str, Any], shard: tuple[int, int] | None) -> JobIdentity:
        own = {a.name: f"{a.task.name}:{a.task.template_hash}" for a in self.annotators if a.spec.task is not None}
        return JobIdentity(source=source, data=data, task=self.task.name, template_hash=self.task.template_hash,
                           labels=tuple(self.task.labels), annotators=tuple(self.names), samples=self.samples,
                           shard=shard, annotator_tasks=own or None)

    def wanted(self, hashes: Mapping[str, Hashes]) -> Wanted:
        return Wanted(hashes, self.annotators, self.samples)


class Wanted(Mapping[VoteKey, str]):
    """Every vote key of the job and the fingerprint it is asked with now, computed on demand
    from the prompt hashes of each item (``hashes``: item id -> prompt hashes)."""

    def __init__(self, hashes: Mapping[str, Hashes], annotators: Sequence[Annotator], samples: int) -> None:
        self.hashes = hashes
        self.by_name = {a.name: a for a in annotators}
        self.samples = samples

    def __getitem__(self, key: VoteKey) -> str:
        item_id, name, sample = key
        found = self.hashes.get(item_id)
        annotator = self.by_name.get(name)
        if found is None or annotator is None or not 0 <= sample < self.samples:
            raise KeyError(key)
        return annotator.fingerprint(found[annotator.prompt], sample)

    def __iter__(self) -> Iterator[VoteKey]:
        for item_id in self.hashes:
            for name in self.by_name:
                for s in range(self.samples):
                    yield (item_id, name, s)

    def __len__(self) -> int:
        return len(self.hashes) * len(self.by_name) * self.samples


__all__ = ["Annotator", "Hashes", "JobBuilder", "Request", "Wanted", "annotator_task"]

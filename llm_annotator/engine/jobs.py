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
from llm_annotator.core.identity import AnnotatorIdentity, JobIdentity
from llm_annotator.core.models import ModelSpec
from llm_annotator.core.prompts import Messages, compile_prompt, prompt_hash
from llm_annotator.core.task import Task
from llm_annotator.core.votes import VoteKey
from llm_annotator.providers.endpoints import identity


@dataclass(frozen=True)
class Annotator:
    """A model plus the parameters that make it distinct, with its identity."""

    spec: ModelSpec
    identity: AnnotatorIdentity
    digest: str

    @property
    def name(self) -> str:
        return self.spec.name

    def fingerprint(self, phash: str, sample: int) -> str:
        from llm_annotator.core.identity import request_fingerprint

        return request_fingerprint(self.digest, phash, sample)


@dataclass
class Request:
    """What a backend is asked: one item's prompt, for one annotator, for some samples.

    ``followers`` are items of the chunk with the very same prompt: they get the same
    answers (a re-run would find them in the cache under the same fingerprints).
    """

    annotator: Annotator
    item: int                       # position in the chunk
    item_id: str
    prompt_hash: str
    samples: list[int]
    messages: Messages
    followers: list[int] = field(default_factory=list)

    def fingerprint(self, sample: int) -> str:
        return self.annotator.fingerprint(self.prompt_hash, sample)


class JobBuilder:
    def __init__(self, task: Task, specs: Sequence[ModelSpec], samples: int, media_root: Path | None = None) -> None:
        self.task = task
        self.samples = samples
        self.prompt = compile_prompt(task, media_root)
        if task.media:  # before anything is read: every annotator must take the task's media
            from llm_annotator.providers.media import check_media

            for spec in specs:
                check_media(spec, {m.kind for m in task.media.values()})
        self.schema = task.response_schema()
        self.annotators = []
        for spec in specs:
            found = identity(spec, task.max_tokens)
            self.annotators.append(Annotator(spec, found, found.digest))

    @property
    def names(self) -> list[str]:
        return [a.name for a in self.annotators]

    def render(self, dataset: Dataset, index: int) -> Messages:
        return self.prompt.render(dataset.rows[index], item_id=dataset.item_ids[index], where=dataset.where(index))

    def prompt_hashes(self, dataset: Dataset) -> list[str]:
        """Render and check every row of ``dataset``; keep only the prompt hashes."""
        return [prompt_hash(self.render(dataset, n), self.schema) for n in range(len(dataset.rows))]

    def job(self, source: str, data: dict[str, Any], shard: tuple[int, int] | None) -> JobIdentity:
        return JobIdentity(source=source, data=data, task=self.task.name, template_hash=self.task.template_hash,
                           labels=tuple(self.task.labels), annotators=tuple(self.names), samples=self.samples,
                           shard=shard)

    def wanted(self, hashes: Mapping[str, str]) -> Wanted:
        return Wanted(hashes, self.annotators, self.samples)


class Wanted(Mapping[VoteKey, str]):
    """Every vote key of the job and the fingerprint it is asked with now, computed on demand
    from the prompt hash of each item (``hashes``: item id -> prompt hash)."""

    def __init__(self, hashes: Mapping[str, str], annotators: Sequence[Annotator], samples: int) -> None:
        self.hashes = hashes
        self.by_name = {a.name: a for a in annotators}
        self.samples = samples

    def __getitem__(self, key: VoteKey) -> str:
        item_id, name, sample = key
        phash = self.hashes.get(item_id)
        annotator = self.by_name.get(name)
        if phash is None or annotator is None or not 0 <= sample < self.samples:
            raise KeyError(key)
        return annotator.fingerprint(phash, sample)

    def __iter__(self) -> Iterator[VoteKey]:
        for item_id in self.hashes:
            for name in self.by_name:
                for s in range(self.samples):
                    yield (item_id, name, s)

    def __len__(self) -> int:
        return len(self.hashes) * len(self.by_name) * self.samples


__all__ = ["Annotator", "JobBuilder", "Request", "Wanted"]

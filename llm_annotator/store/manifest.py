"""``run.json``: the typed, versioned manifest of a run directory.

``annotate`` (live, streamed or batch), ``batch collect`` and ``merge`` all write this
one shape. It is written when a run starts (``status: running``, with the job's
identity, so a killed run still names its job) and again when every other file of the
run is written.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from llm_annotator.core.votes import FORMAT_VERSION

#: ``complete``: every wanted vote has an answer (valid or invalid); ``partial``: some
#: requests failed (a re-run asks them again); ``failed``: no valid vote at all, or an
#: annotator met an error no retry mends; ``stopped_by_budget``: votes left unasked by the
#: budget; ``batch_pending``: votes wait in provider batch jobs.
Status = Literal["running", "complete", "partial", "failed", "stopped_by_budget", "batch_pending", "interrupted"]


class Counts(BaseModel):
    model_config = ConfigDict(extra="allow")

    votes_requested: int = 0
    votes: int = 0
    valid: int = 0
    invalid: int = 0
    errors: int = 0
    by_reason: dict[str, int] = Field(default_factory=dict)
    resumed: int = 0
    cache_hits: int = 0
    new: int = 0
    not_issued: int = 0
    stopped: int = 0
    valid_by_annotator: dict[str, int] = Field(default_factory=dict)
    in_batch: int = 0
    batch_answers: int = 0
    requests: int = 0
    failed_requests: int = 0
    stale_dropped: int = 0
    failed_before: int = 0
    reparsed: int = 0
    cache_write_failed: int = 0
    cache_corrupted: int = 0
    cost_estimated: int = 0
    # a task with several outputs: each output's valid votes and reasons ({"valid", "by_reason"})
    by_output: dict[str, dict[str, Any]] = Field(default_factory=dict)


class Failure(BaseModel):
    """One reason votes of the run hold no label: how many, an example, and the fix."""

    kind: str
    count: int
    example: str | None = None
    fix: str


class BudgetFigures(BaseModel):
    limit_usd: float | None = None
    spent_usd: float = 0.0            # the job's, across every run into the directory
    spent_this_run_usd: float = 0.0


class RunManifest(BaseModel):
    model_config = ConfigDict(extra="allow")

    format_version: int = FORMAT_VERSION
    status: Status = "running"
    job: dict[str, Any] = Field(default_factory=dict)          # JobIdentity fields + fingerprint
    task: dict[str, Any] = Field(default_factory=dict)
    template_hash: str = ""
    labels: list[str] = Field(default_factory=list)
    models: list[dict[str, Any]] = Field(default_factory=list)
    annotators: dict[str, dict[str, Any]] = Field(default_factory=dict)  # name -> identity (+ digest)
    parameters: dict[str, Any] = Field(default_factory=dict)
    data: dict[str, Any] = Field(default_factory=dict)
    counts: Counts = Field(default_factory=Counts)
    failures: list[Failure] = Field(default_factory=list)       # most frequent first
    stopped_by: dict[str, str] = Field(default_factory=dict)    # annotator -> error no retry mends
    n_not_honoured: list[str] = Field(default_factory=list)
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: float = 0.0                 # spent by this run
    cost_usd_all_votes: float = 0.0       # the cost of every vote in the directory
    budget: BudgetFigures = Field(default_factory=BudgetFigures)
    wall_s: float = 0.0
    started_at: str | None = None
    finished_at: str | None = None
    cache_dir: str | None = None
    batches: list[dict[str, Any]] = Field(default_factory=list)
    versions: dict[str, str | None] = Field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


__all__ = ["BudgetFigures", "Counts", "Failure", "RunManifest", "Status"]

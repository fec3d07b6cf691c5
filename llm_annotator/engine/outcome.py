"""How a run ended: its counts, its status in one word, and the reasons votes hold no label.

The status comes from what happened (see :data:`llm_annotator.store.manifest.Status`);
the CLI turns it into an exit code, the library into a :class:`RunWarning`.
"""

from __future__ import annotations

import datetime as dt
import warnings
from importlib import metadata
from typing import Any

from llm_annotator.core.errors import ErrorKind, RunWarning
from llm_annotator.core.votes import invalid_and_failed
from llm_annotator.engine.budget import Budget
from llm_annotator.engine.stats import RunStats
from llm_annotator.store.batch_state import BatchState
from llm_annotator.store.manifest import BudgetFigures, Counts, Failure, RunManifest, Status


def begin(job: Any, builder: Any, specs: list[Any], parameters: dict[str, Any], source: Any, started: dt.datetime,
          cache: Any) -> RunManifest:
    """The manifest of a run that starts: the job, its annotators (each with the outputs its
    task answers) and parameters, the data read, the versions."""
    task = builder.task
    return RunManifest(job={**job.model_dump(mode="json"), "fingerprint": job.fingerprint},
                       task=task.model_dump(mode="json"), template_hash=task.template_hash,
                       labels=list(task.labels), models=[s.public() for s in specs],
                       annotators={a.name: {**a.identity.model_dump(mode="json"), "digest": a.digest,
                                            "outputs": [o.name for o in a.task.output_specs]}
                                   for a in builder.annotators},
                       parameters=parameters,
                       data={"source": source.source, "n_items": source.n_items, "columns": source.columns},
                       started_at=started.isoformat(timespec="seconds"),
                       cache_dir=str(cache.directory) if cache is not None else None,
                       versions={"llm_annotator": _version("llm-annotator-kit"), "litellm": _version("litellm")})


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def finish(manifest: RunManifest, tally: dict[str, Any], stats: RunStats, budget: Budget,
           state: BatchState | None) -> RunManifest:
    """The manifest of a run that ended, from its tally of votes and what the run counted."""
    errors: dict[str, int] = tally["errors"]
    invalid, failed = invalid_and_failed(errors)
    counts = Counts(
        votes_requested=stats.requested_votes, votes=tally["votes"], valid=tally["valid"],
        valid_by_annotator=tally.get("valid_by_annotator", {}),
        invalid=invalid, errors=failed, by_reason=errors,
        resumed=stats.resumed_votes, cache_hits=stats.cached_votes, new=stats.new_votes,
        not_issued=stats.not_issued, stopped=stats.stopped, in_batch=stats.in_batch,
        batch_answers=stats.batch_answers, requests=stats.requests, failed_requests=stats.failed_requests,
        stale_dropped=stats.stale_dropped, failed_before=stats.failed_before, reparsed=stats.reparsed,
        cache_write_failed=stats.cache_write_failed, cache_corrupted=stats.cache_corrupted,
        cost_estimated=stats.cost_estimated, by_output=tally.get("by_output", {}))
    failures = [Failure(kind=kind, count=count, example=stats.examples.get(kind),
                        fix=(ErrorKind.of(kind) or ErrorKind.ERROR).fix)
                for kind, count in sorted(errors.items(), key=lambda kv: (-kv[1], kv[0]))]
    return manifest.model_copy(update={
        "status": run_status(counts, bool(stats.fatal)), "counts": counts, "failures": failures,
        "stopped_by": dict(stats.fatal), "n_not_honoured": stats.n_unsupported,
        "tokens_in": stats.tokens_in, "tokens_out": stats.tokens_out,
        "cost_usd": round(budget.spent_this_run, 8), "cost_usd_all_votes": round(float(tally["cost_usd"]), 8),
        "budget": BudgetFigures(limit_usd=budget.limit, spent_usd=round(budget.spent, 8),
                                spent_this_run_usd=round(budget.spent_this_run, 8)),
        "wall_s": round(stats.wall_s, 3), "finished_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "batches": state.summary() if state is not None else []})


def run_status(counts: Counts, stopped: bool = False) -> Status:
    """What happened, in one word (see :data:`llm_annotator.store.manifest.Status`)."""
    if counts.in_batch:
        return "batch_pending"
    if stopped:
        return "failed"
    if counts.not_issued:
        return "stopped_by_budget"
    if counts.votes_requested and not counts.valid:
        return "failed"
    if counts.votes_requested and not counts.errors and 0 in counts.valid_by_annotator.values():
        return "failed"  # an annotator answered, and none of its answers is a label: its set-up is wrong
    if counts.errors or counts.votes < counts.votes_requested:
        return "partial"
    return "complete"


def warn_if_failed(manifest: RunManifest) -> None:
    """A failed or partial run says so in Python too (the CLI says it with its exit code)."""
    if manifest.status not in ("failed", "partial"):
        return
    reasons = "; ".join(f"{f.kind} x{f.count}" + (f" (e.g. {f.example})" if f.example else "") + f": {f.fix}"
                        for f in manifest.failures[:3])
    silent = [name for name, valid in manifest.counts.valid_by_annotator.items() if not valid]
    none = f" ({', '.join(silent)} gave none)" if silent and manifest.counts.valid else ""
    warnings.warn(f"run {manifest.status}: {manifest.counts.valid} of {manifest.counts.votes_requested} votes "
                  f"valid{none}; {reasons}", RunWarning, stacklevel=2)


__all__ = ["begin", "finish", "run_status", "warn_if_failed"]

"""One job in N processes (``workers=N``, CLI ``--workers N``), sharing its run directory.

The parent process reads the input, checks and resumes the job exactly as a one-process
run does, then starts N worker processes (``python -m llm_annotator.engine.workers``;
their arguments, a key included, reach them pickled through a pipe, never a file). Worker
``i`` annotates the job's items at positions i, i + N, ...: it replays from the shared
answer cache, calls the providers, appends its votes to ``votes.w{i}.jsonl`` in the run
directory and its spend to the shared ``ledger.jsonl``, and keeps the job's budget with
the others through :class:`~llm_annotator.engine.budget.SharedBudget`. The parent shows one
progress display from the workers' reports and, when all have finished, appends their
votes to ``votes.jsonl`` and writes the labels and ``run.json``. A run killed meanwhile
leaves the workers' files; the next run of the job joins them first (every answer is in
the cache before its vote is written, so nothing paid is lost either way).

The votes are those of a one-process run: the same requests by the same fingerprints,
split by item.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import pickle
import sys
import time
from collections.abc import Callable, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llm_annotator.core.data import Dataset
from llm_annotator.core.errors import AnnotatorError, ConfigError, RunDirError
from llm_annotator.core.models import ModelSpec
from llm_annotator.core.task import Task
from llm_annotator.engine.stats import RunStats
from llm_annotator.store.rundir import LEDGER, SHARED_BUDGET, VOTES, WORKER_LEDGER, WORKER_VOTES


@dataclass
class WorkerCall:
    """What worker ``index`` of ``workers`` is given: the job, and its share of the items."""

    index: int
    workers: int
    task: Task
    specs: list[ModelSpec]
    samples: int
    labels: list[str] | None
    context: int | None
    media_root: Path | None
    run_dir: Path
    cache: str | bool | None             # the answer cache's directory; True: the worker's own default; None: none
    budget_usd: float | None
    ray: bool = False                    # a Ray task: its own ledger file and budget share, no lock
    budget_share: float | None = None    # Ray: this worker's share of what the budget has left
    dataset: Dataset | None = None       # in memory: the worker's rows
    stream: dict[str, Any] | None = None  # streamed: StreamInput's arguments


def check_workers(workers: int | None, *, out: Path | None, batch: bool, collect: bool, data: Any, stream: bool,
                  ray: str | None = None) -> int:
    """The number of worker processes (None: one), checked against the job's other options."""
    if workers is None:
        workers = 1
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ConfigError(f"workers={workers!r}: a job runs in one process or more", fix="pass workers=1 or more")
    if workers == 1 and ray is None:
        return workers
    if out is None:
        raise ConfigError("workers write their votes into the run directory, and there is none",
                          fix="pass out=RUN_DIR (CLI: --out RUN_DIR)")
    if batch or collect:
        raise ConfigError("a batch job is submitted and collected by one process",
                          fix="drop workers= (CLI: --workers) for batch jobs")
    if stream and not isinstance(data, str | Path):
        raise ConfigError("streamed workers each read the input file, and the input is not a file",
                          fix="pass the path of the input, or annotate it in memory")
    return workers


def join_worker_votes(run_dir: Path, votes: Path | None = None) -> int:
    """Append the complete lines of every worker's votes file to ``votes.jsonl`` (and of
    every Ray worker's ledger to ``ledger.jsonl``) and remove the files; returns the votes
    joined. A vote joined twice (a kill between the append and the removal) is read back
    once; a ledger line joined twice counts twice, which errs on the side of the budget."""
    joined = 0
    files = [(path, votes or run_dir / VOTES) for path in sorted(run_dir.glob(WORKER_VOTES.format("*")))]
    files += [(path, run_dir / LEDGER) for path in sorted(run_dir.glob(WORKER_LEDGER.format("*")))]
    for path, into in files:
        text = path.read_text(encoding="utf-8", errors="surrogateescape")
        lines = text if text.endswith("\n") else text[:text.rfind("\n") + 1]  # a torn last line: re-asked
        if lines:
            with into.open("a", encoding="utf-8", errors="surrogateescape") as handle:
                handle.write(lines)
                handle.flush()
                os.fsync(handle.fileno())
            joined += lines.count("\n") if into.name == VOTES else 0
        path.unlink()
    return joined


def merge_stats(total: RunStats, part: dict[str, Any]) -> None:
    """Add a worker's counts to the run's."""
    for item in dataclasses.fields(RunStats):
        name, value = item.name, part.get(item.name)
        if value is None or name in ("requested_votes", "resumed_votes", "stale_dropped", "failed_before",
                                     "reparsed", "log_repaired", "wall_s"):
            continue  # the parent's own: it read the job and resumed it
        mine = getattr(total, name)
        if isinstance(mine, bool):
            setattr(total, name, mine or bool(value))
        elif isinstance(mine, int | float):
            setattr(total, name, mine + value)
        elif isinstance(mine, list):
            mine += [v for v in value if v not in mine]
        elif isinstance(mine, dict):
            for key, text in value.items():
                mine.setdefault(key, text)


async def run_workers(calls: list[WorkerCall], stats: RunStats, *, progress: bool, done: int) -> tuple[float, int]:
    """Start the workers, show their progress, wait for all; returns what they spent and
    the requests their budget refused. A worker's error is raised (the others are
    stopped) once every process has ended."""
    budget_figures: list[Any] = [0.0, 0]
    bar: Any = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=stats.requested_votes, initial=done, unit="vote", desc=f"annotating ({len(calls)} workers)",
                   file=sys.stderr, dynamic_ncols=True)
    spent = [0.0] * len(calls)
    errors: list[str] = []
    procs = [await asyncio.create_subprocess_exec(
        sys.executable, "-m", "llm_annotator.engine.workers", stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE, limit=2**24) for _ in calls]

    async def follow(n: int, proc: asyncio.subprocess.Process, call: WorkerCall) -> None:
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(pickle.dumps(call))
        await proc.stdin.drain()
        proc.stdin.close()
        async for line in proc.stdout:
            try:
                report = json.loads(line)
            except json.JSONDecodeError:
                continue
            if "votes" in report and bar is not None:
                spent[n] = report.get("cost_usd", spent[n])
                bar.update(report["votes"])
                bar.set_postfix_str(f"${sum(spent):.4f}", refresh=False)
            if "stats" in report:
                merge_stats(stats, report["stats"])
                budget_figures[0] += report.get("spent", 0.0)
                budget_figures[1] += report.get("refused", 0)
            if "error" in report:
                errors.append(report["error"])
                for other in procs:  # the job cannot finish: stop the other workers too
                    with contextlib.suppress(ProcessLookupError):
                        other.terminate()
        code = await proc.wait()
        if code != 0 and not errors:
            errors.append(f"worker {call.index} of {call.workers} ended with exit status {code}")

    started = time.perf_counter()
    try:
        await asyncio.gather(*(follow(n, p, c) for n, (p, c) in enumerate(zip(procs, calls, strict=True))))
    finally:
        for proc in procs:
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
        if bar is not None:
            bar.close()
        stats.wall_s += time.perf_counter() - started
    if errors:
        raise RunDirError(errors[0], fix="correct it and run the same job again: it resumes where the workers stopped")
    return float(budget_figures[0]), int(budget_figures[1])


def _ray_task(call: WorkerCall) -> dict[str, Any]:
    """One worker's share as a Ray task (on any machine of the cluster)."""
    stats, budget = asyncio.run(work(call, lambda **_: None))
    return {"stats": dataclasses.asdict(stats), "spent": budget.spent_this_run, "refused": budget.refused}


async def run_ray_workers(calls: list[WorkerCall], stats: RunStats, *, progress: bool, done: int,
                          address: str) -> tuple[float, int]:
    """The workers as Ray tasks on the cluster at ``address`` (``local``: a Ray instance of
    this machine, started here). The run directory must be on storage every node sees;
    progress is read from the growth of the workers' votes files, so nothing but files
    is shared. A task's error is raised once every task has ended."""
    try:
        import ray
    except ModuleNotFoundError:
        raise ConfigError("--ray runs the workers on a Ray cluster, and Ray is not installed",
                          fix="pip install 'llm-annotator-kit[ray]'") from None
    if any(spec.api_key is not None for call in calls for spec in call.specs):
        raise ConfigError("a key given as api_key would travel in Ray's task records",
                          fix="set the provider's key in the environment of every Ray node (e.g. OPENAI_API_KEY) "
                              "and leave api_key unset")
    if not ray.is_initialized():
        ray.init(address=None if address == "local" else address, include_dashboard=False, log_to_driver=False,
                 configure_logging=False)
    task = ray.remote(_ray_task)
    refs = [task.options(name=f"llm_annotator worker {c.index}/{c.workers}").remote(c) for c in calls]
    bar: Any = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=stats.requested_votes, initial=done, unit="vote", desc=f"annotating ({len(calls)} Ray tasks)",
                   file=sys.stderr, dynamic_ncols=True)
    seen: dict[Path, int] = {}
    results: list[Any] = []
    errors: list[str] = []
    started = time.perf_counter()
    loop = asyncio.get_running_loop()
    waiting = loop.run_in_executor(None, ray.get, refs)
    try:
        while not waiting.done():
            await asyncio.wait([waiting], timeout=0.5)
            if bar is not None:  # the votes written so far, from the files' new lines
                for path in calls[0].run_dir.glob(WORKER_VOTES.format("*")):
                    with contextlib.suppress(OSError), path.open("rb") as handle:
                        handle.seek(seen.get(path, 0))
                        chunk = handle.read()
                        seen[path] = seen.get(path, 0) + len(chunk)
                        bar.update(chunk.count(b"\n"))
        results = waiting.result()
    except Exception as exc:  # a task's error: ray.get raises it wrapped
        cause = getattr(exc, "cause", None) or exc
        errors.append(cause.message if isinstance(cause, AnnotatorError) else f"{type(cause).__name__}: {cause}")
    finally:
        if bar is not None:
            bar.close()
        stats.wall_s += time.perf_counter() - started
    if errors:
        raise RunDirError(f"a Ray worker failed: {errors[0]}",
                          fix="correct it and run the same job again: it resumes where the workers stopped")
    for result in results:
        merge_stats(stats, result["stats"])
    return sum(r["spent"] for r in results), sum(r["refused"] for r in results)


class _Reports:
    """A worker's progress display: counts sent to the parent every 0.2 s."""

    def __init__(self, send: Callable[..., None], stats: RunStats) -> None:
        self.send, self.stats = send, stats
        self.pending = 0
        self.sent = time.monotonic()

    def update(self, n: int) -> None:
        self.pending += n
        if time.monotonic() - self.sent >= 0.2:
            self.close()

    def set_postfix_str(self, *_: Any, **__: Any) -> None:
        """The parent shows the job's spend."""

    def close(self) -> None:
        if self.pending:
            self.send(votes=self.pending, cost_usd=self.stats.cost_usd)
            self.pending = 0
        self.sent = time.monotonic()


async def work(call: WorkerCall, send: Callable[..., None]) -> tuple[RunStats, Any]:
    """One worker's share of the job (in the worker process)."""
    from llm_annotator.core.votes import VoteKey
    from llm_annotator.engine.budget import Budget, SharedBudget
    from llm_annotator.engine.inputs import MemoryInput, StreamInput
    from llm_annotator.engine.jobs import JobBuilder
    from llm_annotator.engine.live import LiveBackend
    from llm_annotator.engine.options import open_cache
    from llm_annotator.engine.pipeline import Pipeline
    from llm_annotator.providers.client import start_import
    from llm_annotator.store.ledger import Ledger
    from llm_annotator.store.votelog import VoteLog, read_votes

    start_import()  # LiteLLM loads while the worker reads and renders its share
    builder = JobBuilder(call.task, call.specs, call.samples, call.media_root, call.labels, call.context)
    if call.dataset is not None:
        source: MemoryInput | StreamInput = MemoryInput(call.dataset, builder)
    else:
        assert call.stream is not None
        source = StreamInput(builder=builder, part=(call.index, call.workers), **call.stream)
    votes = call.run_dir / VOTES
    resumed: MutableMapping[VoteKey, None] = source.index.key_set() if isinstance(source, StreamInput) else {}
    if votes.exists():  # what the parent resumed: this worker's items' votes in votes.jsonl
        for vote in read_votes(votes):
            if vote.item_id in source.hashes:
                resumed[vote.key] = None
    stats = RunStats(requested_votes=source.n_items * len(call.specs) * call.samples)
    cache = open_cache(call.cache if call.cache is not None else False)
    if call.ray:  # nothing shared across machines but files of its own and the votes' folder
        ledger = Ledger(call.run_dir / WORKER_LEDGER.format(call.index))
        budget = Budget(call.budget_share, ledger)
    else:
        ledger = Ledger(call.run_dir / LEDGER)
        budget = (SharedBudget(call.budget_usd, ledger, call.run_dir / SHARED_BUDGET) if call.budget_usd is not None
                  else Budget(None, ledger))
    log = VoteLog(call.run_dir / WORKER_VOTES.format(call.index))
    log.open({})
    try:
        pipeline = Pipeline(builder, cache=cache, log=log, keep_votes=False, stats=stats, bar=_Reports(send, stats))
        await pipeline.run(source.chunks(), LiveBackend(budget, stats), resumed)
    finally:
        if isinstance(source, StreamInput):
            source.close()
        log.close()
        ledger.close()
        if cache is not None:
            cache.close()
    return stats, budget


def main() -> int:
    """The worker process: a :class:`WorkerCall` on stdin, JSON lines on stdout."""
    call: WorkerCall = pickle.load(sys.stdin.buffer)
    out = sys.stdout

    def send(**fields: Any) -> None:
        out.write(json.dumps(fields) + "\n")
        out.flush()

    try:
        stats, budget = asyncio.run(work(call, send))
    except AnnotatorError as exc:
        send(error=f"worker {call.index} of {call.workers}: {exc}")
        return 1
    except Exception as exc:  # anything else stops the job too, said in one line
        send(error=f"worker {call.index} of {call.workers}: {type(exc).__name__}: {exc}")
        return 1
    send(stats=dataclasses.asdict(stats), spent=budget.spent_this_run, refused=budget.refused)
    return 0






async def annotate_in_workers(workers: int, *, builder: Any, source: Any, labels: Any, media_root: Path | None,
                              stream: dict[str, Any] | None, run_dir: Path, cache: Any, budget: Any,
                              stats: RunStats, progress: bool, done: int, keep: bool,
                              ray: str | None = None) -> dict[Any, Any]:
    """The live calls of a job in ``workers`` processes (the parent has resumed the job),
    or in ``workers`` Ray tasks on the cluster at ``ray``; then their votes joined into
    ``votes.jsonl``. Returns the job's votes when ``keep``."""
    from llm_annotator.engine.budget import SharedBudget
    from llm_annotator.store.ledger import Ledger
    from llm_annotator.store.votelog import read_votes

    def share(i: int) -> Dataset | None:
        if stream is not None:
            return None
        data = source.dataset
        mine = range(i, len(data.rows), workers)
        return Dataset([data.rows[n] for n in mine], [data.item_ids[n] for n in mine], data.columns, data.source)

    calls = [WorkerCall(index=i, workers=workers, task=builder.task, specs=[a.spec for a in builder.annotators],
                        samples=builder.samples, labels=list(labels) if labels is not None else None,
                        context=builder.context,
                        media_root=media_root, run_dir=run_dir, budget_usd=budget.limit,
                        cache=str(cache.directory) if cache is not None else None, dataset=share(i), stream=stream)
             for i in range(workers)]
    if ray is not None:
        for call in calls:  # each machine its own cache, and an even share of what the budget has left
            call.ray, call.cache = True, (True if cache is not None else None)
            call.budget_share = (budget.limit - budget.spent) / workers if budget.limit is not None else None
    elif budget.limit is not None:
        SharedBudget.create(run_dir / SHARED_BUDGET, budget.spent)
    try:
        if ray is not None:
            spent, refused = await run_ray_workers(calls, stats, progress=progress, done=done, address=ray)
        else:
            spent, refused = await run_workers(calls, stats, progress=progress, done=done)
    finally:
        (run_dir / SHARED_BUDGET).unlink(missing_ok=True)
        join_worker_votes(run_dir, run_dir / VOTES)
    budget.ledger = Ledger(run_dir / LEDGER)  # what every worker recorded
    budget.spent_this_run += spent
    budget.refused += refused
    if not keep:
        return {}
    wanted = builder.wanted(source.hashes)
    return {v.key: v for v in read_votes(run_dir / VOTES) if wanted.get(v.key) == v.fingerprint}


__all__ = ["WorkerCall", "annotate_in_workers", "check_workers", "join_worker_votes", "merge_stats",
           "run_ray_workers", "run_workers"]


if __name__ == "__main__":
    raise SystemExit(main())

"""Provider batch jobs: half the price, answers within 24 hours, the same votes table.

``annotate(..., batch=True)`` (CLI ``annotate --batch``) renders and checks every row,
replays what the run directory and the cache already hold, writes the rest as batch
request files, one line per (item, annotator, missing samples) with the ``custom_id``
``ITEM|ANNOTATOR|SAMPLES``, uploads and submits them through LiteLLM's files and batches
API, records them in ``RUN_DIR/batches.json`` and returns.

:func:`collect` (CLI ``batch collect``) downloads the batches that have ended. Each answer
is stored in the cache under the key of the request it answers, recomputed from that
request as it was sent (kept in ``RUN_DIR/batch/``), never from where the line sits in
the output; then the job is run again from the cache, so votes, labels and ``run.json``
come out exactly as from a live run. Lines that failed become failed votes, which a
later ``annotate --batch`` (or a live run) asks again; answers of batches still running
are left alone, and are never asked a second time while they run.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import SecretStr

from . import llm
from .batch_state import STATE, BatchState, custom_id, parse_custom_id
from .errors import ConfigError, ModelError, RunDirError
from .models import ModelSpec
from .prompts import prompt_hash
from .votes import write_atomic

if TYPE_CHECKING:
    from .result import AnnotationResult
    from .runner import Runner, _Job
    from .stream import StreamedRun

ENDPOINT = "/v1/chat/completions"
#: OpenAI accepts at most 50,000 requests (and 200 MB) per batch file.
MAX_REQUESTS = 50_000
TERMINAL = frozenset({"completed", "failed", "expired", "cancelled"})
PROVIDERS = frozenset({"openai", "azure"})

def check_spec(spec: ModelSpec) -> str:
    """The LiteLLM provider that runs ``spec``'s batches; a clear error where none can."""
    if spec.router is not None:
        raise ConfigError(f"annotator {spec.name!r}: a batch goes to one provider, a router spreads live calls",
                          fix="drop --router, or drop --batch")
    if spec.is_local:
        raise ConfigError(f"annotator {spec.name!r}: the embedded model has no batch API",
                          fix="run it live (drop --batch)")
    if "|" in spec.name:
        raise ConfigError(f"annotator name {spec.name!r} contains '|', which batch request ids use",
                          fix="give the model another name=")
    found, _ = llm.provider(spec.model, spec.api_base)
    if found not in PROVIDERS:
        raise ConfigError(f"model {spec.model!r} ({found or 'unknown provider'}): batch jobs are supported for "
                          "OpenAI and Azure OpenAI models", fix="use an openai/ or azure/ model, or drop --batch")
    return found


def _connection(spec: ModelSpec) -> dict[str, Any]:
    found, _ = llm.provider(spec.model, spec.api_base)
    conn: dict[str, Any] = {"custom_llm_provider": found}
    if spec.api_base:
        conn["api_base"] = spec.api_base
    if spec.api_key is not None:
        conn["api_key"] = spec.api_key.get_secret_value()
    elif llm.needs_placeholder_key(spec):
        conn["api_key"] = "no-key"
    return conn


async def _call(function: str, **kwargs: Any) -> Any:
    """One files/batches call, LiteLLM's synchronous form in a thread: these are a few calls
    per job, and the async clients LiteLLM caches outlive the event loop they were made on."""
    return await asyncio.to_thread(getattr(llm.litellm(), function), **kwargs)


def _fail(what: str, spec: ModelSpec, exc: BaseException) -> ModelError:
    return ModelError(f"batch {what} for annotator {spec.name!r} failed: {llm.redact(str(exc), spec)}",
                      fix="check the provider's credentials and status; re-running resumes where this stopped")


# -- submit ---------------------------------------------------------------------------
def request_line(runner: Runner, spec: ModelSpec, item: int, samples: list[int]) -> dict[str, Any]:
    caps = llm.capabilities(spec)
    task = runner.task
    body = llm.request_parameters(spec, runner.messages(item), n=len(samples), max_tokens=task.max_tokens,
                                  logprobs=min(20, max(5, len(task.labels))) if caps.logprobs else None)
    body["model"] = llm.provider(spec.model, spec.api_base)[1]
    if runner.schema is not None and caps.response_format:
        body["response_format"] = runner.schema
    return {"custom_id": custom_id(runner.dataset.item_ids[item], spec.name, samples),
            "method": "POST", "url": ENDPOINT, "body": body}


async def submit(runner: Runner, jobs: list[_Job], state: BatchState, *,
                 max_requests: int | None = None) -> None:
    """Write, upload and submit the requests of ``jobs``; record each batch as it goes."""
    max_requests = max_requests or MAX_REQUESTS
    await reconcile(state, runner.specs)
    in_flight = state.in_flight()
    lines: dict[str, list[tuple[dict[str, Any], int]]] = {spec.name: [] for spec in runner.specs}
    for job in jobs:
        spec = job.spec
        item_id = runner.dataset.item_ids[job.item]
        samples = [s for s in job.samples if (item_id, spec.name, s) not in in_flight]
        runner.stats.in_batch += len(job.samples) - len(samples)
        groups = [samples] if llm.capabilities(spec).n else [[s] for s in samples]
        for group in (g for g in groups if g):
            estimate = runner.estimate(spec, job.item, len(group), batch=True)
            if not runner.budget.reserve(estimate):
                runner.stats.not_issued += len(group)
                continue
            lines[spec.name].append((request_line(runner, spec, job.item, group), len(group)))
    (state.run_dir / "batch").mkdir(parents=True, exist_ok=True)
    for spec in runner.specs:
        todo = lines[spec.name]
        for start in range(0, len(todo), max_requests):
            chunk = todo[start:start + max_requests]
            await _submit_one(state, spec, [line for line, _ in chunk], sum(n for _, n in chunk))
            runner.stats.in_batch += sum(n for _, n in chunk)


async def _submit_one(state: BatchState, spec: ModelSpec, lines: list[dict[str, Any]], votes: int) -> None:
    number = len(state.batches) + 1
    name = f"{number:04d}-{re.sub(r'[^A-Za-z0-9._-]+', '_', spec.name)}.jsonl"
    text = "".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines)
    write_atomic(state.run_dir / "batch" / name, text)
    entry: dict[str, Any] = {"id": None, "annotator": spec.name, "file": f"batch/{name}", "requests": len(lines),
                             "votes": votes, "status": "uploading", "collected": False}
    state.batches.append(entry)
    state.save()  # before the upload: a kill from here on is seen and resolved by reconcile()
    conn = _connection(spec)
    try:
        uploaded = await _call("create_file", file=(name, text.encode()), purpose="batch", **conn)
        entry.update(input_file_id=uploaded.id, status="submitting")
        state.save()
        created = await _call("create_batch", completion_window="24h", endpoint=ENDPOINT, input_file_id=uploaded.id,
                                         metadata={"llm_annotator": name}, **conn)
    except Exception as exc:
        entry["status"] = "abandoned" if entry["status"] == "uploading" else entry["status"]
        state.save()
        raise _fail("submission", spec, exc) from None
    entry.update(id=created.id, status=created.status,
                 submitted_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"))
    state.save()
    state.asked(line["custom_id"] for line in lines)


async def reconcile(state: BatchState, specs: list[ModelSpec]) -> None:
    """Resolve batches whose submission was interrupted: adopt the batch the provider made
    from the uploaded file, or mark the entry abandoned so its requests are asked again."""
    changed = False
    by_name = {spec.name: spec for spec in specs}
    for entry in state.batches:
        if entry.get("status") == "uploading":
            entry["status"] = "abandoned"  # no batch can exist without the file id we never got
            changed = True
        elif entry.get("status") == "submitting":
            spec = by_name.get(entry["annotator"])
            if spec is None:
                continue
            found = None
            try:
                listing = await _call("list_batches", limit=100, **_connection(spec))
                found = next((b for b in listing.data if b.input_file_id == entry["input_file_id"]), None)
            except Exception as exc:
                raise _fail("listing", spec, exc) from None
            if found is None:
                entry["status"] = "abandoned"
            else:
                entry.update(id=found.id, status=found.status)
            changed = True
    if changed:
        state.forget()
        state.save()


# -- status and collect ---------------------------------------------------------------
async def refresh(state: BatchState, specs: list[ModelSpec]) -> None:
    """Ask the provider how every uncollected batch stands."""
    await reconcile(state, specs)
    by_name = {spec.name: spec for spec in specs}
    for entry in state.batches:
        if entry.get("collected") or entry.get("id") is None or entry.get("status") == "abandoned":
            continue
        spec = by_name[entry["annotator"]]
        try:
            batch = await _call("retrieve_batch", batch_id=entry["id"], **_connection(spec))
        except Exception as exc:
            raise _fail(f"status of {entry['id']}", spec, exc) from None
        counts = getattr(batch, "request_counts", None)
        entry.update(status=batch.status, output_file_id=batch.output_file_id, error_file_id=batch.error_file_id,
                     counts={"total": getattr(counts, "total", None), "completed": getattr(counts, "completed", None),
                             "failed": getattr(counts, "failed", None)})
    state.save()


async def _download(spec: ModelSpec, file_id: str | None) -> list[dict[str, Any]]:
    if not file_id:
        return []
    try:
        content = await _call("file_content", file_id=file_id, **_connection(spec))
    except Exception as exc:
        raise _fail(f"download of {file_id}", spec, exc) from None
    raw = content.content if hasattr(content, "content") else bytes(content)
    return [json.loads(line) for line in raw.decode("utf-8").splitlines() if line.strip()]


def _line_error(line: Mapping[str, Any]) -> str:
    error = line.get("error") or {}
    response = line.get("response") or {}
    if error:
        return f"batch_failed: {error.get('code', 'error')}: {error.get('message', '')}"[:300]
    body = response.get("body") or {}
    message = (body.get("error") or {}).get("message", "") if isinstance(body, dict) else ""
    return f"batch_failed: status {response.get('status_code')}: {message}"[:300]


async def gather(state: BatchState, runner: Runner) -> int:
    """Download every ended, uncollected batch into the cache; returns the answers stored."""
    by_name = {spec.name: spec for spec in runner.specs}
    stored = 0
    for entry in state.batches:
        if entry.get("collected") or entry.get("status") not in TERMINAL:
            continue
        spec = by_name[entry["annotator"]]
        requests = state.requests(entry)
        lines = await _download(spec, entry.get("output_file_id")) + await _download(spec, entry.get("error_file_id"))
        failed: dict[str, str] = {}
        answered: set[str] = set()
        for line in lines:
            cid = line.get("custom_id")
            if cid not in requests:
                continue  # not ours: never cache an answer under a request we cannot name
            response = line.get("response") or {}
            if response.get("status_code") != 200 or line.get("error"):
                failed[cid] = _line_error(line)
                continue
            entries = runner.batch_entries(spec, requests[cid], response.get("body") or {})
            if entries is None:
                failed[cid] = "batch_failed: the answer holds no choices"
                continue
            _, _, samples = parse_custom_id(cid)
            # The key comes from the messages as sent, not from the line's position or the
            # current data: an answer can only ever be found by the question it answers.
            phash = prompt_hash(requests[cid]["messages"], runner.schema)
            pairs = [(runner.key(spec, phash, s), e) for s, e in zip(samples, entries, strict=False)]
            runner.store_collected(pairs)
            stored += len(pairs)
            answered.add(cid)
            if len(entries) < len(samples):
                failed[cid] = "batch_failed: fewer choices than samples"  # the rest are asked again
        for cid in requests:
            if cid not in answered and cid not in failed:
                failed[cid] = f"batch_failed: batch {entry['status']} without an answer for this request"
        entry.update(collected=True, failed=failed,
                     collected_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"))
        state.forget()
        state.save()
    return stored


def job_call(data: Any, task: Any, specs: list[ModelSpec], *, samples: int, id_column: str | None, context: int,
             columns: Mapping[str, str] | None, shard: Any, cache: Any, budget_usd: float | None,
             stream: dict[str, Any] | None = None) -> dict[str, Any]:
    """What ``batches.json`` keeps to re-run a submitted job at collection (never a key)."""
    call = {
        "data": str(Path(data).resolve()) if isinstance(data, str | Path) else None,
        "task": task.model_dump(mode="json"), "models": [s.public() for s in specs], "samples": samples,
        "id_column": id_column, "context": context, "columns": dict(columns or {}),
        "shard": shard if shard is None or isinstance(shard, str) else list(shard),
        "cache": str(cache.directory) if cache is not None else None, "budget_usd": budget_usd,
    }
    if stream is not None:
        call["stream"] = stream
    return call


def submitted_specs(state: BatchState, api_key: str | None, api_base: str | None) -> list[ModelSpec]:
    """The annotators of the submitted job, with the caller's key (never stored)."""
    if not state.call:
        raise RunDirError(f"{state.run_dir} holds no batch job ({STATE} is missing)",
                          fix="submit one with 'llm-annotator annotate ... --batch --out RUN_DIR'")
    specs = []
    for public in state.call["models"]:
        fields = {k: v for k, v in public.items() if k in ModelSpec.model_fields and k != "extra"}
        fields["extra"] = public.get("extra") or {}
        if api_base is not None:
            fields["api_base"] = api_base
        specs.append(ModelSpec(**fields, api_key=SecretStr(api_key) if api_key else None))
    return specs


def load_call(state: BatchState, data: Any, api_key: str | None, api_base: str | None) -> dict[str, Any]:
    """The arguments of :func:`annotate` that re-run the submitted job."""
    from .task import Task

    specs = submitted_specs(state, api_key, api_base)
    call = dict(state.call)
    if data is None and call.get("data") is None:
        raise ConfigError(f"the batch job in {state.run_dir} was submitted from in-memory data",
                          fix="pass the same data again: collect(run_dir, data=...)")
    call["models"] = specs
    call["task"] = Task(**call["task"])
    call["data"] = data if data is not None else call["data"]
    return call


async def collect_async(run_dir: str | Path, *, data: Any = None, api_key: str | None = None,
                        api_base: str | None = None, wait: bool = False, poll_s: float = 30.0,
                        progress: bool | None = None) -> AnnotationResult | StreamedRun:
    """Download ended batches into the cache and rebuild the run's votes and labels."""
    from .api import annotate_async

    state = BatchState.load(run_dir)
    call = load_call(state, data, api_key, api_base)
    while True:
        await refresh(state, call["models"])
        pending = [e for e in state.batches if e.get("status") not in TERMINAL | {"abandoned"}]
        if not wait or not pending:
            break
        await asyncio.sleep(poll_s)
    stream = call.pop("stream", None)
    if stream is not None:
        from .stream import annotate_stream_async

        return await annotate_stream_async(call.pop("data"), call.pop("task"), call.pop("models"), out=run_dir,
                                           progress=progress, _batch_mode="collect", chunk_rows=stream["chunk_rows"],
                                           **call)
    return await annotate_async(call.pop("data"), call.pop("task"), call.pop("models"), out=run_dir,
                                progress=progress, _batch_mode="collect", **call)


def collect(run_dir: str | Path, **options: Any) -> AnnotationResult | StreamedRun:
    """Download the ended batches of ``run_dir`` and write its votes, labels and run.json.

    Votes of batches still running are left out (``run.json`` says ``batch_pending``);
    ``wait=True`` polls every ``poll_s`` seconds until every batch has ended. A job
    submitted by :func:`annotate_stream` is collected streamed, and gives a StreamedRun.
    """
    from .api import run_sync

    return run_sync(collect_async(run_dir, **options))


def status(run_dir: str | Path, *, api_key: str | None = None, api_base: str | None = None) -> list[dict[str, Any]]:
    """Every batch of ``run_dir`` as the provider reports it now."""
    from .api import run_sync

    state = BatchState.load(run_dir)
    run_sync(refresh(state, submitted_specs(state, api_key, api_base)))
    return state.summary()


__all__ = ["BatchState", "check_spec", "collect", "collect_async", "custom_id", "parse_custom_id", "status",
           "submit"]

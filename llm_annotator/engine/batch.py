"""Provider batch jobs: half the price, answers within 24 hours, the same votes table.

``annotate(..., batch=True)`` (CLI ``annotate --batch``) runs the one pipeline with the
:class:`SubmitBackend`: what the run directory and the cache already hold is replayed,
the rest is written as batch request files, one line per (item, annotator, missing
samples) with the ``custom_id`` ``ITEM|ANNOTATOR|SAMPLES``, uploaded and submitted, and
recorded in ``RUN_DIR/batches.json``. The budget reserves each batch's worst case in the
job's ledger.

Collection (``batch collect``) downloads the batches that have ended with
:func:`gather`. Each answer is stored in the cache under the fingerprint of the request
it answers, recomputed from that request as it was sent (kept in ``RUN_DIR/batch/``),
never from where the line sits in the output; then the pipeline runs again with the
:class:`CollectBackend`, so votes, labels and ``run.json`` come out exactly as from a
live run. Lines that failed become failed votes, which a later ``annotate --batch`` (or
a live run) asks again; answers of batches still running are never asked a second time
while they run.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from llm_annotator.core.errors import ConfigError, ErrorKind, RunDirError
from llm_annotator.core.identity import public_url
from llm_annotator.core.models import ModelSpec
from llm_annotator.core.prompts import prompt_hash
from llm_annotator.engine.budget import Budget
from llm_annotator.engine.jobs import JobBuilder, Request
from llm_annotator.engine.live import answers_of
from llm_annotator.engine.pipeline import Pipeline, Reporter
from llm_annotator.engine.stats import RunStats
from llm_annotator.providers import llm, pricing
from llm_annotator.providers.batch_api import call as _call
from llm_annotator.providers.batch_api import completion_of, request_line
from llm_annotator.providers.batch_api import connection as _connection
from llm_annotator.providers.batch_api import failure as _fail
from llm_annotator.store.batch_state import STATE, BatchState, custom_id, parse_custom_id
from llm_annotator.store.files import write_atomic

#: OpenAI accepts at most 50,000 requests and 200 MB per batch file; media make lines large
#: (a 5 s clip is about 210 kB of base64), so files are cut by size too, with a margin.
MAX_REQUESTS = 50_000
MAX_BYTES = 190_000_000
TERMINAL = frozenset({"completed", "failed", "expired", "cancelled"})


class SubmitBackend:
    """Writes, uploads and submits the requests; records each batch as it goes."""

    def __init__(self, builder: JobBuilder, state: BatchState, budget: Budget, stats: RunStats,
                 max_requests: int | None = None, max_bytes: int | None = None) -> None:
        self.builder = builder
        self.state = state
        self.budget = budget
        self.stats = stats
        self.max_requests = max_requests or MAX_REQUESTS
        self.max_bytes = max_bytes or MAX_BYTES
        self._reconciled = False

    def estimate(self, request: Request, n: int) -> float:
        spec = request.annotator.spec
        if self.budget.limit is None:
            return 0.0
        tokens = pricing.count_tokens(spec.model, request.messages)
        return pricing.price_of(spec, tokens, (spec.max_tokens or request.annotator.task.max_tokens) * n, batch=True)

    async def run(self, requests: list[Request], report: Reporter) -> None:
        if not self._reconciled:
            await reconcile(self.state, [a.spec for a in self.builder.annotators])
            self._reconciled = True
        lines: dict[str, list[tuple[dict[str, Any], Request, list[int], float]]] = {}
        for request in requests:
            spec, task = request.annotator.spec, request.annotator.task
            groups = [request.samples] if llm.capabilities(spec).n else [[s] for s in request.samples]
            for group in groups:
                estimate = self.estimate(request, len(group))
                if not await self.budget.reserve(estimate):
                    report.skipped(request, group)
                    continue
                line = request_line(spec, custom_id(request.item_id, spec.name, group), request.messages,
                                    n=len(group), max_tokens=task.max_tokens, schema=request.annotator.schema,
                                    labels=len(task.labels))
                lines.setdefault(spec.name, []).append((line, request, group, estimate))
        (self.state.run_dir / "batch").mkdir(parents=True, exist_ok=True)
        by_name = {a.name: a.spec for a in self.builder.annotators}
        for name, todo in lines.items():
            for chunk in self._files(todo):
                reserved = sum(estimate for *_, estimate in chunk)
                try:
                    batch = await _submit_one(self.state, by_name[name], [line for line, *_ in chunk],
                                              sum(len(group) for _, _, group, _ in chunk))
                except BaseException:
                    self.budget.settle(reserved, 0.0)
                    raise
                self.budget.settle(reserved, 0.0)
                self.budget.ledger.record(reserved, "batch_reserved", batch=batch)
                for _, request, group, _ in chunk:
                    report.pending(request, group)


    def _files(self, todo: list[Any]) -> Iterator[list[Any]]:
        """The lines cut into batch files of at most ``max_requests`` lines and ``max_bytes``."""
        chunk: list[Any] = []
        size = 0
        for entry in todo:
            line_bytes = len(json.dumps(entry[0], ensure_ascii=False).encode()) + 1
            if chunk and (len(chunk) == self.max_requests or size + line_bytes > self.max_bytes):
                yield chunk
                chunk, size = [], 0
            chunk.append(entry)
            size += line_bytes
        if chunk:
            yield chunk


class CollectBackend:
    """After :func:`gather`: failed batch lines become failed votes; the rest were never asked."""

    def __init__(self, state: BatchState) -> None:
        self.failures = state.failures()

    async def run(self, requests: list[Request], report: Reporter) -> None:
        for request in requests:
            for s in request.samples:
                found = self.failures.get((request.item_id, request.annotator.name, s))
                if found is None:
                    report.skipped(request, [s])
                else:
                    _, _, detail = found.partition(": ")
                    report.failed(request, [s], ErrorKind.BATCH_FAILED, detail)


async def _submit_one(state: BatchState, spec: ModelSpec, lines: list[dict[str, Any]], votes: int) -> str:
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
        created = await _call("create_batch", completion_window="24h", endpoint="/v1/chat/completions",
                              input_file_id=uploaded.id, metadata={"llm_annotator": name}, **conn)
    except Exception as exc:
        entry["status"] = "abandoned" if entry["status"] == "uploading" else entry["status"]
        state.save()
        raise _fail("submission", spec, exc) from None
    entry.update(id=created.id, status=created.status,
                 submitted_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"))
    state.save()
    state.asked(line["custom_id"] for line in lines)
    return str(entry["file"])


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


async def gather(state: BatchState, pipeline: Pipeline, budget: Budget) -> int:
    """Download every ended, uncollected batch into the cache; returns the answers stored."""
    builder = pipeline.builder
    by_name = {a.name: a for a in builder.annotators}
    stored = 0
    for entry in state.batches:
        if entry.get("collected") or entry.get("status") not in TERMINAL:
            continue
        annotator = by_name[entry["annotator"]]
        spec = annotator.spec
        requests = state.requests(entry)
        lines = await _download(spec, entry.get("output_file_id")) + await _download(spec, entry.get("error_file_id"))
        failed: dict[str, str] = {}
        answered: set[str] = set()
        billed = 0.0
        for line in lines:
            cid = line.get("custom_id")
            if cid not in requests:
                continue  # not ours: never cache an answer under a request we cannot name
            response = line.get("response") or {}
            if response.get("status_code") != 200 or line.get("error"):
                failed[cid] = _line_error(line)
                continue
            _, _, samples = parse_custom_id(cid)
            completion = completion_of(spec, response.get("body") or {})
            if completion is None:
                failed[cid] = "batch_failed: the answer holds no choices"
                continue
            answers = answers_of(completion, len(samples), spec=spec, batch=True)
            # The fingerprint comes from the messages as sent, not from the line's position or
            # the current data: an answer can only ever be found by the question it answers.
            phash = prompt_hash(requests[cid]["messages"], annotator.schema)
            pairs = [(annotator.fingerprint(phash, s), pipeline.entry(a, annotator)) for s, a in zip(samples, answers, strict=False)]
            if pipeline.cache is not None:
                pipeline.cache.set_many(pairs)
            pipeline.collected.update(fp for fp, _ in pairs)
            billed += completion.cost_usd
            pipeline.stats.tokens_in += completion.tokens_in
            pipeline.stats.tokens_out += completion.tokens_out
            pipeline.stats.cost_usd += completion.cost_usd
            stored += len(pairs)
            answered.add(cid)
            if len(answers) < len(samples):
                failed[cid] = "batch_failed: fewer choices than samples"  # the rest are asked again
        for cid in requests:
            if cid not in answered and cid not in failed:
                failed[cid] = f"batch_failed: batch {entry['status']} without an answer for this request"
        budget.ledger.record(billed, "batch_billed", batch=str(entry["file"]))
        budget.spent_this_run += billed
        entry.update(collected=True, failed=failed,
                     collected_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"))
        state.forget()
        state.save()
    return stored


def job_call(data: Any, task: Any, specs: list[ModelSpec], *, samples: int, id_column: str | None, context: int,
             columns: Mapping[str, str] | None, shard: Any, cache: Any, budget_usd: float | None,
             stream: dict[str, Any] | None = None, own: Mapping[str, Any] | None = None,
             media_root: Path | None = None) -> dict[str, Any]:
    """What ``batches.json`` keeps to re-run a submitted job at collection (never a key).
    ``own``: the tasks of annotators that have their own (name -> task), kept whole;
    ``media_root``: where the media were read, so a collection from elsewhere finds them."""
    own = own or {}
    models = [{**s.public(), **({"task": own[s.name].model_dump(mode="json")} if s.name in own else {})}
              for s in specs]
    call = {
        "data": str(Path(data).resolve()) if isinstance(data, str | Path) else None,
        "task": task.model_dump(mode="json"), "models": models, "samples": samples,
        "id_column": id_column, "context": context, "columns": dict(columns or {}),
        "shard": shard if shard is None or isinstance(shard, str) else list(shard),
        "cache": str(cache.directory) if cache is not None else None, "budget_usd": budget_usd,
    }
    if stream is not None:
        call["stream"] = stream
    if media_root is not None:
        call["media_root"] = str(Path(media_root).resolve())
    return call


def submitted_specs(state: BatchState, api_key: str | None, api_base: str | None) -> list[ModelSpec]:
    """The annotators of the submitted job, with the caller's key (never stored)."""
    if not state.call:
        raise RunDirError(f"{state.run_dir} holds no batch job ({STATE} is missing)",
                          fix="submit one with 'llm-annotator annotate ... --batch --out RUN_DIR'")
    from llm_annotator.core.task import Task

    specs = []
    for public in state.call["models"]:
        fields = {k: v for k, v in public.items() if k in ModelSpec.model_fields and k != "extra"}
        fields["extra"] = public.get("extra") or {}
        if isinstance(fields.get("task"), dict):
            fields["task"] = Task(**fields["task"])
        # the caller's base replaces an annotator's recorded one only where it is that one
        # (recorded without credentials) or there is none: each annotator keeps its server
        if api_base is not None and fields.get("api_base") in (None, public_url(api_base)):
            fields["api_base"] = api_base
        specs.append(ModelSpec(**fields, api_key=SecretStr(api_key) if api_key else None))
    return specs


def load_call(state: BatchState, data: Any, api_key: str | None, api_base: str | None) -> dict[str, Any]:
    """The arguments of :func:`annotate` that re-run the submitted job."""
    from llm_annotator.core.task import Task

    specs = submitted_specs(state, api_key, api_base)
    call = dict(state.call)
    if data is None and call.get("data") is None:
        raise ConfigError(f"the batch job in {state.run_dir} was submitted from in-memory data",
                          fix="pass the same data again: collect(run_dir, data=...)")
    call["models"] = specs
    call["task"] = Task(**call["task"])
    call["data"] = data if data is not None else call["data"]
    return call




__all__ = ["MAX_REQUESTS", "TERMINAL", "CollectBackend", "SubmitBackend", "gather", "job_call", "load_call",
           "reconcile", "refresh", "submitted_specs"]

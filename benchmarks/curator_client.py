"""Bespoke Curator's side of ``benchmarks/curator.py``: one measured run, or one job as a user runs it.

    <curator venv>/bin/python benchmarks/curator_client.py --url URL --messages FILE --schema FILE [--concurrency 128]
    <curator venv>/bin/python benchmarks/curator_client.py --mode job --url URL --rows CSV --template FILE \\
        --schema FILE [--cache-dir DIR] [--out CSV]
    <curator venv>/bin/python benchmarks/curator_client.py --mode fill --url URL --rows CSV --template FILE \\
        --schema FILE --cache-dir DIR

Runs in Curator's own virtual environment (it imports nothing of this project) and prints
one JSON object as its last line.

``ceiling`` (the default): reads the requests (a JSON list of chat message lists, the ones
the bare loop or ``annotate`` sends for the same rows), labels a warm-up slice first
(Curator and LiteLLM imported, tiktoken loaded), then all of them, with its cache off
(``CURATOR_DISABLE_CACHE``: a fresh run fingerprint, so every run makes its requests):
CPU seconds of this process (``time.process_time``, every thread) plus those of any child
process it waited for, per request; wall time; requests/s.

``job``: a whole job as a Curator user runs it, in this fresh process: read the rows (a
CSV of ``id,text`` and, for k samples, ``sample``: Curator sends one request per row),
render each row's messages in ``prompt`` (the messages ``annotate`` renders, from a
template whose text placeholder is replaced), run them with the cache on under
``--cache-dir`` (Curator's cache and the Hugging Face datasets cache it writes the input
to) or off without it, and write the labels to ``--out`` (``dataset.to_csv``) when given.
Prints the rows labelled, the requests Curator made and took from its cache (its own
``request_stats``), seconds spent importing Curator and in the job, and the peak RSS
(``VmHWM``) of the process.

``fill``: writes Curator's cache of a finished job without a request per row, so that jobs
of 50,000 to 1,000,000 rows can be replayed: one row is sent to the server for real, its
response line (``responses_0.jsonl``) is the template of every row's line, written into the
run directory Curator computes for the whole input (``_hash_fingerprint`` of the
dataset's fingerprint, as ``LLM.__call__`` does). A ``job`` run over the same input then
finds every answer on disk (Curator's resume of an interrupted run), sends no request,
and builds its dataset; the next ``job`` run loads that dataset (Curator's replay).

``import``: ``from bespokelabs import curator`` alone, in the environment the others set.

Curator uses its OpenAI-compatible online backend (aiohttp, no LiteLLM on the request
path) pointed at the loopback URL, the given concurrency bound, rate limits set far above
what the loopback server can reach, no retries. The request body is the bare loop's: the
same messages, JSON schema (as ``response_format``), temperature, ``max_tokens`` and
log-probabilities; each answer is parsed as JSON in ``parse``.
"""

from __future__ import annotations

import argparse
import copy
import csv
import json
import os
import resource
import shutil
import sys
import tempfile
import time
from typing import Any

STARTED = time.perf_counter()
PLACEHOLDER = "\x00TEXT\x00"  # where a row's text goes in the template's messages


def _cpu() -> float:
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def _peak_rss_mb() -> float:
    with open("/proc/self/status", encoding="ascii") as handle:
        for line in handle:
            if line.startswith("VmHWM"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _environment(cache_dir: str | None, work: str) -> None:
    os.environ.update({"CURATOR_CACHE_DIR": cache_dir or work, "TELEMETRY_ENABLED": "false",
                       "LITELLM_LOCAL_MODEL_COST_MAP": "True", "OPENAI_API_KEY": "x", "HF_DATASETS_OFFLINE": "1",
                       "HF_HUB_OFFLINE": "1", "DO_NOT_TRACK": "1",
                       # the input dataset Curator writes (Dataset.from_generator) stays beside its cache
                       "HF_DATASETS_CACHE": os.path.join(cache_dir or work, "hf-datasets"),
                       # no live display, as annotate runs with progress=False
                       "CURATOR_DISABLE_RICH_DISPLAY": "1"})
    if cache_dir is None:
        os.environ["CURATOR_DISABLE_CACHE"] = "1"
    else:
        os.environ.pop("CURATOR_DISABLE_CACHE", None)
    os.environ.pop("CURATOR_VIEWER", None)
    # tiktoken's cl100k_base (Curator counts tokens with it) from the copy LiteLLM ships,
    # rather than a download: the benchmark runs offline.
    import importlib.util

    litellm_spec = importlib.util.find_spec("litellm")
    if litellm_spec is not None and litellm_spec.origin is not None:
        tokenizers = os.path.join(os.path.dirname(litellm_spec.origin), "litellm_core_utils", "tokenizers")
        os.environ.setdefault("TIKTOKEN_CACHE_DIR", tokenizers)


def _backend(url: str, concurrency: int) -> dict[str, Any]:
    return {"base_url": url, "api_key": "x", "max_concurrent_requests": concurrency,
            "max_requests_per_minute": 10**9, "max_tokens_per_minute": 10**12,
            "max_retries": 0, "request_timeout": 120, "require_all_responses": True}


def _generation(schema: Any) -> dict[str, Any]:
    return {"temperature": 1.0, "max_tokens": 30, "response_format": schema, "logprobs": True, "top_logprobs": 5}


def ceiling(args: argparse.Namespace, schema: Any) -> dict[str, Any]:
    from bespokelabs import curator

    with open(args.messages, encoding="utf-8") as handle:
        messages: list[Any] = json.load(handle)

    class Label(curator.LLM):
        def prompt(self, input: dict[str, Any]) -> Any:
            return input["messages"]

        def parse(self, input: dict[str, Any], response: Any) -> dict[str, Any]:
            return {"label": json.loads(response)["sentiment"]}

    llm = Label(model_name="fake", backend="openai", generation_params=_generation(schema),
                backend_params=_backend(args.url, args.concurrency))

    def run(batch: list[Any], tag: str) -> None:
        rows = [{"id": f"{tag}-{i}", "messages": m} for i, m in enumerate(batch)]
        response = llm(rows, working_dir=os.path.join(args.work, tag))
        dataset = getattr(response, "dataset", response)
        assert len(dataset) == len(batch), (len(dataset), len(batch))

    run(messages[:args.warm], "warm")
    cpu, wall = _cpu(), time.perf_counter()
    run(messages, "measured")
    cpu, wall = _cpu() - cpu, time.perf_counter() - wall
    n = len(messages)
    return {"cpu_ms_per_request": cpu / n * 1000, "wall_s": wall, "requests_per_s": n / wall, "requests": n}


def _read_rows(path: str) -> list[dict[str, Any]]:
    with open(path, encoding="utf-8", newline="") as handle:
        rows: list[dict[str, Any]] = list(csv.DictReader(handle))
    if rows and "sample" in rows[0]:
        for row in rows:
            row["sample"] = int(row["sample"])
    return rows


def _labeller(template: list[dict[str, str]], schema: Any, url: str, concurrency: int) -> Any:
    from bespokelabs import curator

    class Label(curator.LLM):
        def prompt(self, input: dict[str, Any]) -> Any:
            return [{"role": m["role"], "content": m["content"].replace(PLACEHOLDER, input["text"])}
                    for m in template]

        def parse(self, input: dict[str, Any], response: Any) -> dict[str, Any]:
            return {"id": input["id"], "label": json.loads(response)["sentiment"]}

    return Label(model_name="fake", backend="openai", generation_params=_generation(schema),
                 backend_params=_backend(url, concurrency))


def job(args: argparse.Namespace, schema: Any, template: list[dict[str, str]]) -> dict[str, Any]:
    imported = time.perf_counter()
    from bespokelabs import curator  # noqa: F401

    imported = time.perf_counter() - imported
    started = time.perf_counter()
    rows = _read_rows(args.rows)
    llm = _labeller(template, schema, args.url, args.concurrency)
    response = llm(rows, working_dir=args.cache_dir or os.path.join(args.work, "run"))
    dataset = response.dataset
    assert len(dataset) == len(rows), (len(dataset), len(rows))
    if args.out:
        dataset.to_csv(args.out, index=False)
    processor = llm._request_processor
    finished = bool(processor._is_cached_dataset)  # Curator loaded the dataset a finished run left
    tracker = None if finished else getattr(processor, "tracker", None)
    made = 0 if tracker is None else tracker.num_tasks_started
    resumed = 0 if tracker is None else tracker.num_tasks_already_completed
    return {"rows": len(dataset), "requests_made": made, "answers_resumed": resumed,
            "loaded_finished_dataset": finished, "import_curator_s": imported,
            "job_s": time.perf_counter() - started, "process_s": time.perf_counter() - STARTED,
            "peak_rss_mb": _peak_rss_mb()}


def fill(args: argparse.Namespace, schema: Any, template: list[dict[str, str]]) -> dict[str, Any]:
    from bespokelabs.curator.llm.llm import _convert_to_dataset

    rows = _read_rows(args.rows)
    llm = _labeller(template, schema, args.url, args.concurrency)
    seed = llm(rows[:1], working_dir=os.path.join(args.work, "seed"))
    seed_dir = seed.cache_dir
    with open(os.path.join(seed_dir, "responses_0.jsonl"), encoding="utf-8") as handle:
        line = json.loads(handle.readline())
    dataset = _convert_to_dataset(rows)
    run_dir = os.path.join(args.cache_dir, llm._hash_fingerprint(dataset._fingerprint, False))
    os.makedirs(run_dir, exist_ok=True)
    content = line["response_message"]
    with open(os.path.join(run_dir, "responses_0.jsonl"), "w", encoding="utf-8") as out:
        for index, row in enumerate(rows):
            entry = copy.deepcopy(line)
            messages = llm.prompt(row)
            entry["generic_request"].update({"messages": messages, "original_row": row, "original_row_idx": index})
            entry["raw_request"]["messages"] = messages
            entry["parsed_response_message"] = [llm.parse(row, content)]
            out.write(json.dumps(entry) + "\n")
    return {"rows": len(rows), "run_dir": run_dir, "responses_bytes": os.path.getsize(os.path.join(run_dir, "responses_0.jsonl"))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=("ceiling", "job", "fill", "import"), default="ceiling")
    parser.add_argument("--url", default="http://127.0.0.1:9/v1")
    parser.add_argument("--messages", help="ceiling: JSON file, a list of chat message lists")
    parser.add_argument("--rows", help="job, fill: CSV of id,text[,sample]")
    parser.add_argument("--template", help="job, fill: JSON file, the messages with the text placeholder")
    parser.add_argument("--schema", help="JSON file: the response_format the bare loop sends")
    parser.add_argument("--concurrency", type=int, default=128)
    parser.add_argument("--warm", type=int, default=200, help="ceiling: requests sent first, not measured")
    parser.add_argument("--cache-dir", help="job, fill: Curator's cache (job: off without it)")
    parser.add_argument("--out", help="job: write the labels here (CSV)")
    args = parser.parse_args()

    if args.mode == "import":  # Curator's import alone, in the environment a job's process has
        _environment(args.cache_dir, tempfile.gettempdir())
        from bespokelabs import curator  # noqa: F401

        print(json.dumps({"import_curator_s": time.perf_counter() - STARTED}), flush=True)
        return
    args.work = tempfile.mkdtemp(prefix="curator-bench-")
    _environment(args.cache_dir if args.mode != "ceiling" else None, args.work)
    with open(args.schema, encoding="utf-8") as handle:
        schema = json.load(handle)
    template = None
    if args.template:
        with open(args.template, encoding="utf-8") as handle:
            template = json.load(handle)
    try:
        if args.mode == "ceiling":
            figures = ceiling(args, schema)
        elif args.mode == "job":
            figures = job(args, schema, template)
        else:
            figures = fill(args, schema, template)
    finally:
        shutil.rmtree(args.work, ignore_errors=True)
    print(json.dumps(figures), flush=True)
    sys.stdout.flush()


if __name__ == "__main__":
    main()

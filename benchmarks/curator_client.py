"""One measured Bespoke Curator run: the client side of ``benchmarks/curator.py``.

    <curator venv>/bin/python benchmarks/curator_client.py --url URL --messages FILE [--concurrency 128]

Runs in Curator's own virtual environment (it imports nothing of this project): reads the
requests (a JSON list of chat message lists, the ones ``annotate`` sends for the same rows),
labels a warm-up slice first (Curator and LiteLLM imported, tiktoken loaded), then all of
them, and prints one JSON object: CPU seconds of this process (``time.process_time``, every
thread) plus those of any child process it waited for, per request; wall time; requests/s.

Curator uses its OpenAI-compatible online backend (aiohttp, no LiteLLM on the request
path) pointed at the loopback URL, with its cache off (``CURATOR_DISABLE_CACHE``: a fresh
run fingerprint, so every run makes its requests), the given concurrency bound, rate
limits set far above what the loopback server can reach, no retries. The request body is
the bare loop's: the same messages, JSON schema (as ``response_format``), temperature,
``max_tokens`` and log-probabilities; each answer is parsed as JSON in ``parse``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
import tempfile
import time
from typing import Any


def _cpu() -> float:
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--messages", required=True, help="JSON file: a list of chat message lists")
    parser.add_argument("--schema", required=True, help="JSON file: the response_format the bare loop sends")
    parser.add_argument("--concurrency", type=int, default=128)
    parser.add_argument("--warm", type=int, default=200, help="requests sent first, not measured")
    args = parser.parse_args()

    work = tempfile.mkdtemp(prefix="curator-bench-")
    os.environ.update({"CURATOR_DISABLE_CACHE": "1", "CURATOR_CACHE_DIR": work, "TELEMETRY_ENABLED": "false",
                       "LITELLM_LOCAL_MODEL_COST_MAP": "True", "OPENAI_API_KEY": "x", "HF_DATASETS_OFFLINE": "1",
                       "HF_HUB_OFFLINE": "1", "DO_NOT_TRACK": "1",
                       # no live display, as annotate runs with progress=False
                       "CURATOR_DISABLE_RICH_DISPLAY": "1"})
    os.environ.pop("CURATOR_VIEWER", None)
    # tiktoken's cl100k_base (Curator counts tokens with it) from the copy LiteLLM ships,
    # rather than a download: the benchmark runs offline.
    import importlib.util

    litellm_spec = importlib.util.find_spec("litellm")
    if litellm_spec is not None and litellm_spec.origin is not None:
        tokenizers = os.path.join(os.path.dirname(litellm_spec.origin), "litellm_core_utils", "tokenizers")
        os.environ.setdefault("TIKTOKEN_CACHE_DIR", tokenizers)
    from bespokelabs import curator

    with open(args.messages, encoding="utf-8") as handle:
        messages: list[Any] = json.load(handle)
    with open(args.schema, encoding="utf-8") as handle:
        schema = json.load(handle)

    class Label(curator.LLM):
        def prompt(self, input: dict[str, Any]) -> Any:
            return input["messages"]

        def parse(self, input: dict[str, Any], response: Any) -> dict[str, Any]:
            return {"label": json.loads(response)["sentiment"]}

    llm = Label(model_name="fake", backend="openai",
                generation_params={"temperature": 1.0, "max_tokens": 30, "response_format": schema,
                                   "logprobs": True, "top_logprobs": 5},
                backend_params={"base_url": args.url, "api_key": "x", "max_concurrent_requests": args.concurrency,
                                "max_requests_per_minute": 10**9, "max_tokens_per_minute": 10**12,
                                "max_retries": 0, "request_timeout": 120, "require_all_responses": True})

    def run(batch: list[Any], tag: str) -> None:
        rows = [{"id": f"{tag}-{i}", "messages": m} for i, m in enumerate(batch)]
        response = llm(rows, working_dir=os.path.join(work, tag))
        dataset = getattr(response, "dataset", response)
        assert len(dataset) == len(batch), (len(dataset), len(batch))

    try:
        run(messages[:args.warm], "warm")
        cpu, wall = _cpu(), time.perf_counter()
        run(messages, "measured")
        cpu, wall = _cpu() - cpu, time.perf_counter() - wall
    finally:
        shutil.rmtree(work, ignore_errors=True)
    n = len(messages)
    print(json.dumps({"cpu_ms_per_request": cpu / n * 1000, "wall_s": wall, "requests_per_s": n / wall}), flush=True)
    sys.stdout.flush()


if __name__ == "__main__":
    main()

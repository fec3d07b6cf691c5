"""CPU seconds per request at the ceiling: a bare ``litellm.acompletion`` loop against ``annotate``.

    python benchmarks/cpu_per_request.py [--requests 1500] [--rounds 3] [--k 1,3]
    python benchmarks/cpu_per_request.py --profile annotate:3 [--out annotate-k3.pstats]
    python benchmarks/cpu_per_request.py --variants gc,gc+no-log,gc+inline [--k 1]

The server is an asyncio OpenAI-compatible loopback server with a fixed latency (1 ms),
run in its own process so its CPU is not counted; the client process's CPU time
(``time.process_time``: every thread of the process, user and system) over a run is
divided by the requests it sent. Both paths send the same requests (messages, JSON
schema, log-probabilities, ``n`` = k) with the same concurrency bound (128), and run
interleaved, round after round, so the machine's noise falls on both; medians are
reported. Each measured run is a fresh process, warmed up first (LiteLLM imported, its
clients made), so the bare loop runs under LiteLLM's own defaults whatever ``annotate``
sets. ``annotate`` is measured whole: rendering, the answer cache, votes.jsonl,
labels and run.json included.

``--variants`` measures the bare loop under settings instead (each ``+``-joined part of a
name one of :data:`VARIANTS`), beside the bare loop as it is, to tell what each setting of
LiteLLM (or of the loop) saves of a request's CPU (docs/cpu.md).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, ClassVar

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

LABELS = ["positive", "negative", "neutral"]
CONCURRENCY = 128
LATENCY_S = float(os.environ.get("BENCH_SERVER_LATENCY_S", "0.001"))  # the server process reads it too


# -- the server (its own process) -------------------------------------------------------
def _logprobs(content: str) -> list[dict[str, Any]]:
    tokens = re.findall(r"\w+|[^\w\s]|\s", content)
    out = []
    for token in tokens:
        if token in LABELS:
            top = [{"token": label, "logprob": math.log(p)} for label, p in zip(LABELS, (0.7, 0.2, 0.1), strict=True)]
            out.append({"token": token, "logprob": math.log(0.7), "bytes": None, "top_logprobs": top})
        else:
            out.append({"token": token, "logprob": 0.0, "bytes": None,
                        "top_logprobs": [{"token": token, "logprob": 0.0}]})
    return out


def _body(n: int, logprobs: bool, variant: int) -> bytes:
    choices = []
    for index in range(n):
        content = json.dumps({"sentiment": LABELS[(variant + index) % len(LABELS)]})
        choice: dict[str, Any] = {"index": index, "finish_reason": "stop",
                                  "message": {"role": "assistant", "content": content}}
        if logprobs:
            choice["logprobs"] = {"content": _logprobs(content)}
        choices.append(choice)
    body = {"id": f"chatcmpl-{variant}", "object": "chat.completion", "created": int(time.time()), "model": "fake",
            "choices": choices, "usage": {"prompt_tokens": 60, "completion_tokens": 5 * n, "total_tokens": 60 + 5 * n}}
    return json.dumps(body).encode()


class _Http(asyncio.Protocol):
    """HTTP/1.1 with keep-alive: enough of it for chat completions (Content-Length bodies)."""

    bodies: ClassVar[dict[tuple[int, bool, int], bytes]] = {}

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self.buffer = b""
        self.count = 0

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            head, sep, rest = self.buffer.partition(b"\r\n\r\n")
            if not sep:
                return
            found = re.search(rb"(?i)content-length:\s*(\d+)", head)
            length = int(found.group(1)) if found else 0
            if len(rest) < length:
                return
            body, self.buffer = rest[:length], rest[length:]
            found_n = re.search(rb'"n":\s*(\d+)', body)
            n = int(found_n.group(1)) if found_n else 1
            self.count += 1
            key = (n, b'"logprobs": true' in body or b'"logprobs":true' in body, self.count % 3)
            reply = self.bodies.get(key)
            if reply is None:
                reply = self.bodies[key] = _body(*key)
            if head.startswith(b"GET"):
                reply = b'{"object": "list", "data": [{"id": "fake", "object": "model"}]}'
            message = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
                       + str(len(reply)).encode() + b"\r\n\r\n" + reply)
            asyncio.get_running_loop().call_later(LATENCY_S, self._send, message)

    def _send(self, message: bytes) -> None:
        if not self.transport.is_closing():
            self.transport.write(message)


async def _serve() -> None:
    server = await asyncio.get_running_loop().create_server(_Http, "127.0.0.1", 0, backlog=4096)
    print(server.sockets[0].getsockname()[1], flush=True)
    async with server:
        await server.serve_forever()


class Server:
    """The loopback server in a child process."""

    def __enter__(self) -> Server:
        self.proc = subprocess.Popen([sys.executable, __file__, "--serve"], stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        self.url = f"http://127.0.0.1:{int(self.proc.stdout.readline())}/v1"
        return self

    def __exit__(self, *exc: object) -> None:
        self.proc.terminate()
        self.proc.wait()


# -- the two clients ----------------------------------------------------------------------
def rows(n: int, tag: str) -> list[dict[str, str]]:
    return [{"id": f"{tag}-{i}", "text": f"benchmark sentence {tag} {i} with a few more words in it"} for i in range(n)]


def messages_of(items: list[dict[str, str]]) -> list[list[dict[str, str]]]:
    """The messages annotate sends for ``items`` under the sentiment task."""
    from llm_annotator.core.prompts import compile_prompt
    from llm_annotator.core.task import load_task

    prompt = compile_prompt(load_task("sentiment"))
    return [prompt.render(row) for row in items]


async def _bare(url: str, requests: list[Any], k: int, variant: str = "") -> None:
    """The floor: litellm.acompletion over the same requests with the same bound, nothing else
    (``variant``: under the settings of :data:`VARIANTS` its ``+``-joined parts name)."""
    import litellm

    from llm_annotator.core.task import load_task

    gate = asyncio.Semaphore(CONCURRENCY)
    schema = load_task("sentiment").response_schema()
    extra: dict[str, Any] = {}
    for part in filter(None, variant.split("+")):
        extra.update(VARIANTS[part](litellm) or {})

    async def one(messages: Any) -> None:
        async with gate:
            await litellm.acompletion(model="openai/fake", api_base=url, api_key="x", n=k, max_retries=0,
                                      messages=messages, temperature=1.0, max_tokens=30, response_format=schema,
                                      logprobs=True, top_logprobs=5, timeout=120, **extra)

    await asyncio.gather(*(one(m) for m in requests))


def bare(url: str, items: list[dict[str, str]], k: int, tmp: Path, variant: str = "") -> None:
    asyncio.run(_bare(url, messages_of(items), k, variant))


def _gc(litellm: Any) -> None:
    """The collector as llm_annotator tunes it for a run (providers/client.py quiet_collector)."""
    import gc

    from llm_annotator.providers.client import YOUNG_THRESHOLD

    gc.freeze()
    gc.set_threshold(YOUNG_THRESHOLD, *gc.get_threshold()[1:])


def _message_logging_off(litellm: Any) -> None:
    litellm.turn_off_message_logging = True


def _internal(litellm: Any) -> None:
    """LiteLLM's private marker of its own nested calls: no success logging, no failure
    handler (not a setting: measured to size that work, not used by llm_annotator)."""
    from litellm._internal_context import is_internal_call

    is_internal_call.set(True)


def _inline(litellm: Any) -> None:
    """Request building on the loop's thread, as llm_annotator's calls to OpenAI-compatible
    servers do (providers/client.py setup_inline)."""
    from llm_annotator.providers import client

    asyncio.get_running_loop().set_default_executor(client._LoopExecutor(thread_name_prefix="asyncio"))
    client._INLINE.set(True)


#: Settings the bare loop can be measured under (--variants), each a function of the
#: litellm module that sets it and returns the per-call keyword arguments it adds.
VARIANTS: dict[str, Any] = {
    "gc": _gc,
    "no-log": lambda litellm: {"no-log": True},
    "message-logging-off": _message_logging_off,
    "custom-price": lambda litellm: {"input_cost_per_token": 1e-7, "output_cost_per_token": 2e-7},
    "internal": _internal,
    "inline": _inline,
}


def ours(url: str, items: list[dict[str, str]], k: int, tmp: Path) -> None:
    from llm_annotator import annotate

    result = annotate(items, "sentiment", [{"model": "openai/fake", "concurrency": CONCURRENCY}], samples=k,
                      api_base=url, api_key="x", cache=tmp / "cache", out=tmp / "run", progress=False,
                      id_column="id")
    assert result.manifest["counts"]["valid"] == len(items) * k, result.manifest["counts"]


PATHS = {"bare": bare, "annotate": ours}


def measure(name: str, url: str, n: int, k: int, tag: str) -> dict[str, float]:
    items = rows(n, tag)
    with tempfile.TemporaryDirectory() as tmp:
        cpu, wall = time.process_time(), time.perf_counter()
        if name.startswith("bare:"):
            bare(url, items, k, Path(tmp), name.removeprefix("bare:"))
        else:
            PATHS[name](url, items, k, Path(tmp))
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    return {"cpu_ms_per_request": cpu / n * 1000, "wall_s": wall, "requests_per_s": n / wall}


def child(name: str, url: str, n: int, k: int, tag: str, profile_out: str | None) -> None:
    """One measured run in a fresh process: LiteLLM imported, clients made and caches warm
    first (200 requests), so each path keeps LiteLLM's settings as it makes them."""
    measure(name, url, 200, k, f"warm-{tag}")
    if profile_out is None:
        print(json.dumps(measure(name, url, n, k, tag)))
        return
    profile(name, url, n, k, tag, profile_out)


def profile(name: str, url: str, n: int, k: int, tag: str, out: str) -> None:
    """CPU time per function over one run: yappi with its CPU clock over every thread
    (LiteLLM runs part of each call in a thread pool) where it is installed, else cProfile
    (the event loop's thread only). Prints the top functions by inclusive CPU per request."""
    items = rows(n, tag)
    try:
        import yappi
    except ImportError:
        yappi = None
    with tempfile.TemporaryDirectory() as tmp:
        if yappi is not None:
            yappi.set_clock_type("cpu")
            yappi.start(builtins=False, profile_threads=True)
            PATHS[name](url, items, k, Path(tmp))
            yappi.stop()
            stats = yappi.get_func_stats()
            stats.save(out, type="pstat")
            rows_ = sorted(stats, key=lambda s: -s.ttot)
            total = max(s.ttot for s in rows_)
            print(f"{name} k={k}: yappi CPU clock, all threads; ms per request, inclusive then own")
            for s in rows_[:70]:
                where = f"{Path(s.module).parent.name}/{Path(s.module).name}:{s.lineno}"
                print(f"{s.ttot / n * 1000:8.3f} {s.tsub / n * 1000:8.3f}  {s.name}  ({where})")
            print(f"top-level total {total / n * 1000:.3f} ms per request (profiler overhead included)")
            return
        import cProfile
        import pstats

        profiler = cProfile.Profile()
        profiler.enable()
        PATHS[name](url, items, k, Path(tmp))
        profiler.disable()
    profiler.dump_stats(out)
    print(f"{name} k={k}: cProfile, the event loop's thread only; cumulative seconds for all {n} requests")
    pstats.Stats(out).sort_stats("cumulative").print_stats(60)


def run_child(name: str, url: str, n: int, k: int, tag: str, profile_out: str | None = None) -> str:
    command = [sys.executable, __file__, "--child", name, "--url", url, "--requests", str(n), "--k", str(k),
               "--tag", tag]
    if profile_out:
        command += ["--out", profile_out]
    return subprocess.run(command, check=True, capture_output=True, text=True).stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--tag", default="r", help=argparse.SUPPRESS)
    parser.add_argument("--requests", type=int, default=1500, help="requests per measured run")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--k", default="1,3", help="samples per item, sent as n (comma-separated)")
    parser.add_argument("--profile", metavar="PATH:K", help="cProfile one run of bare:K or annotate:K instead")
    parser.add_argument("--out", help="with --profile: the pstats file (default: PATH-kK.pstats)")
    parser.add_argument("--variants", metavar="NAMES",
                        help=f"measure the bare loop under these settings instead (comma-separated, each "
                             f"+-joined parts of: {', '.join(VARIANTS)})")
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args()
    if args.serve:
        asyncio.run(_serve())
        return
    if args.child:
        child(args.child, args.url, args.requests, int(args.k), args.tag, args.out)
        return
    with Server() as server:
        if args.profile:
            name, k = args.profile.split(":")
            out = args.out or f"{name}-k{k}.pstats"
            print(run_child(name, server.url, args.requests, int(k), "profile", out))
            return
        ks = [int(k) for k in args.k.split(",")]
        names = list(PATHS)
        if args.variants:
            names = ["bare"] + [f"bare:{v}" for v in args.variants.split(",")]
            for part in "+".join(args.variants.split(",")).split("+"):
                if part not in VARIANTS:
                    parser.error(f"unknown variant {part!r}: one of {', '.join(VARIANTS)}")
        runs: dict[str, list[dict[str, float]]] = {}
        for round_ in range(args.rounds):
            for k in ks:
                for name in names:
                    figures = json.loads(run_child(name, server.url, args.requests, k, f"r{round_}"))
                    runs.setdefault(f"{name} k={k}", []).append(figures)
                    print(f"round {round_} {name} k={k}: {figures['cpu_ms_per_request']:.2f} ms CPU/request, "
                          f"{figures['requests_per_s']:.0f} req/s", flush=True)
    summary: dict[str, Any] = {"requests": args.requests, "rounds": args.rounds, "concurrency": CONCURRENCY,
                               "latency_s": LATENCY_S, "runs": runs, "median_cpu_ms_per_request": {}}
    for key, figures in runs.items():
        summary["median_cpu_ms_per_request"][key] = statistics.median(f["cpu_ms_per_request"] for f in figures)
    medians = summary["median_cpu_ms_per_request"]
    summary["ratio"] = {(f"k={k}" if name == "annotate" else f"{name} k={k}"): medians[f"{name} k={k}"]
                        / medians[f"bare k={k}"] for k in ks for name in names if name != "bare"}
    print("\nmedian CPU ms per request:")
    for key, value in medians.items():
        print(f"  {key:<24} {value:6.2f}")
    for key, value in summary["ratio"].items():
        print(f"  annotate / bare at {key}: {value:.2f} (target <= 0.8)" if key.startswith("k=")
              else f"  {key} / bare: {value:.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()

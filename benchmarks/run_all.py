"""Every toolkit benchmark in one command; writes docs/benchmarks.md and results JSON.

    python benchmarks/run_all.py [--only overhead,concurrency,...] [--quick] [--no-curator]
    python benchmarks/run_all.py --render     # docs/benchmarks.md from the saved JSON only

Ratios are measured within one run against a loopback OpenAI-compatible server
(llm_annotator.testing.FakeOpenAI) with a fixed latency, so the machine's noise cancels
as far as it can. Benchmarks: overhead, concurrency, replay, startup, sampling, local,
memory, router, replay_process (a finished job run again as a new command), workers
(benchmarks/workers.py: one job in 1 and 2 processes), rerun (benchmarks/rerun.py),
stream_memory (benchmarks/stream_memory.py: a streamed job's peak RSS against its item
count), cpu_per_request (benchmarks/cpu_per_request.py), curator. ``curator`` runs benchmarks/curator.py: Bespoke Curator beside the bare
LiteLLM loop and ``annotate`` on each item it applies to, Curator installed by that script
into its own virtual environment on first use (``--no-curator`` leaves it out of a full
run). The SER benchmarks are benchmarks/ser_probe.py and benchmarks/ser_pipeline.py.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from llm_annotator import annotate  # noqa: E402
from llm_annotator.testing import FakeOpenAI, sampling_responder  # noqa: E402

LABELS = ["positive", "negative", "neutral"]


def rows(n: int) -> list[dict[str, str]]:
    return [{"id": f"r{i}", "text": f"benchmark sentence {i} with a few more words in it"} for i in range(n)]


def same_requests(items: int) -> list[list[dict[str, str]]]:
    """The messages annotate sends for ``rows(items)`` under the sentiment task."""
    from llm_annotator.core.prompts import compile_prompt
    from llm_annotator.core.task import load_task

    prompt = compile_prompt(load_task("sentiment"))
    return [prompt.render(row) for row in rows(items)]


async def bare_loop(url: str, requests: list[Any], concurrency: int, n: int) -> float:
    """The floor: litellm.acompletion over the same requests (same messages, schema,
    log-probabilities, limits) with the same concurrency bound, nothing else."""
    from llm_annotator.core.task import load_task
    from llm_annotator.providers.client import litellm

    lm = litellm()
    gate = asyncio.Semaphore(concurrency)
    schema = load_task("sentiment").response_schema()

    async def one(messages: Any) -> None:
        if isinstance(messages, str):
            messages = [{"role": "user", "content": messages}]
        async with gate:
            await lm.acompletion(model="openai/fake", api_base=url, api_key="x", n=n, max_retries=0,
                                 messages=messages, temperature=1.0, max_tokens=30, response_format=schema,
                                 logprobs=True, top_logprobs=5, timeout=120)

    started = time.perf_counter()
    await asyncio.gather(*(one(p) for p in requests))
    return time.perf_counter() - started


def toolkit(url: str, items: int, samples: int, concurrency: int, cache_dir: Path, out: Path | None = None) -> tuple[float, Any]:
    started = time.perf_counter()
    result = annotate(rows(items), "sentiment", [{"model": "openai/fake", "concurrency": concurrency}],
                      samples=samples, api_base=url, api_key="x", cache=cache_dir, out=out, progress=False,
                      id_column="id")
    return time.perf_counter() - started, result


def bench_overhead(quick: bool, tmp: Path) -> dict[str, Any]:
    items, samples, concurrency, latency = (300 if quick else 2000), 3, 64, 0.05
    with FakeOpenAI(sampling_responder(LABELS, "sentiment"), latency=latency) as server:
        prompts = same_requests(items)
        asyncio.run(bare_loop(server.url, prompts[:50], concurrency, samples))  # warm up both paths
        toolkit(server.url, 50, samples, concurrency, tmp / "overhead-warm")
        bares, ours_runs = [], []
        for round_ in range(3):  # alternate, and take the median of each: the machine is shared
            bares.append(asyncio.run(bare_loop(server.url, prompts, concurrency, samples)))
            seconds, result = toolkit(server.url, items, samples, concurrency, tmp / f"overhead-cache-{round_}",
                                      tmp / f"overhead-run-{round_}")
            ours_runs.append(seconds)
        bare, ours = statistics.median(bares), statistics.median(ours_runs)
    return {"items": items, "samples": samples, "concurrency": concurrency, "latency_s": latency,
            "requests": items, "bare_litellm_s": bare, "annotate_s": ours, "ratio": ours / bare,
            "rounds": {"bare": bares, "annotate": ours_runs},
            "votes": int(result.votes["label"].notna().sum()), "target": 1.10, "goal": 1.03}


def bench_concurrency(quick: bool, tmp: Path) -> dict[str, Any]:
    """Requests/s at 16, 64 and 256 in flight against the asyncio loopback server of
    benchmarks/cpu_per_request.py (its own process, 200 ms latency): 40 requests per slot
    (10 quick), so each run lasts about 8 s and the toolkit's fixed costs (reading,
    rendering, labels, run.json) stay a small part of it."""
    from benchmarks import cpu_per_request

    latency, out = 0.2, []
    os.environ["BENCH_SERVER_LATENCY_S"] = str(latency)
    try:
        with cpu_per_request.Server() as server:
            for concurrency in (16, 64, 256):
                requests = concurrency * (10 if quick else 40)
                prompts = [[{"role": "user", "content": f"c{concurrency} {m[-1]['content']}"}]
                           for m in same_requests(requests)]
                bare = asyncio.run(bare_loop(server.url, prompts, concurrency, 1))
                ours, _ = toolkit(server.url, requests, 1, concurrency, tmp / f"conc-{concurrency}")
                bound = concurrency / latency
                out.append({"concurrency": concurrency, "requests": requests, "bound_rps": bound,
                            "bare_rps": requests / bare, "annotate_rps": requests / ours,
                            "share_of_bound": requests / ours / bound, "share_of_bare": bare / ours})
    finally:
        os.environ.pop("BENCH_SERVER_LATENCY_S", None)
    return {"latency_s": latency, "server": "asyncio (benchmarks/cpu_per_request.py)", "rows": out,
            "target_share_of_bare_at_256": 0.9, "load_average_1min": os.getloadavg()[0]}


def prefill(items: int, samples: int, cache_dir: Path) -> None:
    """Write the answers of a finished job straight into the cache (no HTTP needed)."""
    from llm_annotator.core.data import load_dataset
    from llm_annotator.core.models import ModelSpec
    from llm_annotator.core.task import load_task
    from llm_annotator.engine.jobs import JobBuilder
    from llm_annotator.store.cache import AnswerCache

    task = load_task("sentiment")
    spec = ModelSpec(model="openai/fake", api_base="http://127.0.0.1:9/v1")
    cache = AnswerCache(cache_dir)
    builder = JobBuilder(task, [spec], samples)
    hashes = builder.prompt_hashes(load_dataset(rows(items), id_column="id"))
    annotator = builder.annotators[0]
    entries = [(annotator.fingerprint(h[annotator.prompt], s), {"content": json.dumps({"sentiment": LABELS[s % 3]}),
                                         "distribution": None, "finish_reason": "stop", "tokens_in": 12,
                                         "tokens_out": 5, "cost_usd": 0.0, "latency_s": 0.05})
               for h in hashes for s in range(samples)]
    for start in range(0, len(entries), 50_000):
        cache.set_many(entries[start:start + 50_000])
    cache.close()


def bench_replay(quick: bool, tmp: Path) -> dict[str, Any]:
    items, samples = (2000 if quick else 10_000), 5
    cache_dir = tmp / "replay-cache"
    prefill(items, samples, cache_dir)
    with FakeOpenAI() as server:
        started = time.perf_counter()
        result = annotate(rows(items), "sentiment", ["openai/fake"], samples=samples, api_base="http://127.0.0.1:9/v1",
                          cache=cache_dir, out=tmp / "replay-run", progress=False, id_column="id")
        seconds = time.perf_counter() - started
        requests = server.calls
    votes = len(result.votes)
    return {"items": items, "samples": samples, "votes": votes, "seconds": seconds, "votes_per_s": votes / seconds,
            "requests": requests + result.manifest["counts"]["requests"], "target_votes_per_s": 20_000}


def _median_time(command: list[str], runs: int = 5) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def bench_startup(quick: bool, tmp: Path) -> dict[str, Any]:
    python = sys.executable
    empty = _median_time([python, "-c", "pass"])
    imp = _median_time([python, "-c", "import llm_annotator"])
    helped = _median_time([python, "-m", "llm_annotator", "--help"])
    lite = _median_time([python, "-c", "import os; os.environ['LITELLM_LOCAL_MODEL_COST_MAP']='True'; import litellm"], 3)
    return {"python_empty_s": empty, "import_llm_annotator_s": imp, "cli_help_s": helped, "import_litellm_s": lite,
            "targets": {"import": 0.3, "help": 0.6}}


def bench_sampling(quick: bool, tmp: Path) -> dict[str, Any]:
    items, k = (50 if quick else 200), 5
    out = {}
    for honour in (True, False):
        with FakeOpenAI(sampling_responder(LABELS, "sentiment"), honour_n=honour) as server:
            _, result = toolkit(server.url, items, k, 32, tmp / f"sampling-{honour}")
            out["n in one request" if honour else "k requests"] = {
                "requests": server.calls, "tokens_in": int(result.votes["tokens_in"].sum()),
                "tokens_out": int(result.votes["tokens_out"].sum())}
    one, many = out["n in one request"], out["k requests"]
    return {"items": items, "k": k, **out, "prompt_token_ratio": many["tokens_in"] / one["tokens_in"],
            "theoretical_ratio": k}


def bench_local(quick: bool, tmp: Path) -> dict[str, Any]:
    import numpy as np
    import pandas as pd

    meld = ROOT.parent / "shared" / "data" / "meld" / "dev_sent_emo.csv"
    frame = pd.read_csv(meld).head(6 if quick else 12)
    model = "local/smollm2-135m"
    annotate(frame.head(2), "emotion_melt", [model], cache=False, progress=False)  # load the model once
    started = time.perf_counter()
    scored = annotate(frame, "emotion_melt", [model], samples=5, cache=False, progress=False, id_column="Sr No.")
    score_s = time.perf_counter() - started
    spec = {"model": model, "mode": "generate", "max_tokens": 80}
    started = time.perf_counter()
    generated = annotate(frame, "emotion_melt", [spec], samples=5, cache=False, progress=False, id_column="Sr No.")
    gen_s = time.perf_counter() - started
    a = scored.soft_labels().to_numpy()
    g = generated.soft_labels().to_numpy()
    valid = ~np.isnan(g).any(axis=1)
    tv = float(np.abs(a[valid] - g[valid]).sum(axis=1).mean() / 2) if valid.any() else float("nan")
    return {"items": len(frame), "k": 5, "score_s": score_s, "generate_s": gen_s,
            "score_soft_labels_per_s": len(frame) / score_s, "generate_soft_labels_per_s": len(frame) / gen_s,
            "speedup": gen_s / score_s, "generate_valid_vote_share": float(generated.votes["label"].notna().mean()),
            "items_with_a_valid_generated_vote": int(valid.sum()), "mean_total_variation": tv}


def peak_rss(code: str) -> tuple[float, float]:
    """Run ``code`` (whose last line prints a number) in a fresh interpreter: (that number, peak RSS in MB)."""
    # VmHWM, not ru_maxrss: ru_maxrss keeps the parent's high-water mark across fork+exec
    code += "; print([l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM')][0])"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          env={**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"})
    value, peak = proc.stdout.strip().splitlines()[-2:]
    return float(value), int(peak) / 1024


def bench_memory(quick: bool, tmp: Path) -> dict[str, Any]:
    sizes = (2000, 10_000) if quick else (10_000, 50_000, 100_000)
    out = []
    for n in sizes:
        cache_dir = tmp / f"memory-{n}"
        prefill(n, 1, cache_dir)
        code = (f"import sys, resource; sys.path.insert(0, {str(ROOT)!r}); from benchmarks.run_all import rows; "
                f"from llm_annotator import annotate; annotate(rows({n}), 'sentiment', ['openai/fake'], "
                f"api_base='http://127.0.0.1:9/v1', cache={str(cache_dir)!r}, out={str(tmp / f'memory-run-{n}')!r}, "
                f"progress=False, id_column='id'); print(0)")
        _, peak = peak_rss(code)
        out.append({"items": n, "peak_rss_mb": peak})
    return {"rows": out, "target_mb": 400}


def _single_and_router(requests: int, latency: float, concurrency: int, tmp: Path, name: str,
                       slots: int | None = None) -> dict[str, Any]:
    """Requests/s of one loopback server, then of a LiteLLM Router over two such servers."""
    out: dict[str, Any] = {}
    with FakeOpenAI(sampling_responder(LABELS, "sentiment"), latency=latency, slots=slots) as a, \
            FakeOpenAI(sampling_responder(LABELS, "sentiment"), latency=latency, slots=slots) as b:
        toolkit(a.url, 20, 1, concurrency, tmp / f"{name}-warm")  # LiteLLM imported and its client made first
        seconds, _ = toolkit(a.url, requests, 1, concurrency, tmp / f"{name}-single")
        out["single_server_rps"] = requests / seconds
        router = {"model_list": [{"model_name": "annotator", "litellm_params": {"model": "openai/fake", "api_base": u,
                                                                                 "api_key": "x"}} for u in (a.url, b.url)]}
        started = time.perf_counter()
        result = annotate(rows(requests), "sentiment", [{"model": "annotator", "router": router, "concurrency": concurrency}],
                          cache=tmp / f"{name}-router-cache", progress=False, id_column="id")
        out["router_rps"] = requests / (time.perf_counter() - started)
        out["share_per_deployment"] = result.votes["deployment"].value_counts(normalize=True).round(3).to_dict()
    return out


def bench_router(quick: bool, tmp: Path) -> dict[str, Any]:
    """Throughput of one server against a LiteLLM Router over two, same job and bound."""
    requests, latency, concurrency = (200 if quick else 600), 0.2, 64
    out: dict[str, Any] = {"requests": requests, "latency_s": latency, "concurrency": concurrency}
    out.update(_single_and_router(requests, latency, concurrency, tmp, "router"))
    # Servers with a fixed number of slots (a vLLM or llama.cpp server's parallel sequences):
    # one server's slots bound a job; a Router adds the second server's.
    slots, slot_requests = 8, (80 if quick else 320)
    out["slots"] = {"slots_per_server": slots, "requests": slot_requests, "bound_one_server_rps": slots / latency,
                    **_single_and_router(slot_requests, latency, concurrency, tmp, "slots", slots=slots)}
    return out


def bench_replay_process(quick: bool, tmp: Path) -> dict[str, Any]:
    """A finished job run again as a new command (the issue's measure): a fresh
    ``llm-annotator annotate`` process reads the CSV, renders every row, resumes every vote
    from votes.jsonl, and writes labels.csv, labels.jsonl and run.json. Median of 5 runs
    (3 quick), the first run (which fills votes.jsonl from the cache) not counted."""
    items, samples = (2000 if quick else 10_000), 5
    cache_dir = tmp / "replay-process-cache"
    prefill(items, samples, cache_dir)
    data = tmp / "replay-process.csv"
    import pandas as pd

    pd.DataFrame(rows(items)).to_csv(data, index=False)
    command = [sys.executable, "-m", "llm_annotator", "annotate", str(data), "-t", "sentiment", "-m", "openai/fake",
               "-k", str(samples), "--api-base", "http://127.0.0.1:9/v1", "--cache-dir", str(cache_dir),
               "--out", str(tmp / "replay-process-run"), "--id-column", "id", "-q"]
    subprocess.run(command, check=True, capture_output=True)  # the job, from the cache
    seconds = _median_time(command, 3 if quick else 5)
    manifest = json.loads((tmp / "replay-process-run" / "run.json").read_text())
    assert manifest["counts"]["resumed"] == items * samples and manifest["counts"]["requests"] == 0
    return {"items": items, "samples": samples, "votes": items * samples, "seconds": seconds,
            "votes_per_s": items * samples / seconds, "target_votes_per_s": 20_000,
            "load_average_1min": os.getloadavg()[0]}


WORKERS_JSON = ROOT / "benchmarks" / "results" / "workers.json"
RERUN_JSON = ROOT / "benchmarks" / "results" / "rerun.json"
STREAM_MEMORY_JSON = ROOT / "benchmarks" / "results" / "stream_memory.json"
CPU_JSON = ROOT / "benchmarks" / "results" / "cpu_per_request.json"


def _script(name: str, saved: Path, out_flag: str, quick_args: list[str], quick: bool, tmp: Path) -> dict[str, Any]:
    """benchmarks/NAME.py in its own process; a full run writes ``saved``, a quick one
    (``quick_args``) a scratch file."""
    out = tmp / saved.name if quick else saved
    command = [sys.executable, str(ROOT / "benchmarks" / f"{name}.py"), out_flag, str(out)]
    subprocess.run(command + (quick_args if quick else []), check=True, capture_output=True)
    found: dict[str, Any] = json.loads(out.read_text())
    return found


def bench_workers(quick: bool, tmp: Path) -> dict[str, Any]:
    """benchmarks/workers.py: one job in 1 and 2 processes."""
    return _script("workers", WORKERS_JSON, "--out", ["--items", "1500", "--rounds", "1"], quick, tmp)


def bench_cpu_per_request(quick: bool, tmp: Path) -> dict[str, Any]:
    """benchmarks/cpu_per_request.py: client CPU per request of annotate against the bare loop."""
    return _script("cpu_per_request", CPU_JSON, "--json", ["--requests", "300", "--rounds", "1", "--k", "1"],
                   quick, tmp)


def bench_stream_memory(quick: bool, tmp: Path) -> dict[str, Any]:
    """benchmarks/stream_memory.py: peak RSS of a streamed job replayed from the cache, against
    its item count."""
    return _script("stream_memory", STREAM_MEMORY_JSON, "--json", ["--items", "20000,100000"], quick, tmp)


def bench_rerun(quick: bool, tmp: Path) -> dict[str, Any]:
    """benchmarks/rerun.py: a re-run asking one changed row against LiteLLM's bare import
    time, each a fresh interpreter."""
    return _script("rerun", RERUN_JSON, "--json", ["--items", "200", "--runs", "2"], quick, tmp)


CURATOR_JSON = ROOT / "benchmarks" / "results" / "curator.json"


def bench_curator(quick: bool, tmp: Path) -> dict[str, Any]:
    """benchmarks/curator.py in its own process (it makes Curator's virtual environment when
    missing); a full run writes benchmarks/results/curator.json, a quick one a scratch file."""
    out = tmp / "curator.json" if quick else CURATOR_JSON
    command = [sys.executable, str(ROOT / "benchmarks" / "curator.py")]  # its defaults write CURATOR_JSON
    if quick:
        command += ["--quick", "--json", str(out)]
    subprocess.run(command, check=True)
    return json.loads(out.read_text())


BENCHES = {"overhead": bench_overhead, "concurrency": bench_concurrency, "replay": bench_replay,
           "startup": bench_startup, "sampling": bench_sampling, "local": bench_local, "memory": bench_memory,
           "router": bench_router, "replay_process": bench_replay_process, "workers": bench_workers,
           "rerun": bench_rerun, "stream_memory": bench_stream_memory, "cpu_per_request": bench_cpu_per_request,
           "curator": bench_curator}

#: Benchmarks that are scripts of their own: their latest full figures, run here or on their own.
SAVED = {"curator": CURATOR_JSON, "workers": WORKERS_JSON, "rerun": RERUN_JSON, "stream_memory": STREAM_MEMORY_JSON,
         "cpu_per_request": CPU_JSON}


def findings(results: dict[str, Any]) -> list[str]:
    """What the numbers say, every figure taken from ``results`` (nothing typed in by hand)."""
    lines = ["## What the numbers say", ""]
    if "concurrency" in results:
        rows = results["concurrency"]["rows"]
        bare = [r["bare_rps"] for r in rows]
        close = [r["share_of_bare"] for r in rows if r["concurrency"] <= 64]
        bounds = ", ".join(f"{r['bound_rps']:.0f}" for r in rows)
        lines.append(f"- **Where the ceiling is.** LiteLLM's client side on these cores: the bare loop tops out "
                     f"at {max(bare):.0f} requests/s (bounds {bounds} "
                     f"req/s). Up to 64 in flight `annotate` reaches {min(close):.0%}–{max(close):.0%} of that "
                     "loop's rate" + "".join(f"; at 256, {r['share_of_bare']:.0%} (target 90%)" for r in rows
                                             if r["concurrency"] == 256) + ".")
    if "overhead" in results:
        o = results["overhead"]
        verdict = "within" if o["ratio"] <= o["target"] else "above"
        lines.append(f"- **Overhead** {o['ratio']:.3f} ({verdict} the target {o['target']}, goal {o['goal']}). "
                     "The toolkit's own work per request: storing each answer in SQLite before its vote is "
                     "written (kept on purpose: a kill must not lose a paid answer), parsing, votes and "
                     "accounting, plus per-run fixed costs (rendering every row, labels at the end). Against a "
                     "hosted API, whose latency is 300 ms–3 s rather than "
                     f"{o['latency_s'] * 1000:.0f} ms on loopback, it is a fraction of a percent.")
    if "cpu_per_request" in results:
        ratio = results["cpu_per_request"]["ratio"]
        lines.append("- **Client CPU per request** (target 0.8× the bare loop): `annotate` at "
                     + ", ".join(f"{value:.2f}× ({key})" for key, value in sorted(ratio.items()))
                     + " (section 14). Not reached: LiteLLM prices every answer, builds its logging payload and "
                     "looks up model information on each call, and no setting of LiteLLM switches that off "
                     "(`docs/cpu.md` has the profile and each setting measured).")
    if "replay" in results:
        r = results["replay"]
        verdict = "above" if r["votes_per_s"] >= r["target_votes_per_s"] else "below"
        lines.append(f"- **Cache replay**: {r['votes_per_s']:,.0f} votes/s, {verdict} the "
                     f"{r['target_votes_per_s']:,} target, with {r['requests']} requests: keys are read in bulk, "
                     "parsing is memoised per distinct answer text, LiteLLM is not imported.")
    if "startup" in results:
        st_ = results["startup"]
        lines.append(f"- **Start-up**: importing the package costs {max(0.0, st_['import_llm_annotator_s'] - st_['python_empty_s']):.3f} s "
                     f"over an empty interpreter; LiteLLM ({st_['import_litellm_s']:.1f} s) loads only when a "
                     "request must be made.")
    if "sampling" in results:
        lines.append(f"- **Sampling cost**: with `n`, k samples pay the prompt once: "
                     f"{results['sampling']['prompt_token_ratio']:.2f}× fewer prompt tokens for k = 5.")
    if "local" in results:
        lo = results["local"]
        lines.append(f"- **Local scoring against generation**: one scoring pass gives the whole distribution, "
                     f"{lo['speedup']:.1f}× faster than generating k = {lo['k']} answers; "
                     f"{lo['generate_valid_vote_share']:.0%} of SmolLM2's generated `emotion_melt` answers parsed, "
                     "so label scoring is the usable mode for models this small.")
    if "memory" in results:
        m = results["memory"]
        biggest = m["rows"][-1]
        line = (f"- **Memory (target < {m['target_mb']} MB, flat)**: `annotate`, which returns the whole result "
                f"in memory, peaks at {biggest['peak_rss_mb']:.0f} MB for {biggest['items']:,} items.")
        streamed = results.get("stream_memory", {}).get("streamed")
        if streamed:
            small, big = streamed[0], streamed[-1]
            line += (f" `annotate_stream` (`--stream`, automatic above 64 MB of input) keeps votes and its "
                     f"per-item index on disk: {big['items']:,} items peak at {big['peak_rss_mb']:.0f} MB, "
                     f"{small['items']:,} at {small['peak_rss_mb']:.0f} MB (section 7).")
        lines.append(line)
    if "router" in results and "slots" in results["router"]:
        sl = results["router"]["slots"]
        lines.append(f"- **Router**: with unbounded loopback servers the client is the ceiling; with servers of "
                     f"{sl['slots_per_server']} slots (as vLLM and llama.cpp servers have, and as per-key rate "
                     f"limits act) the Router over two gives {sl['router_rps'] / sl['single_server_rps']:.2f}× "
                     "one server's rate.")
    if "curator" in results:
        cu = results["curator"]
        m, ratio = cu["median"], cu["ratio"]
        lines.append(f"- **Against Bespoke Curator** (k = 1, concurrency {cu['concurrency']}, "
                     f"{cu['latency_s'] * 1000:.0f} ms latency): Curator's client sends "
                     f"{m['curator']['requests_per_s']:.0f} requests/s at {m['curator']['cpu_ms_per_request']:.2f} ms "
                     f"CPU each; `annotate` {m['annotate']['requests_per_s']:.0f} at "
                     f"{m['annotate']['cpu_ms_per_request']:.2f} ms ({ratio['annotate / curator']['cpu_ms_per_request']:.1f}× "
                     f"Curator's CPU per request), the bare LiteLLM loop {m['bare']['requests_per_s']:.0f} at "
                     f"{m['bare']['cpu_ms_per_request']:.2f} ms. Curator's backend is aiohttp with no LiteLLM on the "
                     "request path; both of ours go through `litellm.acompletion`.")
    return [*lines, ""]


def command(name: str) -> str:
    return f"`python benchmarks/run_all.py --only {name}`"


def markdown(results: dict[str, Any], meta: dict[str, Any]) -> str:
    lines = ["# Benchmarks", "",
             f"Measured {meta['date']} on {meta['machine']} ({meta['cpus']} CPUs), Python {meta['python']}, "
             f"litellm {meta['litellm']}, llm_annotator {meta['llm_annotator']}.",
             "Command: `python benchmarks/run_all.py` (all of them; `--only NAME,...`, `--quick`). "
             "Raw figures: `benchmarks/results/benchmarks.json`. All benchmarks together ran in "
             f"{sum(v.get('benchmark_wall_s', 0) for v in results.values() if isinstance(v, dict)) / 60:.1f} min.", ""]
    if "overhead" in results:
        o = results["overhead"]
        lines += ["## 1. Overhead against a bare LiteLLM loop", "", command("overhead"), "",
                  f"{o['items']} items × {o['samples']} samples (`n`), concurrency {o['concurrency']}, "
                  f"loopback server with {o['latency_s'] * 1000:.0f} ms latency.", "",
                  "| path | seconds |", "|---|---|",
                  f"| bare `litellm.acompletion` loop | {o['bare_litellm_s']:.2f} |",
                  f"| `annotate` (render, cache, parse, votes.jsonl, labels) | {o['annotate_s']:.2f} |",
                  f"| **ratio** (target ≤ {o['target']}, goal {o['goal']}) | **{o['ratio']:.3f}** |", ""]
    if "concurrency" in results:
        c = results["concurrency"]
        server = c.get("server", "the threaded FakeOpenAI")
        lines += ["## 2. Concurrency", "", command("concurrency"), "",
                  f"{c['latency_s'] * 1000:.0f} ms latency, {server} server; the bare loop and `annotate` (a whole "
                  "run: reading, rendering, votes, labels) over the same requests"
                  + (f"; load average {c['load_average_1min']:.2f}." if "load_average_1min" in c else "."), "",
                  "| concurrency | requests | bound (req/s) | bare LiteLLM (req/s) | annotate (req/s) | of bound | of bare |",
                  "|---|---|---|---|---|---|---|"]
        lines += [f"| {r['concurrency']} | {r.get('requests', c.get('requests'))} | {r['bound_rps']:.0f} | "
                  f"{r['bare_rps']:.1f} | {r['annotate_rps']:.1f} | {r['share_of_bound']:.0%} | {r['share_of_bare']:.0%} |"
                  for r in c["rows"]]
        lines.append("")
    if "replay" in results:
        r = results["replay"]
        lines += ["## 3. Cache replay", "", command("replay"), "",
                  f"A finished {r['items']:,}-item × {r['samples']}-sample job run again: {r['votes']:,} votes in "
                  f"{r['seconds']:.2f} s = **{r['votes_per_s']:,.0f} votes/s** (target {r['target_votes_per_s']:,}), "
                  f"{r['requests']} requests.", ""]
    if "startup" in results:
        s = results["startup"]
        lines += ["## 4. Start-up (median of 5)", "", command("startup"), "", "| command | seconds | target |", "|---|---|---|",
                  f"| `python -c pass` | {s['python_empty_s']:.3f} | |",
                  f"| `python -c \"import llm_annotator\"` | {s['import_llm_annotator_s']:.3f} | 0.3 |",
                  f"| `llm-annotator --help` | {s['cli_help_s']:.3f} | 0.6 |",
                  f"| `import litellm` (for scale; deferred to the first call) | {s['import_litellm_s']:.3f} | |", ""]
    if "sampling" in results:
        s = results["sampling"]
        one, many = s["n in one request"], s["k requests"]
        lines += ["## 5. Sampling cost: k = 5 with `n` against k requests", "", command("sampling"), "",
                  f"{s['items']} items; tokens as billed in `usage` by the loopback server.", "",
                  "| way | requests | prompt tokens | completion tokens |", "|---|---|---|---|",
                  f"| `n = 5` in one request | {one['requests']} | {one['tokens_in']} | {one['tokens_out']} |",
                  f"| 5 requests | {many['requests']} | {many['tokens_in']} | {many['tokens_out']} |",
                  f"| ratio | | **{s['prompt_token_ratio']:.2f}** (theory {s['theoretical_ratio']}) | |", ""]
    if "local" in results:
        s = results["local"]
        lines += ["## 6. Embedded model: label scoring against generation", "", command("local"), "",
                  f"`local/smollm2-135m`, `emotion_melt`, {s['items']} MELD dev utterances, k = {s['k']}.", "",
                  "| way | seconds | soft labels/s |", "|---|---|---|",
                  f"| label scoring (one pass gives the distribution) | {s['score_s']:.1f} | {s['score_soft_labels_per_s']:.2f} |",
                  f"| generate 5 answers and parse | {s['generate_s']:.1f} | {s['generate_soft_labels_per_s']:.3f} |",
                  "",
                  f"Scoring is {s['speedup']:.1f}× faster. Only {s['generate_valid_vote_share']:.0%} of generated answers "
                  f"were valid ({s['items_with_a_valid_generated_vote']} items had at least one); on those, the mean total "
                  f"variation distance between the two soft labels is {s['mean_total_variation']:.2f}.", ""]
    if "memory" in results:
        m = results["memory"]
        lines += ["## 7. Memory (a job replayed from the cache, peak RSS of the process)", "", command("memory"), "",
                  "| items | peak RSS (MB) |", "|---|---|"]
        lines += [f"| {r['items']:,} | {r['peak_rss_mb']:.0f} |" for r in m["rows"]]
        lines += ["", f"Target: under {m['target_mb']} MB and flat in the item count.", ""]
    if results.get("stream_memory"):
        sm = results["stream_memory"]
        lines += [f"The same job from a CSV file with `annotate_stream` (chunks of 10,000 rows; votes, ids and "
                  f"prompt hashes on disk): `{sm['command']}`, {sm['date'][:10]}, load average after "
                  f"{sm['loadavg_1min_after']:.1f} on {sm['cpus']} CPUs.", "",
                  "| items | peak RSS (MB) | seconds | items/s |", "|---|---|---|---|"]
        lines += [f"| {r['items']:,} | {r['peak_rss_mb']:.0f} | {r['wall_s']:.1f} | {r['items_per_s']:,.0f} |"
                  for r in sm["streamed"]]
        lines += ["", sm["note"]] if sm.get("note") else []
        lines += ["", "What the peak holds beyond the interpreter and its libraries is bounded, not per item: "
                  "SQLite's page caches (the answer cache's 32 MB and memory map of 64 MB, set by diskcache; the "
                  "item index's 8 MB), which fill within the first million rows, and one chunk of rows, votes and labels.", ""]
    lines += ["## 8. SER probe mode", "", "See `docs/ser.md` (`python benchmarks/ser_probe.py`; the input pipeline: `python benchmarks/ser_pipeline.py`).", "", "On an H200 (2026-11-30, `benchmarks/results/ser_pipeline_cuda.json`): fine-tuning at 0.98 (batch 16) and 0.86 (batch 64) of the in-memory step rate; probe epochs from the cache 19× faster than the old loop.", ""]
    lines += findings(results)
    if "router" in results:
        r = results["router"]
        lines += ["## 9. Router over two deployments", "", command("router"), "",
                  f"{r['requests']} requests at {r['latency_s'] * 1000:.0f} ms latency, concurrency {r['concurrency']}: "
                  f"one server {r['single_server_rps']:.1f} req/s; a LiteLLM Router over two servers "
                  f"{r['router_rps']:.1f} req/s; answers per deployment {r['share_per_deployment']}.", ""]
        if "slots" in r:
            sl = r["slots"]
            lines += [f"Servers with {sl['slots_per_server']} slots each (at most {sl['slots_per_server']} answers "
                      f"in progress, the rest wait; bound {sl['bound_one_server_rps']:.0f} req/s per server), "
                      f"{sl['requests']} requests: one server {sl['single_server_rps']:.1f} req/s, the Router over "
                      f"two {sl['router_rps']:.1f} req/s.", ""]
    if "curator" in results:
        lines += curator_section(results["curator"], results)
    if "replay_process" in results:
        r = results["replay_process"]
        verdict = "above" if r["votes_per_s"] >= r["target_votes_per_s"] else "below"
        lines += ["## 11. A finished job run again as a new command", "", command("replay_process"), "",
                  f"{r['items']:,} items × {r['samples']} samples: a fresh `llm-annotator annotate` process reads the "
                  "CSV, renders every row, resumes every vote from votes.jsonl and writes labels.csv, labels.jsonl "
                  f"and run.json. Median of the runs: {r['seconds']:.2f} s, **{r['votes_per_s']:,.0f} votes/s** "
                  f"({verdict} the target {r['target_votes_per_s']:,}); load average {r['load_average_1min']:.2f}.", ""]
    if "workers" in results:
        w = results["workers"]
        med = w["median_requests_per_s"]
        lines += ["## 12. One job in two processes (`--workers 2`)", "",
                  f"`{w['command']}` (or {command('workers')}); every run in `benchmarks/results/workers.json`.", "",
                  f"{w['items']:,} rows, k = 1, {w['concurrency_per_process']} requests in flight per process, the "
                  f"asyncio loopback server ({w['latency_ms']:.0f} ms, its own process, at most "
                  f"{max(x['server_cpu_share'] for x in w['runs']):.1%} of a core): one process "
                  f"{med['1']:.0f} requests/s, two workers {med['2']:.0f} (**{w['speedup']:.2f}×**; target 1.6×); "
                  f"load average {w['load_average_1min']:.1f} at the end."
                  + ("" if "cores_busy" not in w["runs"][0] else
                     " Cores kept busy by the job and the server: "
                     + ", ".join(f"{x['cores_busy']:.2f} ({x['workers']} process{'es' if x['workers'] > 1 else ''})"
                                 for x in w["runs"])
                     + "; CPU per request " + ", ".join(f"{x['job_cpu_ms_per_request']:.2f} ms" for x in w["runs"])
                     + " (docs/scale.md)."), ""]
    if "rerun" in results:
        r = results["rerun"]
        m = r["median_s"]
        extra = m["rerun_one_changed_row_s"] - m["import_litellm_s"]
        lines += ["## 13. A re-run that asks one changed row", "",
                  "`python benchmarks/rerun.py --json benchmarks/results/rerun.json` (or " + command("rerun") + ")", "",
                  f"A job of {r['items']:,} rows run again with one row changed (one call, the rest from the cache), "
                  f"each a fresh process, medians of {r['runs']}: {m['rerun_one_changed_row_s']:.2f} s against "
                  f"{m['import_litellm_s']:.2f} s for `import litellm` alone (**+{extra:.2f} s**; target at most "
                  f"+1 s: LiteLLM loads in a background thread while the input is read and rendered); the same job "
                  f"replayed with no call: {m['replay_s']:.2f} s, without importing LiteLLM.", ""]
    if "cpu_per_request" in results:
        cp = results["cpu_per_request"]
        med = cp["median_cpu_ms_per_request"]
        lines += ["## 14. Client CPU per request at the ceiling", "",
                  "`python benchmarks/cpu_per_request.py --requests 1500 --rounds 3 --k 1,3 --json "
                  "benchmarks/results/cpu_per_request.json` (or " + command("cpu_per_request") + ")", "",
                  f"{cp['requests']:,} requests per run, concurrency {cp['concurrency']}, the asyncio loopback server "
                  f"({cp['latency_s'] * 1000:.0f} ms latency, its own process); the client process's CPU (every "
                  f"thread) per request, each run a fresh process, the two interleaved over {cp['rounds']} rounds, "
                  "medians. Target: `annotate` at most 0.8× the bare loop. The profile of both paths, what was cut "
                  "and what no LiteLLM setting switches off: `docs/cpu.md`.", "",
                  "| k | bare loop (ms) | `annotate` (ms) | annotate / bare |", "|---|---|---|---|"]
        for k in sorted({key.split("=")[1] for key in cp["ratio"]}):
            lines.append(f"| {k} | {med[f'bare k={k}']:.2f} | {med[f'annotate k={k}']:.2f} | "
                         f"{cp['ratio'][f'k={k}']:.2f} |")
        lines.append("")
    return "\n".join(lines)


def _curator_load(figures: dict[str, Any]) -> str:
    load = figures.get("loadavg_1min")
    if isinstance(load, dict):
        return f"load average (1 min) {load['min']:.2f}–{load['max']:.2f}"
    return f"load average (1 min) {load:.2f}" if load is not None else "load average not recorded"


def _curator_command(figures: dict[str, Any], item: str) -> str:
    wall = figures.get("wall_s", figures.get("ceiling_wall_s"))
    took = f", {wall / 60:.1f} min" if wall is not None else ""
    return f"`python benchmarks/curator.py --items {item}` (measured {figures['date'][:10]} by `{figures['command']}`{took})"


def _curator_items(items: dict[str, Any], version: str | None, latest: dict[str, Any]) -> list[str]:
    """The items of issue 18 beyond the ceiling, Curator's figure beside ours, each with its command."""
    lines: list[str] = []
    c = items.get("concurrency")
    if c:
        m = c["median_requests_per_s"]
        lines += ["### High concurrency: 256 requests in flight", "", _curator_command(c, "concurrency"), "",
                  f"The setting of section 2 at {c['concurrency']}: the asyncio loopback server at "
                  f"{c['latency_s'] * 1000:.0f} ms (bound {c['bound_rps']:.0f} req/s), {c['requests']:,} requests "
                  f"({c['requests'] // c['concurrency']} per slot), the same prompts for the three; the bare loop and "
                  "`annotate` in the benchmark's process (LiteLLM imported first), Curator in a fresh process warmed "
                  f"up with {c['concurrency']} requests, `max_concurrent_requests` = {c['concurrency']}, cache off; "
                  f"the three in turn over {c['rounds']} rounds, medians; {_curator_load(c)}.", "",
                  "| client | requests/s | of bound | × bare loop |", "|---|---|---|---|"]
        for name, label in (("bare", "bare `litellm.acompletion` loop"), ("annotate", "`annotate` (a whole run)"),
                            ("curator", "Bespoke Curator")):
            lines.append(f"| {label} | {m[name]:.0f} | {m[name] / c['bound_rps']:.0%} | {m[name] / m['bare']:.2f} |")
        lines.append("")
    w = items.get("workers")
    if w:
        ours = w.get("ours") or {}
        if "workers" in latest:  # section 12's latest run
            lw = latest["workers"]
            ours = {"median_requests_per_s": lw["median_requests_per_s"], "command": lw["command"],
                    "date": lw["date"], "loadavg_1min": lw.get("load_average_1min")}
        med = ours.get("median_requests_per_s") or {}
        lines += ["### Many cores: one job in one and two processes", "", _curator_command(w, "workers"), "",
                  f"The setting of section 12 (`{ours.get('command')}`, {ours.get('date')}): the asyncio loopback "
                  f"server at {w['latency_s'] * 1000:.0f} ms, {w['concurrency']} requests in flight per process, "
                  f"k = 1, {w['items']:,} rows, no cache. Curator {version} has no multi-process mode for requests: "
                  "every backend of its `LLM` runs one process (online: one asyncio loop over aiohttp; batch: the "
                  "provider's batch API; offline: vLLM, `tensor_parallel_size` over one machine's GPUs), so its "
                  f"figure is one process's ({w['rounds']} fresh processes warmed up with 200 requests, median; "
                  f"{_curator_load(w)}). `annotate`'s figures are section 12's, not measured again"
                  + (f" (load average {ours['loadavg_1min']:.2f})." if ours.get("loadavg_1min") is not None else "."), "",
                  "| client | processes | requests/s |", "|---|---|---|"]
        if "1" in med:
            lines.append(f"| `annotate` (`--workers 1`) | 1 | {med['1']:.0f} |")
        for key, value in med.items():
            if key != "1":
                lines.append(f"| `annotate --workers {key}` | {key} | {value:.0f} |")
        lines += [f"| Bespoke Curator | 1 | {w['curator_requests_per_s']:.0f} |", ""]
    r = items.get("rerun")
    if r:
        ours = (r.get("ours") or {}).get("median_s") or {}
        m = r["median"]
        lines += ["### A quick re-run: one row changed", "", _curator_command(r, "rerun"), "",
                  f"A job of {r['items']:,} rows (section 13's: the same rows, the loopback `FakeOpenAI`) run once "
                  "with Curator's cache on, then, interleaved, each a fresh process timed from start to exit: "
                  "Curator's import alone, the job with one row changed, the job unchanged; medians of "
                  f"{r['runs']}; {_curator_load(r)}. Curator's cache is keyed by the fingerprint of the whole "
                  "input dataset (with the prompt function, model and generation parameters), so the job with "
                  f"one changed row asked the server for {statistics.median(r['seconds']['rerun_requests']):,.0f} "
                  f"answers of {r['items']:,}, the unchanged job for "
                  f"{statistics.median(r['seconds']['replay_requests']):,.0f} (besides its one request without "
                  "messages, for rate-limit headers, as each process of its OpenAI backend starts). `annotate`'s "
                  "figures are section 13's, not measured again.", "",
                  "| seconds (a fresh process) | `annotate` | Bespoke Curator |", "|---|---|---|",
                  f"| import alone (`import litellm`; `from bespokelabs import curator`) | "
                  f"{ours.get('import_litellm_s', float('nan')):.2f} | {m['import_curator_s']:.2f} |",
                  f"| the job with one row changed | {ours.get('rerun_one_changed_row_s', float('nan')):.2f} (1 call) | "
                  f"{m['rerun_one_changed_row_s']:.2f} ({statistics.median(r['seconds']['rerun_requests']):,.0f} calls) |",
                  f"| the job unchanged (a replay) | {ours.get('replay_s', float('nan')):.2f} | {m['replay_s']:.2f} |",
                  ""]
    p = items.get("replay")
    if p:
        ours = p.get("ours") or {}
        lines += ["### A finished job run again as a new process", "", _curator_command(p, "replay"), "",
                  f"Section 11's job, {p['items']:,} items × {p['samples']} samples, every answer in the cache. "
                  f"Curator sends one request per row, so its job is {p['rows']:,} rows (each item {p['samples']} "
                  "times, a `sample` column apart): a fresh process reads the CSV, renders each row in `prompt`, "
                  "loads the dataset the finished run left and writes the labels CSV (`dataset.to_csv`). Its cache "
                  "was filled without a request per row: one real answer copied into every row's line of "
                  "`responses_0.jsonl` in the run directory Curator computes (`curator_client.py --mode fill`); a "
                  f"first run resumed from those lines and built the dataset ({p['resume_s']:.1f} s), asking for no "
                  f"answer; median of {p['runs']} runs after it; {_curator_load(p)}. `annotate`'s figure is "
                  "section 11's (`llm-annotator annotate`, votes.jsonl, labels.csv, labels.jsonl, run.json), not "
                  "measured again"
                  + (f" (load average {ours['loadavg_1min']:.2f})." if ours.get("loadavg_1min") is not None else "."), "",
                  "| client | seconds | votes (answers)/s |", "|---|---|---|"]
        if ours.get("votes_per_s"):
            lines.append(f"| `llm-annotator annotate` ({ours['items']:,} × {ours['samples']}) | {ours['seconds']:.2f} | "
                         f"{ours['votes_per_s']:,.0f} |")
        lines += [f"| Bespoke Curator ({p['rows']:,} rows) | {p['seconds']:.2f} | {p['answers_per_s']:,.0f} |", ""]
    mem = items.get("memory")
    if mem:
        ours = mem.get("ours") or {}
        annotate_mb = {row["items"]: row["peak_rss_mb"] for row in ours.get("rows") or []}
        stream_mb = {row["items"]: row["peak_rss_mb"]
                     for row in latest.get("stream_memory", {}).get("streamed") or ours.get("streamed") or []}
        lines += ["### Memory: a job replayed from the cache", "", _curator_command(mem, "memory"), "",
                  "Peak RSS (`VmHWM`) of the process, k = 1. Curator's cache filled as above: \"resume\" is the "
                  "first run over it (every answer read from `responses_0.jsonl`, the dataset built), \"replay\" "
                  f"the run after it (the finished dataset loaded); {_curator_load(mem)}. `annotate` and "
                  "`annotate_stream` are section 7's, not measured again (— where section 7 has no such size).", "",
                  "| rows | `annotate` (MB) | `annotate_stream` (MB) | Curator resume (MB, s) | Curator replay (MB, s) |",
                  "|---|---|---|---|---|"]
        for row in mem["rows"]:
            n = row["items"]
            ours_a = f"{annotate_mb[n]:.0f}" if n in annotate_mb else "—"
            ours_s = f"{stream_mb[n]:.0f}" if n in stream_mb else "—"
            lines.append(f"| {n:,} | {ours_a} | {ours_s} | {row['resume_peak_rss_mb']:.0f} ({row['resume_s']:.1f} s) | "
                         f"{row['replay_peak_rss_mb']:.0f} ({row['replay_s']:.1f} s) |")
        lines.append("")
    lines += ["### Where an item does not apply to Curator", "",
              "- **SER input pipeline** (section 8): it feeds audio to a speech-emotion model's training; Curator "
              "trains no such model (its `finetune` module fine-tunes language models on chat text through the "
              "Tinker or Fireworks APIs), so there is nothing to measure beside it.",
              f"- **Ray, many machines** (`--ray`, docs/scale.md): Curator {version} has no mode that spreads requests "
              "over processes or machines; Ray appears in it only as one of CodeExecutor's backends for running "
              "generated code (its README: local, Ray, Docker, e2b), not for LLM requests.", ""]
    return lines


def curator_section(cu: dict[str, Any], latest: dict[str, Any] | None = None) -> list[str]:
    """Section 10; ``latest``: the figures of the other sections, whose latest workers and
    streamed-memory runs replace the ones curator.json copied when it ran."""
    versions = cu["versions"]
    venv = versions.get("curator_venv", {})
    items = cu.get("items") or {}
    lines = ["## 10. Against Bespoke Curator", "",
             "`python benchmarks/curator.py` (every item below, the memory item at 100,000 rows; "
             "`--items NAME,...`, `--memory-sizes 100000,1000000`, `--quick`; "
             f"{command('curator')} runs it, `--no-curator` leaves it out of a full run). Bespoke Curator "
             f"{venv.get('bespokelabs-curator')} in its own virtual environment, made by that script on first use; "
             "its OpenAI-compatible online backend (aiohttp, no LiteLLM on the request path), rate limits far above "
             "the servers' rates, no retries, the request body of the bare loop (the messages `annotate` renders "
             "for the sentiment task, its JSON schema, log-probabilities), one request per row (Curator has no "
             "`n`). Raw figures: `benchmarks/results/curator.json`; on "
             f"{cu['cpus']} CPUs shared with other work, so the figures are noisy.", ""]
    if "median" in cu:
        m = cu["median"]
        load = cu["loadavg_1min"]
        names = {"bare": "bare `litellm.acompletion` loop",
                 "annotate": "`annotate` (render, cache, parse, votes, labels)",
                 "curator": f"Bespoke Curator {venv.get('bespokelabs-curator')} (OpenAI backend, aiohttp)"}
        lines += ["### Requests/s and client CPU per request at the ceiling", "", _curator_command(cu, "ceiling"), "",
                  f"{cu['requests']:,} requests per run, k = {cu['k']} (one request per row), "
                  f"concurrency {cu['concurrency']}, the asyncio loopback server of `benchmarks/cpu_per_request.py` "
                  f"({cu['latency_s'] * 1000:.0f} ms latency, its own process); each run a fresh process warmed up "
                  f"with {cu['warm_up_requests']} requests; the three clients interleaved over {cu['rounds']} rounds, "
                  "medians. Curator's cache off. CPU: the client process's, every thread. Load average (1 min) "
                  f"during the runs: {load['min']:.2f}–{load['max']:.2f}.", "",
                  "| client | requests/s | CPU ms/request | CPU × bare loop |", "|---|---|---|---|"]
        for name in ("bare", "annotate", "curator"):
            lines.append(f"| {names[name]} | {m[name]['requests_per_s']:.0f} | {m[name]['cpu_ms_per_request']:.2f} | "
                         f"{m[name]['cpu_ms_per_request'] / m['bare']['cpu_ms_per_request']:.2f} |")
        lines.append("")
    lines += _curator_items(items, venv.get("bespokelabs-curator"), latest or {})
    lines += [f"Versions: litellm {versions['litellm']} here; in Curator's environment litellm "
              f"{venv.get('litellm')}, aiohttp {venv.get('aiohttp')}, openai {venv.get('openai')}, datasets "
              f"{venv.get('datasets')}.", ""]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help="comma-separated benchmark names")
    parser.add_argument("--quick", action="store_true", help="smaller sizes (a smoke run)")
    parser.add_argument("--render", action="store_true", help="only rewrite docs/benchmarks.md from the JSON")
    parser.add_argument("--no-curator", action="store_true",
                        help="leave out the Bespoke Curator comparison (which installs Curator into its own "
                             "virtual environment on first use)")
    args = parser.parse_args()
    if args.render:
        saved = json.loads((ROOT / "benchmarks" / "results" / "benchmarks.json").read_text())
        for name, saved_json in SAVED.items():
            if saved_json.exists():
                saved[name] = json.loads(saved_json.read_text())
        (ROOT / "docs" / "benchmarks.md").write_text(markdown(saved, saved["meta"]))
        return
    names = args.only.split(",") if args.only else list(BENCHES)
    if args.no_curator:
        names = [name for name in names if name != "curator"]
    out_json = ROOT / "benchmarks" / "results" / "benchmarks.json"
    results = json.loads(out_json.read_text()) if out_json.exists() and args.only else {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            started = time.perf_counter()
            results[name] = BENCHES[name](args.quick, Path(tmp))
            results[name]["benchmark_wall_s"] = time.perf_counter() - started
            print(name, json.dumps(results[name]), flush=True)
    meta = {"date": dt.date.today().isoformat(), "machine": platform.platform(), "cpus": os.cpu_count(),
            "python": platform.python_version(), "litellm": metadata.version("litellm"),
            "llm_annotator": metadata.version("llm-annotator-kit"), "quick": args.quick}
    results["meta"] = meta
    for name, saved_json in SAVED.items():
        if name not in names and saved_json.exists():  # the latest, run here or on its own
            results[name] = json.loads(saved_json.read_text())
    out_json.write_text(json.dumps(results, indent=2) + "\n")
    (ROOT / "docs" / "benchmarks.md").write_text(markdown(results, meta))
    print(f"wrote {out_json} and docs/benchmarks.md; peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024} MB")


if __name__ == "__main__":
    main()

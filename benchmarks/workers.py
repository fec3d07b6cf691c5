"""Requests per second of one job in 1 and in N worker processes (``workers=N``).

    python benchmarks/workers.py [--items 4000] [--rounds 2] [--workers 2]

The server is the asyncio OpenAI-compatible loopback server of ``cpu_per_request.py``, in
its own process, answering after 1 ms; its CPU share over each run is recorded, to show whether it was the
limit, and so is the job's CPU (the calling process and its workers): CPU per request, and
the cores the job and the server kept busy. Each run is a whole ``annotate`` call as a user makes it (reading, rendering,
the workers' start and LiteLLM import, votes.jsonl, labels, run.json), k = 1, the
sentiment task, no cache, 128 requests in flight per process; runs with 1 and N workers
alternate, round after round, and medians are reported with every run's figures.
Writes ``benchmarks/results/workers.json``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from benchmarks import cpu_per_request  # noqa: E402

CONCURRENCY = 128


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def one_run(url: str, server_pid: int, items: int, workers: int, tag: str) -> dict[str, float]:
    from llm_annotator import annotate

    rows = [{"id": f"{tag}-{i}", "text": f"benchmark sentence {tag} {i} with a few more words in it"}
            for i in range(items)]
    with tempfile.TemporaryDirectory() as tmp:
        children = resource.getrusage(resource.RUSAGE_CHILDREN)  # the workers, once they have exited
        server_cpu, own_cpu, wall = cpu_seconds(server_pid), time.process_time(), time.perf_counter()
        result = annotate(rows, "sentiment", [{"model": "openai/fake", "concurrency": CONCURRENCY}], api_base=url,
                          api_key="x", cache=False, out=Path(tmp) / "run", progress=False, id_column="id",
                          workers=workers)
        wall = time.perf_counter() - wall
        own_cpu = time.process_time() - own_cpu
        server_cpu = cpu_seconds(server_pid) - server_cpu
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        workers_cpu = (after.ru_utime + after.ru_stime) - (children.ru_utime + children.ru_stime)
    assert result.manifest["counts"]["valid"] == items, result.manifest["counts"]
    job_cpu = own_cpu + workers_cpu
    return {"workers": workers, "wall_s": round(wall, 3), "requests_per_s": round(items / wall, 1),
            "server_cpu_share": round(server_cpu / wall, 3),
            # where the CPU went: the calling process, its worker processes, the job's CPU per request,
            # and the cores busy on the job and the server together
            "parent_cpu_s": round(own_cpu, 2), "workers_cpu_s": round(workers_cpu, 2),
            "job_cpu_ms_per_request": round(1000 * job_cpu / items, 3),
            "cores_busy": round((job_cpu + server_cpu) / wall, 2)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--items", type=int, default=4000)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "workers.json"))
    args = p.parse_args()
    runs = []
    with cpu_per_request.Server() as server:
        one_run(server.url, server.proc.pid, 200, 1, "warm")
        for r in range(args.rounds):
            for workers in (1, args.workers):
                runs.append(one_run(server.url, server.proc.pid, args.items, workers, f"r{r}w{workers}"))
                print(json.dumps(runs[-1]), flush=True)
    median = {w: statistics.median(x["requests_per_s"] for x in runs if x["workers"] == w) for w in (1, args.workers)}
    report = {
        "date": dt.date.today().isoformat(), "machine": platform.platform(), "cpu_count": os.cpu_count(),
        "load_average_1min": os.getloadavg()[0], "items": args.items, "k": 1, "latency_ms": cpu_per_request.LATENCY_S * 1000,
        "concurrency_per_process": CONCURRENCY, "runs": runs,
        "median_requests_per_s": {str(w): v for w, v in median.items()},
        "speedup": round(median[args.workers] / median[1], 3),
        "command": "python benchmarks/workers.py " + " ".join(sys.argv[1:]),
    }
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({"median_requests_per_s": report["median_requests_per_s"], "speedup": report["speedup"]}))


if __name__ == "__main__":
    main()

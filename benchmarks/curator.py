"""Bespoke Curator beside the bare LiteLLM loop and ``annotate``: requests/s and client CPU per request.

    python benchmarks/curator.py [--requests 3000] [--rounds 3] [--venv PATH] [--json PATH]

The ceiling of ``benchmarks/cpu_per_request.py``, with a third client: its asyncio
OpenAI-compatible loopback server (1 ms latency, its own process, so its CPU is not
counted), the same requests (the messages ``annotate`` renders for the same synthetic rows
under the sentiment task, its JSON schema, log-probabilities), concurrency 128, k = 1 (one
request per row: Curator has no ``n``), each measured run a fresh process warmed up first
(200 requests), the three clients interleaved round after round (their order rotating),
medians reported. CPU is the client process's ``time.process_time`` (every thread) over
the measured run divided by the requests it sent; Curator's also counts any child process
it waited for.

Curator (``bespokelabs-curator``, pinned below) runs in its own virtual environment, made
here on first use (``--venv``, default ``~/.cache/llm_annotator_bench/curator-venv``; about a
minute from an empty pip cache) so its pins do not touch ours and the comparison repeats.
It uses its OpenAI-compatible online backend (aiohttp) pointed at the loopback URL, its
cache off, ``max_concurrent_requests`` = 128 and rate limits far above the server's rate:
see ``benchmarks/curator_client.py``. Figures, versions, load averages and the command go
to ``benchmarks/results/curator.json``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from benchmarks.cpu_per_request import CONCURRENCY, LATENCY_S, Server, messages_of, rows, run_child  # noqa: E402

CURATOR_VERSION = "0.1.31"  # the release issue 18 measured
# Curator depends on LiteLLM; these releases were compromised and must never be installed.
LITELLM_EXCLUDED = "litellm!=1.82.7,!=1.82.8,!=1.107.0"
DEFAULT_VENV = Path.home() / ".cache" / "llm_annotator_bench" / "curator-venv"
CLIENT = Path(__file__).resolve().parent / "curator_client.py"
RESULTS = ROOT / "benchmarks" / "results" / "curator.json"
WARM = 200
CLIENTS = ("bare", "annotate", "curator")


def venv_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def ensure_venv(venv: Path, version: str = CURATOR_VERSION) -> Path:
    """Curator's virtual environment, made (or brought to ``version``) only when its mark is missing."""
    mark = venv / f"installed-curator-{version}"
    python = venv_python(venv)
    if mark.exists() and python.exists():
        return python
    print(f"installing bespokelabs-curator=={version} into {venv} (once)", file=sys.stderr, flush=True)
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                    f"bespokelabs-curator=={version}", LITELLM_EXCLUDED], check=True)
    mark.write_text(version + "\n")
    return python


def venv_versions(python: Path) -> dict[str, str | None]:
    code = ("import json; from importlib import metadata as m\n"
            "def v(n):\n"
            "    try: return m.version(n)\n"
            "    except m.PackageNotFoundError: return None\n"
            "print(json.dumps({n: v(n) for n in ('bespokelabs-curator', 'litellm', 'aiohttp', 'openai', 'datasets', "
            "'tiktoken', 'pydantic')}))")
    out = subprocess.run([str(python), "-c", code], check=True, capture_output=True, text=True).stdout
    return json.loads(out)


def run_curator(python: Path, url: str, messages: Path, schema: Path) -> dict[str, float]:
    proc = subprocess.run([str(python), str(CLIENT), "--url", url, "--messages", str(messages), "--schema", str(schema),
                           "--concurrency", str(CONCURRENCY), "--warm", str(WARM)],
                          capture_output=True, text=True, env={**os.environ, "PYTHONPATH": ""})
    if proc.returncode != 0:
        raise RuntimeError(f"Curator's client failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def measure_all(requests: int, rounds: int, python: Path, log: Any = print) -> dict[str, Any]:
    from llm_annotator.core.task import load_task

    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in CLIENTS}
    with tempfile.TemporaryDirectory() as tmp, Server() as server:
        schema = Path(tmp) / "schema.json"
        schema.write_text(json.dumps(load_task("sentiment").response_schema()))
        for round_ in range(rounds):
            tag = f"r{round_}"
            messages = Path(tmp) / f"messages-{tag}.json"
            messages.write_text(json.dumps(messages_of(rows(requests, f"curator-{tag}"))))
            order = CLIENTS[round_ % len(CLIENTS):] + CLIENTS[:round_ % len(CLIENTS)]
            for name in order:
                before = loadavg()
                if name == "curator":
                    figures: dict[str, Any] = run_curator(python, server.url, messages, schema)
                else:
                    figures = json.loads(run_child(name, server.url, requests, 1, tag))
                figures.update({"round": round_, "loadavg_before": before, "loadavg_after": loadavg()})
                runs[name].append(figures)
                log(f"round {round_} {name:<8} {figures['requests_per_s']:6.0f} req/s  "
                    f"{figures['cpu_ms_per_request']:5.2f} ms CPU/request  load {figures['loadavg_after'][0]:.2f}")
    medians = {name: {key: statistics.median(f[key] for f in figures)
                      for key in ("requests_per_s", "cpu_ms_per_request", "wall_s")}
               for name, figures in runs.items()}
    ratios = {f"{a} / {b}": {"requests_per_s": medians[a]["requests_per_s"] / medians[b]["requests_per_s"],
                             "cpu_ms_per_request": medians[a]["cpu_ms_per_request"] / medians[b]["cpu_ms_per_request"]}
              for a, b in (("annotate", "bare"), ("curator", "bare"), ("annotate", "curator"))}
    loads = [f["loadavg_after"][0] for figures in runs.values() for f in figures]
    return {"requests": requests, "rounds": rounds, "concurrency": CONCURRENCY, "k": 1, "latency_s": LATENCY_S,
            "warm_up_requests": WARM, "median": medians, "ratio": ratios, "runs": runs,
            "loadavg_1min": {"min": min(loads), "median": statistics.median(loads), "max": max(loads)}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000, help="requests (rows, k = 1) per measured run")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--venv", type=Path, default=DEFAULT_VENV, help="Curator's virtual environment (made if missing)")
    parser.add_argument("--curator-version", default=CURATOR_VERSION, help=argparse.SUPPRESS)
    parser.add_argument("--json", type=Path, default=RESULTS, help="write the figures here")
    args = parser.parse_args()
    python = ensure_venv(args.venv.expanduser(), args.curator_version)
    started = dt.datetime.now(dt.UTC)
    summary = measure_all(args.requests, args.rounds, python,
                          log=lambda line: print(line, file=sys.stderr, flush=True))
    command = "python benchmarks/curator.py" + "".join(f" {shlex.quote(a)}" for a in sys.argv[1:])
    summary = {"command": command, "date": started.isoformat(timespec="seconds"), "machine": platform.platform(),
               "cpus": os.cpu_count(), "python": platform.python_version(),
               "versions": {"litellm": metadata.version("litellm"), "llm_annotator": metadata.version("llm-annotator-kit"),
                            "curator_venv": venv_versions(python)},
               **summary}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(summary, indent=2) + "\n")
    m = summary["median"]
    print(f"medians over {args.rounds} rounds, {args.requests} requests, concurrency {CONCURRENCY}, k = 1 "
          f"(load average {summary['loadavg_1min']['median']:.2f}):")
    for name in CLIENTS:
        print(f"  {name:<8} {m[name]['requests_per_s']:6.0f} req/s  {m[name]['cpu_ms_per_request']:5.2f} ms CPU/request")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()

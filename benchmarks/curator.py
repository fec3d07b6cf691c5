"""Bespoke Curator beside the bare LiteLLM loop and ``annotate``, item by item of issue 18.

    python benchmarks/curator.py [--items ceiling,concurrency,workers,rerun,replay,memory] [--quick]
                                 [--requests 3000] [--rounds 3] [--memory-sizes 100000] [--venv PATH] [--json PATH]

Curator (``bespokelabs-curator``, pinned below) runs in its own virtual environment, made
here on first use (``--venv``, default ``~/.cache/llm_annotator_bench/curator-venv``; about a
minute from an empty pip cache) so its pins do not touch ours and the comparison repeats.
It uses its OpenAI-compatible online backend (aiohttp) pointed at a loopback server, rate
limits far above the server's rate, no retries, the request body of the bare loop (the
messages ``annotate`` renders for the sentiment task, its JSON schema, log-probabilities),
one request per row (Curator has no ``n``): see ``benchmarks/curator_client.py``. The items:

``ceiling``: requests/s and client CPU per request of the three clients against the asyncio
loopback server of ``benchmarks/cpu_per_request.py`` (1 ms latency, its own process, so its
CPU is not counted), ``--requests`` per run, concurrency 128, each measured run a fresh
process warmed up first (200 requests), the three interleaved round after round (their
order rotating), medians. CPU is the client process's ``time.process_time`` (every thread)
over the measured run divided by the requests it sent; Curator's also counts any child
process it waited for; its cache is off.

``concurrency``: requests/s at 256 in flight, as ``run_all.py``'s concurrency benchmark
measures the bare loop and ``annotate`` (the same server at 200 ms latency, 40 requests
per slot, the same prompts), the three measured here in turn, round after round, medians:
the bare loop and ``annotate`` in this process (LiteLLM imported first), Curator in a
fresh process warmed up with 256 requests, cache off.

``workers``: Curator's requests/s in one process (it has no multi-process mode) at the
setting of ``benchmarks/workers.py`` (that server at 1 ms, 128 in flight, as many rows as
``benchmarks/results/workers.json``), cache off, beside that file's ``annotate --workers
1`` and ``2``.

``rerun``: a job of as many rows as ``benchmarks/results/rerun.json`` (the loopback
``FakeOpenAI``, as ``benchmarks/rerun.py``), run once by Curator with its cache on, then,
interleaved, each a fresh process timed from start to exit: ``from bespokelabs import
curator`` alone, the job with one row changed, the job unchanged (a replay). The
requests each made are counted at the server.

``replay``: a finished job of 10,000 items x 5 samples run again as a new process: Curator
sends one request per row, so the job is 50,000 rows (each item 5 times, a ``sample``
column apart) and every answer comes from its cache; answers/s of the whole process
(reading the CSV, rendering, loading the finished dataset, writing the labels CSV), median
of the runs, beside ``run_all.py``'s ``replay_process``. Curator's cache is filled
without 50,000 requests (``curator_client.py --mode fill``: one real answer copied into
every row's response line, in the run directory Curator computes); a first job run
resumes from those lines and builds the dataset; the measured runs load it. The server
of these runs counts what it is sent: no request for an answer (only the one without
messages that Curator's OpenAI backend posts as it starts, to read rate-limit headers).

``memory``: peak RSS (``VmHWM``) of that resume and of the replay after it, for jobs of
``--memory-sizes`` rows (k = 1), beside ``run_all.py``'s memory benchmark.

Each item's figures, the load average and the command go to
``benchmarks/results/curator.json``; items not run keep their last figures there. The
bare loop's and ``annotate``'s figures of the workers, rerun, replay and memory items are
copied from ``benchmarks/results/{workers,rerun,benchmarks}.json`` (with their dates),
not measured again.
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
import time
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
ITEMS = ("ceiling", "concurrency", "workers", "rerun", "replay", "memory")
RESULTS_DIR = ROOT / "benchmarks" / "results"


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


def client(python: Path, *arguments: str) -> dict[str, Any]:
    """benchmarks/curator_client.py in Curator's environment: its JSON, and the process's wall seconds."""
    started = time.perf_counter()
    proc = subprocess.run([str(python), str(CLIENT), *arguments], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": ""})
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError(f"Curator's client failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    figures: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    figures["process_wall_s"] = wall
    return figures


def run_curator(python: Path, url: str, messages: Path, schema: Path, concurrency: int = CONCURRENCY,
                warm: int = WARM) -> dict[str, Any]:
    return client(python, "--url", url, "--messages", str(messages), "--schema", str(schema),
                  "--concurrency", str(concurrency), "--warm", str(warm))


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


# -- the items beyond the ceiling ---------------------------------------------------------
def _saved(name: str) -> dict[str, Any]:
    path = RESULTS_DIR / name
    return json.loads(path.read_text()) if path.exists() else {}


def _template() -> list[dict[str, str]]:
    """The sentiment task's messages with the client's placeholder where a row's text goes;
    checked against what annotate renders."""
    from llm_annotator.core.prompts import compile_prompt
    from llm_annotator.core.task import load_task

    placeholder = "\x00TEXT\x00"  # curator_client.PLACEHOLDER
    prompt = compile_prompt(load_task("sentiment"))
    template: list[dict[str, str]] = prompt.render({"id": "t", "text": placeholder})
    for row in rows(3, "check"):
        rendered = [{"role": m["role"], "content": m["content"].replace(placeholder, row["text"])} for m in template]
        assert rendered == prompt.render(row), "the sentiment prompt is not a plain substitution of the text"
    return template


def _job_files(tmp: Path, schema: Any) -> tuple[Path, Path]:
    template, schema_file = tmp / "template.json", tmp / "schema.json"
    template.write_text(json.dumps(_template()))
    schema_file.write_text(json.dumps(schema))
    return template, schema_file


def _write_rows(path: Path, items: int, samples: int = 1, changed: str | None = None) -> None:
    """run_all.py's rows (``r{i}``, the same texts), each ``samples`` times when > 1."""
    import csv

    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "text"] + (["sample"] if samples > 1 else []))
        for i in range(items):
            text = changed if i == 0 and changed else f"benchmark sentence {i} with a few more words in it"
            for sample in range(samples):
                writer.writerow([f"r{i}", text] + ([sample] if samples > 1 else []))


def _schema() -> Any:
    from llm_annotator.core.task import load_task

    return load_task("sentiment").response_schema()


def _job(python: Path, rows_csv: Path, files: tuple[Path, Path], cache: Path, url: str,
         out: Path | None = None, concurrency: int = CONCURRENCY) -> dict[str, Any]:
    arguments = ["--mode", "job", "--url", url, "--rows", str(rows_csv), "--template", str(files[0]),
                 "--schema", str(files[1]), "--cache-dir", str(cache), "--concurrency", str(concurrency)]
    return client(python, *arguments, *(["--out", str(out)] if out else []))


def _fill(python: Path, rows_csv: Path, files: tuple[Path, Path], cache: Path, url: str) -> dict[str, Any]:
    return client(python, "--mode", "fill", "--url", url, "--rows", str(rows_csv), "--template", str(files[0]),
                  "--schema", str(files[1]), "--cache-dir", str(cache))


def _answers(server: Any, since: int) -> tuple[int, int]:
    """Chat requests a FakeOpenAI server got since request ``since``: (with messages, without).
    Curator's OpenAI backend, as it starts, posts one request with no messages to read the
    rate-limit headers; the others ask for answers."""
    bodies = server.requests[since:]
    asked = sum(1 for body in bodies if body.get("messages"))
    return asked, len(bodies) - asked


def item_concurrency(python: Path, quick: bool, rounds: int, log: Any) -> dict[str, Any]:
    """Requests/s at 256 in flight: run_all.py's bench_concurrency setting, with Curator."""
    import asyncio

    from benchmarks.run_all import bare_loop, same_requests, toolkit

    latency, concurrency = 0.2, 256
    requests = concurrency * (10 if quick else 40)
    prompts = [[{"role": "user", "content": f"c{concurrency} {m[-1]['content']}"}] for m in same_requests(requests)]
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in CLIENTS}
    os.environ["BENCH_SERVER_LATENCY_S"] = str(latency)
    try:
        with tempfile.TemporaryDirectory() as tmp, Server() as server:
            messages = Path(tmp) / "messages.json"
            messages.write_text(json.dumps(prompts))
            schema = Path(tmp) / "schema.json"
            schema.write_text(json.dumps(_schema()))
            asyncio.run(bare_loop(server.url, prompts[:concurrency], concurrency, 1))  # LiteLLM imported first
            toolkit(server.url, 50, 1, concurrency, Path(tmp) / "warm")
            for round_ in range(rounds):
                order = CLIENTS[round_ % len(CLIENTS):] + CLIENTS[:round_ % len(CLIENTS)]
                for name in order:
                    before = loadavg()
                    if name == "bare":
                        seconds = asyncio.run(bare_loop(server.url, prompts, concurrency, 1))
                        figures: dict[str, Any] = {"wall_s": seconds, "requests_per_s": requests / seconds}
                    elif name == "annotate":
                        seconds, _ = toolkit(server.url, requests, 1, concurrency, Path(tmp) / f"conc-{round_}")
                        figures = {"wall_s": seconds, "requests_per_s": requests / seconds}
                    else:
                        figures = run_curator(python, server.url, messages, schema, concurrency, concurrency)
                    figures.update({"round": round_, "loadavg_before": before, "loadavg_after": loadavg()})
                    runs[name].append(figures)
                    log(f"concurrency {concurrency} round {round_} {name:<8} {figures['requests_per_s']:6.0f} req/s  "
                        f"load {figures['loadavg_after'][0]:.2f}")
    finally:
        os.environ.pop("BENCH_SERVER_LATENCY_S", None)
    medians = {name: statistics.median(f["requests_per_s"] for f in figures) for name, figures in runs.items()}
    return {"concurrency": concurrency, "latency_s": latency, "requests": requests, "rounds": rounds,
            "bound_rps": concurrency / latency, "median_requests_per_s": medians, "runs": runs,
            "loadavg_1min": _loads(runs)}


def _loads(runs: dict[str, list[dict[str, Any]]]) -> dict[str, float]:
    loads = [f["loadavg_after"][0] for figures in runs.values() for f in figures]
    return {"min": min(loads), "median": statistics.median(loads), "max": max(loads)}


def item_workers(python: Path, quick: bool, rounds: int, log: Any) -> dict[str, Any]:
    """Curator's one-process requests/s at benchmarks/workers.py's setting, beside workers.json."""
    ours = _saved("workers.json")
    items = 1500 if quick else int(ours.get("items", 15_000))
    runs = []
    with tempfile.TemporaryDirectory() as tmp, Server() as server:
        schema = Path(tmp) / "schema.json"
        schema.write_text(json.dumps(_schema()))
        for round_ in range(rounds):
            messages = Path(tmp) / f"messages-{round_}.json"
            messages.write_text(json.dumps(messages_of(rows(items, f"workers-r{round_}"))))
            before = loadavg()
            figures = run_curator(python, server.url, messages, schema)
            figures.update({"round": round_, "loadavg_before": before, "loadavg_after": loadavg()})
            runs.append(figures)
            log(f"workers round {round_} curator {figures['requests_per_s']:6.0f} req/s  load {figures['loadavg_after'][0]:.2f}")
    return {"items": items, "k": 1, "latency_s": LATENCY_S, "concurrency": CONCURRENCY, "rounds": rounds,
            "curator_requests_per_s": statistics.median(f["requests_per_s"] for f in runs), "runs": runs,
            "loadavg_1min": _loads({"curator": runs}),
            "ours": {"from": "benchmarks/results/workers.json", "date": ours.get("date"), "command": ours.get("command"),
                     "items": ours.get("items"), "median_requests_per_s": ours.get("median_requests_per_s"),
                     "speedup": ours.get("speedup"), "loadavg_1min": ours.get("load_average_1min")}}


def item_rerun(python: Path, quick: bool, runs_: int, log: Any) -> dict[str, Any]:
    """A job run once with Curator's cache on, then again with one row changed, each run a
    fresh process: benchmarks/rerun.py's measure, with Curator."""
    from llm_annotator.testing import FakeOpenAI, sampling_responder

    ours = _saved("rerun.json")
    items = 200 if quick else int(ours.get("items", 1000))
    figures: dict[str, list[Any]] = {"import_curator_s": [], "rerun_one_changed_row_s": [], "replay_s": [],
                                     "rerun_requests": [], "replay_requests": []}
    with tempfile.TemporaryDirectory() as tmp_, FakeOpenAI(sampling_responder(["positive", "negative", "neutral"],
                                                                              "sentiment")) as server:
        tmp = Path(tmp_)
        files = _job_files(tmp, _schema())
        data, cache, out = tmp / "items.csv", tmp / "cache", tmp / "labels.csv"
        _write_rows(data, items)
        first = _job(python, data, files, cache, server.url, out)
        first_requests, probes = _answers(server, 0)
        assert first_requests == items and probes == 1, (first_requests, probes, items)
        for run in range(runs_):
            figures["import_curator_s"].append(client(python, "--mode", "import")["process_wall_s"])
            _write_rows(data, items, changed=f"a changed row version {run}")
            calls = server.calls
            rerun = _job(python, data, files, cache, server.url, out)
            figures["rerun_one_changed_row_s"].append(rerun["process_wall_s"])
            figures["rerun_requests"].append(_answers(server, calls)[0])
            calls = server.calls
            replay = _job(python, data, files, cache, server.url, out)
            figures["replay_s"].append(replay["process_wall_s"])
            figures["replay_requests"].append(_answers(server, calls)[0])
            log(f"rerun {run}: import curator {figures['import_curator_s'][-1]:.2f} s, re-run "
                f"{rerun['process_wall_s']:.2f} s ({figures['rerun_requests'][-1]} requests), replay "
                f"{replay['process_wall_s']:.2f} s ({figures['replay_requests'][-1]} requests)  load {loadavg()[0]:.2f}")
    medians = {name: statistics.median(values) for name, values in figures.items()}
    return {"items": items, "runs": runs_, "first_run_s": first["process_wall_s"], "first_run_requests": first_requests,
            "seconds": figures, "median": medians, "loadavg_1min": loadavg()[0],
            "rate_limit_probes_per_process": 1,
            "ours": {"from": "benchmarks/results/rerun.json", "items": ours.get("items"), "runs": ours.get("runs"),
                     "median_s": ours.get("median_s")}}


def item_replay(python: Path, quick: bool, runs_: int, log: Any) -> dict[str, Any]:
    """A finished job of 10,000 items x 5 samples (50,000 rows for Curator) run again as a new process."""
    from llm_annotator.testing import FakeOpenAI

    ours = _saved("benchmarks.json").get("replay_process", {})
    items, samples = (2000 if quick else 10_000), 5
    with tempfile.TemporaryDirectory() as tmp_, Server() as server, FakeOpenAI() as counting:
        tmp = Path(tmp_)
        files = _job_files(tmp, _schema())
        data, cache, out = tmp / "items.csv", tmp / "cache", tmp / "labels.csv"
        _write_rows(data, items, samples)
        _fill(python, data, files, cache, server.url)
        resumed = _job(python, data, files, cache, counting.url, out)
        assert resumed["requests_made"] == 0 and resumed["answers_resumed"] == items * samples, resumed
        replays = []
        for run in range(runs_):
            replay = _job(python, data, files, cache, counting.url, out)
            assert replay["loaded_finished_dataset"] and replay["rows"] == items * samples, replay
            replays.append(replay)
            log(f"replay {run}: {replay['process_wall_s']:.2f} s, {items * samples / replay['process_wall_s']:,.0f} "
                f"answers/s  load {loadavg()[0]:.2f}")
        asked = _answers(counting, 0)[0]
        assert asked == 0, f"Curator asked {asked} answers of a finished job"
    seconds = statistics.median(r["process_wall_s"] for r in replays)
    return {"items": items, "samples": samples, "rows": items * samples, "runs": runs_, "seconds": seconds,
            "answers_per_s": items * samples / seconds, "resume_s": resumed["process_wall_s"], "replays": replays,
            "loadavg_1min": loadavg()[0],
            "ours": {"from": "benchmarks/results/benchmarks.json replay_process", "items": ours.get("items"),
                     "samples": ours.get("samples"), "seconds": ours.get("seconds"),
                     "votes_per_s": ours.get("votes_per_s"), "loadavg_1min": ours.get("load_average_1min")}}


def item_memory(python: Path, quick: bool, sizes: list[int], log: Any) -> dict[str, Any]:
    """Peak RSS of Curator resuming a job whose answers are all on disk, and of the replay after it."""
    ours = _saved("benchmarks.json").get("memory", {})
    out_rows = []
    from llm_annotator.testing import FakeOpenAI

    with Server() as server, FakeOpenAI() as counting:
        for n in sizes:
            with tempfile.TemporaryDirectory() as tmp_:
                tmp = Path(tmp_)
                files = _job_files(tmp, _schema())
                data, cache, out = tmp / "items.csv", tmp / "cache", tmp / "labels.csv"
                _write_rows(data, n)
                started = time.perf_counter()
                _fill(python, data, files, cache, server.url)
                fill_s = time.perf_counter() - started
                resumed = _job(python, data, files, cache, counting.url, out)
                assert resumed["requests_made"] == 0 and resumed["answers_resumed"] == n, resumed
                replay = _job(python, data, files, cache, counting.url, out)
                assert replay["loaded_finished_dataset"] and replay["rows"] == n, replay
            asked = _answers(counting, 0)[0]
            assert asked == 0, f"Curator asked {asked} answers of a finished job"
            out_rows.append({"items": n, "fill_s": fill_s,
                             "resume_peak_rss_mb": resumed["peak_rss_mb"], "resume_s": resumed["process_wall_s"],
                             "replay_peak_rss_mb": replay["peak_rss_mb"], "replay_s": replay["process_wall_s"]})
            log(f"memory {n:,}: resume {resumed['peak_rss_mb']:.0f} MB in {resumed['process_wall_s']:.1f} s, replay "
                f"{replay['peak_rss_mb']:.0f} MB in {replay['process_wall_s']:.1f} s  load {loadavg()[0]:.2f}")
    return {"rows": out_rows, "loadavg_1min": loadavg()[0],
            "ours": {"from": "benchmarks/results/benchmarks.json memory", "rows": ours.get("rows"),
                     "streamed": ours.get("streamed")}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", default=",".join(ITEMS), help=f"comma-separated, of: {', '.join(ITEMS)}")
    parser.add_argument("--quick", action="store_true", help="smaller sizes, one round (a smoke run)")
    parser.add_argument("--requests", type=int, default=3000, help="ceiling: requests (rows, k = 1) per measured run")
    parser.add_argument("--rounds", type=int, default=3, help="ceiling: rounds (the other items: 2, or 3 runs)")
    parser.add_argument("--memory-sizes", default="100000", help="memory: comma-separated row counts")
    parser.add_argument("--venv", type=Path, default=DEFAULT_VENV, help="Curator's virtual environment (made if missing)")
    parser.add_argument("--curator-version", default=CURATOR_VERSION, help=argparse.SUPPRESS)
    parser.add_argument("--json", type=Path, default=RESULTS, help="write the figures here (items not run keep theirs)")
    args = parser.parse_args()
    items = [name for name in args.items.split(",") if name]
    unknown = sorted(set(items) - set(ITEMS))
    if unknown:
        parser.error(f"unknown items: {', '.join(unknown)} (of {', '.join(ITEMS)})")
    python = ensure_venv(args.venv.expanduser(), args.curator_version)
    log = lambda line: print(line, file=sys.stderr, flush=True)  # noqa: E731
    command = "python benchmarks/curator.py" + "".join(f" {shlex.quote(a)}" for a in sys.argv[1:])
    summary: dict[str, Any] = json.loads(args.json.read_text()) if args.json.exists() else {}
    summary.setdefault("items", {})
    started = dt.datetime.now(dt.UTC)
    summary.update({"machine": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version(),
                    "versions": {"litellm": metadata.version("litellm"),
                                 "llm_annotator": metadata.version("llm-annotator-kit"),
                                 "curator_venv": venv_versions(python)}})
    rounds, runs = (1, 2) if args.quick else (2, 3)
    if args.quick:
        args.requests, args.rounds = min(args.requests, 600), 1
    sizes = [10_000] if args.quick else [int(n) for n in args.memory_sizes.split(",")]
    measures = {"concurrency": lambda: item_concurrency(python, args.quick, rounds, log),
                "workers": lambda: item_workers(python, args.quick, rounds, log),
                "rerun": lambda: item_rerun(python, args.quick, runs, log),
                "replay": lambda: item_replay(python, args.quick, runs, log),
                "memory": lambda: item_memory(python, args.quick, sizes, log)}
    for name in items:
        began, date = time.perf_counter(), dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        if name == "ceiling":
            summary.update(measure_all(args.requests, args.rounds, python, log=log))
            summary.update({"command": command, "date": date, "ceiling_wall_s": time.perf_counter() - began})
        else:
            figures = measures[name]()
            summary["items"][name] = {"command": command, "date": date, "wall_s": time.perf_counter() - began,
                                      **figures}
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(summary, indent=2) + "\n")  # after each item: a later failure keeps it
    print(f"ran {', '.join(items)} in {(dt.datetime.now(dt.UTC) - started).total_seconds() / 60:.1f} min "
          f"(load average now {loadavg()[0]:.2f}); wrote {args.json}")
    if "ceiling" in items:
        m = summary["median"]
        print(f"ceiling: medians over {args.rounds} rounds, {args.requests} requests, concurrency {CONCURRENCY}, k = 1:")
        for name in CLIENTS:
            print(f"  {name:<8} {m[name]['requests_per_s']:6.0f} req/s  {m[name]['cpu_ms_per_request']:5.2f} ms CPU/request")
    for name in items:
        if name != "ceiling":
            figures = summary["items"][name]
            print(f"{name}: " + json.dumps({k: v for k, v in figures.items() if not isinstance(v, (list, dict))}))


if __name__ == "__main__":
    main()

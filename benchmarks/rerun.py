"""A small re-run against LiteLLM's bare import time, each in a fresh process.

    python benchmarks/rerun.py [--items 1000] [--runs 5] [--json PATH]

A job of ``--items`` rows (sentiment, one model, loopback server) is run once to fill the
answer cache and the run directory. Then, ``--runs`` times, interleaved: ``import litellm``
alone (``LITELLM_LOCAL_MODEL_COST_MAP=True``), the CLI's re-run of the job with one row
changed (``--overwrite``: one call, the rest from the cache), and a replay of the same job
(no call). Each is a fresh interpreter, timed from start to exit; medians are reported.
Target: the re-run within LiteLLM's bare import time plus 1 s; the replay imports no
LiteLLM.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from llm_annotator.testing import FakeOpenAI, sampling_responder  # noqa: E402

ENV = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True", "PYTHONPATH": str(ROOT)}

#: Runs the CLI as ``llm-annotator`` does, then says whether LiteLLM was imported.
CLI = ("import sys; from llm_annotator.cli import main; code = main(sys.argv[1:]); "
       "print('litellm imported' if 'litellm' in sys.modules else 'litellm not imported'); sys.exit(code)")


def write_rows(path: Path, items: int, changed: str | None) -> None:
    with path.open("w", encoding="utf-8") as handle:
        handle.write("id,text\n")
        for i in range(items):
            text = f"benchmark sentence {i} with a few more words in it"
            handle.write(f"r{i},{changed if i == 0 and changed else text}\n")


def timed(command: list[str]) -> tuple[float, str]:
    started = time.perf_counter()
    proc = subprocess.run(command, capture_output=True, text=True, env=ENV)
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(command[:4])}... failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return seconds, proc.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args()
    figures: dict[str, list[float]] = {"import_litellm_s": [], "rerun_one_changed_row_s": [], "replay_s": []}
    imported: dict[str, list[bool]] = {"rerun": [], "replay": []}
    with tempfile.TemporaryDirectory() as tmp, FakeOpenAI(sampling_responder(["positive", "negative", "neutral"],
                                                                             "sentiment")) as server:
        data, out, cache = Path(tmp) / "items.csv", Path(tmp) / "run", Path(tmp) / "cache"
        job = [sys.executable, "-c", CLI, "annotate", str(data), "-t", "sentiment", "-m", "openai/fake", "--api-base",
               server.url, "--id-column", "id", "--out", str(out), "--cache-dir", str(cache), "--overwrite", "-q"]
        write_rows(data, args.items, None)
        timed(job)  # the first run: every answer in the cache and the run directory
        for run in range(args.runs):
            seconds, _ = timed([sys.executable, "-c", "import litellm"])
            figures["import_litellm_s"].append(seconds)
            write_rows(data, args.items, f"a changed row version {run}")
            calls = server.calls
            seconds, said = timed(job)
            assert server.calls - calls == 1, f"the re-run made {server.calls - calls} calls, not 1"
            figures["rerun_one_changed_row_s"].append(seconds)
            imported["rerun"].append("litellm imported" in said)
            calls = server.calls
            seconds, said = timed(job)
            assert server.calls == calls, "the replay made a call"
            figures["replay_s"].append(seconds)
            imported["replay"].append("litellm imported" in said)
            print(f"run {run}: import litellm {figures['import_litellm_s'][-1]:.2f} s, re-run "
                  f"{figures['rerun_one_changed_row_s'][-1]:.2f} s, replay {seconds:.2f} s", flush=True)
    medians = {name: statistics.median(values) for name, values in figures.items()}
    summary: dict[str, Any] = {"items": args.items, "runs": args.runs, "seconds": figures, "median_s": medians,
                               "rerun_over_import_s": medians["rerun_one_changed_row_s"] - medians["import_litellm_s"],
                               "replay_imports_litellm": any(imported["replay"]), "target_over_import_s": 1.0}
    print(f"median of {args.runs}: import litellm {medians['import_litellm_s']:.2f} s, re-run with one changed row "
          f"{medians['rerun_one_changed_row_s']:.2f} s ({summary['rerun_over_import_s']:+.2f} s; target <= +1.0 s), "
          f"replay {medians['replay_s']:.2f} s (LiteLLM imported: {summary['replay_imports_litellm']})")
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()

"""Peak memory of a streamed run against its item count.

    python benchmarks/stream_memory.py [--items 100000,1000000,3000000] [--json PATH]

For each size: a CSV of that many rows (the synthetic rows of ``run_all.py``) and an answer
cache holding every answer (written straight into the cache, chunk by chunk, with no HTTP);
then ``annotate_stream`` in a fresh interpreter replays the whole job from the cache into a
new run directory (reads, renders, indexes, replays, sums and writes labels). Its peak RSS
is the kernel's high-water mark (``VmHWM`` in ``/proc/self/status``). Target (issue 18):
flat in item count, 10 million rows peaking where 1 million do. Figures go to
``benchmarks/results/stream_memory.json``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

LABELS = ["positive", "negative", "neutral"]
OUT_JSON = ROOT / "benchmarks" / "results" / "stream_memory.json"
CHUNK = 50_000


def text(i: int) -> str:
    return f"benchmark sentence {i} with a few more words in it"


def prepare(items: int, data: Path, cache_dir: Path) -> None:
    """The input CSV and a cache with every answer of the job, a chunk at a time."""
    from llm_annotator.core.models import ModelSpec
    from llm_annotator.core.task import load_task
    from llm_annotator.engine.jobs import JobBuilder
    from llm_annotator.store.cache import AnswerCache

    builder = JobBuilder(load_task("sentiment"), [ModelSpec(model="openai/fake", api_base="http://127.0.0.1:9/v1")], 1)
    annotator = builder.annotators[0]
    cache = AnswerCache(cache_dir)
    with data.open("w", encoding="utf-8") as handle:
        handle.write("id,text\n")
        for start in range(0, items, CHUNK):
            chunk = [{"id": f"r{i}", "text": text(i)} for i in range(start, min(items, start + CHUNK))]
            handle.writelines(f"{row['id']},{row['text']}\n" for row in chunk)
            entries = []
            for row in chunk:
                found = builder.row_hashes(row, row["id"], "benchmark")
                entries.append((annotator.fingerprint(found[annotator.prompt], 0), {
                    "content": json.dumps({"sentiment": LABELS[int(row["id"][1:]) % 3]}), "distribution": None,
                    "finish_reason": "stop", "tokens_in": 12, "tokens_out": 5, "cost_usd": 0.0, "latency_s": 0.05}))
            cache.set_many(entries)
    cache.close()


def replay(items: int, data: Path, cache_dir: Path, out: Path) -> dict[str, Any]:
    """annotate_stream over the whole job in a fresh interpreter: its wall time and peak RSS."""
    code = (f"import time; t = time.perf_counter(); from llm_annotator import annotate_stream; "
            f"run = annotate_stream({str(data)!r}, 'sentiment', ['openai/fake'], api_base='http://127.0.0.1:9/v1', "
            f"cache={str(cache_dir)!r}, out={str(out)!r}, progress=False, id_column='id'); "
            f"assert run.manifest['counts']['valid'] == {items}, run.manifest['counts']; "
            f"print(time.perf_counter() - t); "
            "print([l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM')][0])")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    wall, peak_kb = proc.stdout.strip().splitlines()[-2:]
    return {"items": items, "peak_rss_mb": int(peak_kb) / 1024, "wall_s": float(wall),
            "items_per_s": items / float(wall)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", default="100000,1000000,3000000", help="comma-separated item counts")
    parser.add_argument("--json", type=Path, default=OUT_JSON)
    parser.add_argument("--tmp", type=Path, default=None, help="where the inputs, caches and runs go")
    args = parser.parse_args()
    sizes = [int(n) for n in args.items.split(",")]
    results = []
    with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
        for items in sizes:
            where = Path(tmp) / str(items)
            where.mkdir()
            started = time.perf_counter()
            prepare(items, where / "data.csv", where / "cache")
            prepared = time.perf_counter() - started
            found = replay(items, where / "data.csv", where / "cache", where / "run")
            found["prepare_s"] = prepared
            found["votes_jsonl_mb"] = (where / "run" / "votes.jsonl").stat().st_size / 1e6
            print(json.dumps(found), flush=True)
            results.append(found)
            shutil.rmtree(where)  # the next size needs the disk
    load = os.getloadavg()[0]
    report = {"command": "python benchmarks/stream_memory.py --items " + args.items,
              "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), "machine": platform.platform(),
              "cpus": os.cpu_count(), "python": platform.python_version(), "loadavg_1min_after": load,
              "streamed": results}
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()

"""Fault injection with SIGKILLs: the votes of a battered run equal an undisturbed one's.

    python benchmarks/faults.py [--items 2000] [--kills 10]

A loopback OpenAI-compatible server answers 10 % of requests with 429 (Retry-After),
5 % with a 5xx, 1 % slower than the client's timeout and 5 % with a truncated body;
5 % of items always get an answer outside the label set (an invalid vote, the same in
every run). One run goes undisturbed into its own cache; another is killed with SIGKILL
at random moments ``--kills`` times and restarted each time. Both are then run once
more (which retries any request that exhausted its retries). Counts: faults injected by
kind, kills, votes lost, duplicated and different, torn lines repaired.
Writes benchmarks/results/faults.json.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from llm_annotator.store.votelog import read_votes  # noqa: E402
from llm_annotator.testing import FakeOpenAI, Reply, user_text  # noqa: E402

LABELS = ["positive", "negative", "neutral"]


def make_responder(seed: int) -> tuple[object, Counter]:
    rng = random.Random(seed)
    lock = threading.Lock()
    injected: Counter = Counter()

    def respond(request):
        text = user_text(request)
        digest = int(hashlib.sha256(text.encode()).hexdigest()[:8], 16)
        with lock:
            roll = rng.random()
        if roll < 0.10:
            injected["429"] += 1
            return Reply(status=429, headers={"Retry-After": "0.05"})
        if roll < 0.15:
            injected["5xx"] += 1
            return Reply(status=rng.choice([500, 502, 503]))
        if roll < 0.16:
            injected["timeout"] += 1
            return Reply(content="late", delay=2.5)
        if roll < 0.21:
            injected["truncated body"] += 1
            return Reply(body=b'{"id": "x", "choices": [{"message": {"content": "{\\"senti')
        injected["ok"] += 1
        n = int(request.get("n") or 1)
        if digest % 20 == 0:
            return ['{"sentiment": "ecstatic"}'] * n
        return [json.dumps({"sentiment": LABELS[(digest >> k) % 3]}) for k in range(n)]

    return respond, injected


def command(data: Path, out: Path, url: str) -> list[str]:
    return [sys.executable, "-m", "llm_annotator", "annotate", str(data), "-t", "sentiment", "-m", "openai/fake",
            "--api-base", url, "--samples", "3", "--id-column", "id", "--out", str(out), "--concurrency", "32",
            "--timeout", "1", "-q"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=2000)
    parser.add_argument("--kills", type=int, default=10)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp())
    data = tmp / "data.csv"
    pd.DataFrame({"id": [f"i{n}" for n in range(args.items)],
                  "text": [f"item {n}: a short review" for n in range(args.items)]}).to_csv(data, index=False)
    respond, injected = make_responder(1)
    rng = random.Random(2)
    with FakeOpenAI(respond) as server:  # type: ignore[arg-type]
        clean_env = {**os.environ, "LLM_ANNOTATOR_CACHE_DIR": str(tmp / "cache-clean")}
        for _ in range(2):
            subprocess.run(command(data, tmp / "clean", server.url), env=clean_env, check=True, capture_output=True)
        env = {**os.environ, "LLM_ANNOTATOR_CACHE_DIR": str(tmp / "cache-killed")}
        kills = torn = 0
        started = time.perf_counter()
        while True:
            proc = subprocess.Popen(command(data, tmp / "killed", server.url), env=env,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                proc.wait(timeout=rng.uniform(2.0, 8.0) if kills < args.kills else 3600)
            except subprocess.TimeoutExpired:
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                kills += 1
                log = tmp / "killed" / "votes.jsonl"
                if log.exists() and log.stat().st_size and not log.read_bytes().endswith(b"\n"):
                    torn += 1
                continue
            if proc.returncode != 0:
                raise SystemExit("the restarted run failed")
            break
        subprocess.run(command(data, tmp / "killed", server.url), env=env, check=True, capture_output=True)
        killed_wall = time.perf_counter() - started
    cols = ("item_id", "sample_index", "label", "error")
    clean = {(v.item_id, v.sample_index): (v.label, v.error) for v in read_votes(tmp / "clean" / "votes.jsonl")}
    killed_list = list(read_votes(tmp / "killed" / "votes.jsonl"))
    killed = {(v.item_id, v.sample_index): (v.label, v.error) for v in killed_list}
    expected = {(f"i{n}", s) for n in range(args.items) for s in range(3)}
    report = {
        "items": args.items, "samples": 3, "votes_expected": len(expected),
        "faults_injected": dict(injected), "kills": kills, "torn_last_lines_seen_after_kills": torn,
        "votes_lost": len(expected - set(killed)), "votes_duplicated": len(killed_list) - len(killed),
        "votes_different_from_undisturbed_run": sum(clean.get(k) != killed.get(k) for k in expected),
        "invalid_votes (out of label set, by design)": sum(1 for v in killed.values() if v[1]),
        "killed_series_wall_s": killed_wall, "columns_compared": cols,
        "command": "python benchmarks/faults.py " + " ".join(sys.argv[1:]),
    }
    out = ROOT / "benchmarks" / "results" / "faults.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()

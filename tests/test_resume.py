"""A run killed with SIGKILL and started again ends with exactly the uninterrupted votes."""

import hashlib
import json
import os
import random
import signal
import subprocess
import sys

import pandas as pd
import pytest

from llm_annotator.core.errors import RunDirError
from llm_annotator.store.rundir import RunDir
from llm_annotator.store.votelog import VoteLog, read_votes
from llm_annotator.testing import user_text

LABELS = ["positive", "negative", "neutral"]


def deterministic(request):
    digest = int(hashlib.sha256(user_text(request).encode()).hexdigest()[:6], 16)
    return json.dumps({"sentiment": LABELS[digest % 3]})


def write_data(path, n):
    pd.DataFrame({"id": [f"r{i}" for i in range(n)],
                  "text": [f"review {i}: it was {'good' if i % 2 else 'bad'}" for i in range(n)]}).to_csv(path, index=False)


def command(data, out, url):
    return [sys.executable, "-m", "llm_annotator", "annotate", str(data), "-t", "sentiment", "-m", "openai/fake",
            "--api-base", url, "--samples", "3", "--id-column", "id", "--out", str(out), "--concurrency", "8", "-q"]


def test_sigkill_at_random_moments_loses_and_duplicates_nothing(fake_server, tmp_path):
    server = fake_server(deterministic, latency=0.01, honour_n=False)
    data = tmp_path / "reviews.csv"
    write_data(data, 400)
    env = {**os.environ, "LLM_ANNOTATOR_CACHE_DIR": str(tmp_path / "cache-killed")}
    out = tmp_path / "killed"
    rng = random.Random(7)
    kills = 0
    for attempt in range(7):
        proc = subprocess.Popen(command(data, out, server.url), env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            # five runs are killed at a random moment; the last ones may finish
            proc.wait(timeout=rng.uniform(2.0, 5.0) if attempt < 5 else 600)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            kills += 1
            continue
        assert proc.returncode == 0, proc.stderr.read().decode()
        break
    else:
        raise AssertionError("the run never finished")
    assert kills >= 2, "the job finished before it could be killed twice: make it longer"
    killed_requests = server.calls

    env_clean = {**os.environ, "LLM_ANNOTATOR_CACHE_DIR": str(tmp_path / "cache-clean")}
    clean = tmp_path / "clean"
    subprocess.run(command(data, clean, server.url), env=env_clean, check=True, capture_output=True)
    clean_requests = server.calls - killed_requests

    cols = ["item_id", "annotator", "sample_index", "label", "raw", "error"]
    got = pd.DataFrame([{c: getattr(v, c) for c in cols} for v in read_votes(out / "votes.jsonl")])
    want = pd.DataFrame([{c: getattr(v, c) for c in cols} for v in read_votes(clean / "votes.jsonl")])
    assert len(want) == 1200 and want["label"].notna().all()
    assert not got.duplicated(["item_id", "annotator", "sample_index"]).any()
    key = ["item_id", "sample_index"]
    pd.testing.assert_frame_equal(got.sort_values(key).reset_index(drop=True),
                                  want.sort_values(key).reset_index(drop=True))
    # paid answers are cached before their vote is written: a kill re-asks at most the calls in flight
    assert killed_requests <= clean_requests + kills * 8
    manifest = json.loads((out / "run.json").read_text())
    assert manifest["status"] == "complete" and manifest["counts"]["valid"] == 1200


def test_a_torn_last_line_is_repaired_on_resume(tmp_path):
    log = VoteLog(tmp_path / "votes.jsonl")
    log.open({})
    log.close()
    good = ('{"item_id":"a","annotator":"m","sample_index":0,"label":"x","error":null,"raw":"x",'
            '"distribution":null,"model":"m","prompt_hash":"p","template_hash":"t","tokens_in":1,'
            '"tokens_out":1,"cost_usd":0.0,"latency_s":0.1,"cached":false,"deployment":null,"fingerprint":"f"}\n')
    (tmp_path / "votes.jsonl").write_text(good + good.replace('"a"', '"b"')[:57])
    log = VoteLog(tmp_path / "votes.jsonl")
    kept = log.open({("a", "m", 0): "f", ("b", "m", 0): "f"})
    log.close()
    assert list(kept) == [("a", "m", 0)] and log.repaired
    assert (tmp_path / "votes.jsonl").read_text() == good


def test_a_second_writer_is_refused(tmp_path):
    first = RunDir(tmp_path).open()
    try:
        with pytest.raises(RunDirError, match="another process is annotating"):
            RunDir(tmp_path).open()
    finally:
        first.close()
    RunDir(tmp_path).open().close()  # free again once the first owner is done


def test_votes_file_never_breaks_reading_after_kills(tmp_path):
    # reading a file whose last line is torn yields only whole votes
    path = tmp_path / "votes.jsonl"
    path.write_text('{"item_id": "a"')
    assert list(read_votes(path)) == []


@pytest.mark.parametrize("stream", [False, True])
def test_resumed_votes_are_parsed_again_by_the_current_rules(fake_server, tmp_path, stream):
    """A vote recorded under other parsing rules (an older release, or before an alias was
    added) is judged again from its raw answer when the run resumes, in votes.jsonl too."""
    from llm_annotator import annotate, annotate_stream

    server = fake_server(lambda request: '{"sentiment": "positive"}')
    rows = [{"id": f"r{i}", "text": f"text {i}"} for i in range(4)]
    out = tmp_path / "run"
    run = annotate_stream if stream else annotate
    run(rows, "sentiment", ["openai/fake"], api_base=server.url, id_column="id", out=out, progress=False)
    lines = {v["item_id"]: v for v in map(json.loads, (out / "votes.jsonl").read_text().splitlines())}
    # as if an older parser had judged two answers otherwise: one refused, one accepted wrongly
    lines["r0"].update(label=None, error="out_of_label_set:positive")
    lines["r1"].update(raw='{"sentiment": "furious"}')
    (out / "votes.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines.values()))

    run(rows, "sentiment", ["openai/fake"], api_base=server.url, id_column="id", out=out, progress=False)
    assert server.calls == 4  # nothing asked again: the answers are there
    votes = {v.item_id: v for v in read_votes(out / "votes.jsonl")}
    assert votes["r0"].label == "positive" and votes["r0"].error is None
    assert votes["r1"].label is None and votes["r1"].error.startswith("out_of_label_set")
    labels = pd.read_csv(out / "labels.csv").set_index("item_id")
    assert labels.loc["r0", "label"] == "positive" and labels.loc["r1", "n_valid"] == 0

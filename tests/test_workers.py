"""One job in several processes (workers=N): the votes of one process, one run directory,
one budget; against the loopback OpenAI-compatible server."""

from __future__ import annotations

import hashlib
import json

import pandas as pd
import pytest

from llm_annotator import annotate, annotate_stream
from llm_annotator.core.errors import ConfigError
from llm_annotator.engine.workers import WORKER_VOTES
from llm_annotator.testing import user_text

LABELS = ["positive", "negative", "neutral"]
MODELS = ["openai/fake-a", {"model": "openai/fake-b", "temperature": 0.3}]


def answer(request):
    """One label per prompt and model: a vote that reaches the wrong item shows."""
    text = request["model"] + user_text(request)
    return json.dumps({"sentiment": LABELS[int(hashlib.sha256(text.encode()).hexdigest(), 16) % 3]})


def data(tmp_path, n=40):
    path = tmp_path / "data.csv"
    pd.DataFrame({"id": [f"s{i}" for i in range(n)], "text": [f"sentence {i} on topic {i % 7}" for i in range(n)]}
                 ).to_csv(path, index=False)
    return path


def votes_of(run):
    frame = pd.read_json(run / "votes.jsonl", lines=True)
    return frame[["item_id", "annotator", "sample_index", "label", "fingerprint", "raw"]].sort_values(
        ["item_id", "annotator", "sample_index"]).reset_index(drop=True)


@pytest.mark.parametrize("stream", [False, True])
def test_two_workers_give_the_votes_of_one_process(fake_server, tmp_path, stream):
    server = fake_server(answer)
    path = data(tmp_path)
    run = annotate_stream if stream else annotate
    options = dict(samples=2, id_column="id", api_base=server.url, api_key="sk-test", progress=False)
    one = run(str(path), "sentiment", MODELS, out=tmp_path / "one", cache=tmp_path / "c1", **options)
    calls = server.calls
    two = run(str(path), "sentiment", MODELS, out=tmp_path / "two", cache=tmp_path / "c2", workers=2, **options)
    assert server.calls == 2 * calls  # each request once: the workers split the items
    assert two.manifest["status"] == "complete" and two.manifest["counts"]["new"] == 160
    pd.testing.assert_frame_equal(votes_of(tmp_path / "one"), votes_of(tmp_path / "two"))
    a = pd.read_csv(tmp_path / "one" / "labels.csv").sort_values("id").reset_index(drop=True)
    b = pd.read_csv(tmp_path / "two" / "labels.csv").sort_values("id").reset_index(drop=True)
    pd.testing.assert_frame_equal(a, b)
    assert not list((tmp_path / "two").glob(WORKER_VOTES.format("*")))
    if not stream:
        assert sorted(two.votes["item_id"].unique()) == sorted(one.votes["item_id"].unique())
        pd.testing.assert_frame_equal(two.labels().sort_values("item_id").reset_index(drop=True),
                                      one.labels().sort_values("item_id").reset_index(drop=True))
    # a re-run of the job, in any number of processes, asks nothing
    again = run(str(path), "sentiment", MODELS, out=tmp_path / "two", cache=tmp_path / "c2", workers=3, **options)
    assert server.calls == 2 * calls and again.manifest["counts"]["resumed"] == 160


def test_the_workers_keep_one_budget(fake_server, tmp_path):
    server = fake_server(answer)
    path = data(tmp_path, 60)
    out = tmp_path / "run"
    priced = [{"model": "openai/fake-a", "price": [1000.0, 1000.0]}]  # dollars per million tokens
    result = annotate(str(path), "sentiment", priced, id_column="id", api_base=server.url, api_key="sk-test",
                      out=out, cache=False, budget_usd=0.5, concurrency=4, workers=2, progress=False)
    budget = result.manifest["budget"]
    ledger = sum(json.loads(line)["usd"] for line in (out / "ledger.jsonl").read_text().splitlines())
    assert budget["spent_usd"] <= 0.5 + 1e-9 and ledger <= 0.5 + 1e-9
    assert budget["spent_usd"] == pytest.approx(ledger)
    assert 0 < result.manifest["counts"]["valid"] < 60 and result.manifest["counts"]["not_issued"] > 0
    assert result.manifest["status"] != "complete"


def test_a_killed_runs_worker_votes_are_joined_not_asked_again(fake_server, tmp_path):
    server = fake_server(answer)
    path = data(tmp_path, 20)
    out = tmp_path / "run"
    options = dict(id_column="id", api_base=server.url, api_key="sk-test", progress=False, cache=False)
    annotate(str(path), "sentiment", MODELS, out=out, workers=2, **options)
    calls = server.calls
    lines = (out / "votes.jsonl").read_text().splitlines(keepends=True)
    # as a kill before the join leaves it: half the votes in a worker's file, the last line torn
    (out / "votes.jsonl").write_text("".join(lines[:20]))
    (out / WORKER_VOTES.format(1)).write_text("".join(lines[20:]) + lines[0][:30])
    result = annotate(str(path), "sentiment", MODELS, out=out, **options)
    assert server.calls == calls and result.manifest["counts"]["resumed"] == 40
    assert not (out / WORKER_VOTES.format(1)).exists() and len((out / "votes.jsonl").read_text().splitlines()) == 40


def test_workers_need_a_run_directory_and_live_calls(tmp_path):
    path = data(tmp_path, 3)
    with pytest.raises(ConfigError, match="run directory") as info:
        annotate(str(path), "sentiment", MODELS, workers=2, progress=False)
    assert "\n" not in str(info.value)
    with pytest.raises(ConfigError, match="batch"):
        annotate(str(path), "sentiment", MODELS, workers=2, batch=True, out=tmp_path / "b", progress=False)
    with pytest.raises(ConfigError, match="workers=0"):
        annotate(str(path), "sentiment", MODELS, workers=0, out=tmp_path / "z", progress=False)


def test_the_cli_runs_workers(fake_server, tmp_path):
    import os
    import subprocess
    import sys

    server = fake_server(answer)
    path = data(tmp_path, 10)
    out = tmp_path / "run"
    done = subprocess.run([sys.executable, "-m", "llm_annotator", "annotate", str(path), "-t", "sentiment",
                           "-m", "openai/fake-a", "--api-base", server.url, "--id-column", "id", "--out", str(out),
                           "--workers", "2", "--no-cache"],
                          capture_output=True, text=True, timeout=300, env={**os.environ, "OPENAI_API_KEY": "sk-x"})
    assert done.returncode == 0, done.stderr
    assert len((out / "votes.jsonl").read_text().splitlines()) == 10 and server.calls == 10



def test_the_parent_of_workers_leaves_litellm_to_them(fake_server, tmp_path):
    """Each worker imports LiteLLM for its calls; the parent, which makes none, does not
    spend a core importing it too (it did with --no-cache --overwrite)."""
    import os
    import subprocess
    import sys

    server = fake_server(answer)
    code = (f"import sys; from llm_annotator import annotate; "
            f"r = annotate({str(data(tmp_path, 6))!r}, 'sentiment', ['openai/fake-a'], api_base={server.url!r}, "
            f"id_column='id', cache=False, out={str(tmp_path / 'run')!r}, overwrite=True, workers=2, progress=False); "
            "print(r.manifest['counts']['valid'], 'litellm' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OPENAI_API_KEY": "sk-x"})
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["6", "False"] and server.calls == 6

"""Provider batch jobs against a loopback server that implements the files and batches API."""

import hashlib
import json
import os
import re
import subprocess
import sys

import pandas as pd
import pytest

from llm_annotator import annotate
from llm_annotator.api import collect
from llm_annotator.core.errors import ConfigError
from llm_annotator.engine import batch
from llm_annotator.store.batch_state import BatchState, custom_id, parse_custom_id
from llm_annotator.store.votelog import read_votes
from llm_annotator.testing import Reply, user_text

LABELS = ["positive", "negative", "neutral"]
CANARY = "sk-canary-batch-0123456789abcdef"


def expected(text: str) -> str:
    """The one label the server gives a prompt: a join that mixes requests up shows."""
    return LABELS[int(hashlib.sha256(text.encode()).hexdigest(), 16) % 3]


def answer(request):
    return json.dumps({"sentiment": expected(user_text(request))})


def write_data(path, n):
    pd.DataFrame({"id": [f"s{i}" for i in range(n)], "text": [f"sentence {i} on topic {i % 5}" for i in range(n)]}
                 ).to_csv(path, index=False)
    return path


def cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "llm_annotator", *map(str, args)], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=300)


def prompt_label(vote, rows):
    return expected(next(r for r in rows if r["id"] == vote.item_id)["prompt"])


def test_custom_ids_round_trip_item_ids_with_bars():
    cid = custom_id("a|b|c", "gpt-4o", [0, 2, 5])
    assert parse_custom_id(cid) == ("a|b|c", "gpt-4o", [0, 2, 5])


def test_submit_poll_collect_joins_every_answer_to_its_own_request(fake_server, tmp_path, monkeypatch):
    monkeypatch.setattr(batch, "MAX_REQUESTS", 7)  # 20 requests -> 3 batches, each answered in reverse order
    server = fake_server(answer)
    rows = [{"id": f"s{i}", "text": f"sentence {i} on topic {i % 5}"} for i in range(20)]
    out = tmp_path / "run"
    submitted = annotate(rows, "sentiment", ["openai/fake"], samples=3, api_base=server.url, id_column="id",
                         out=out, batch=True, progress=False)
    assert submitted.manifest["status"] == "batch_pending" and server.calls == 0
    assert submitted.manifest["counts"]["in_batch"] == 60 and len(submitted.votes) == 0
    assert [b["requests"] for b in submitted.manifest["batches"]] == [7, 7, 6]
    lines = [json.loads(x) for f in sorted((out / "batch").iterdir()) for x in f.read_text().splitlines()]
    assert lines[0]["body"]["n"] == 3 and lines[0]["body"]["response_format"]["type"] == "json_schema"
    assert len({line["custom_id"] for line in lines}) == 20

    pending = collect(out, data=rows, progress=False)  # validating -> in_progress: nothing to collect yet
    assert pending.manifest["status"] == "batch_pending" and len(pending.votes) == 0

    done = collect(out, data=rows, wait=True, poll_s=0.01, progress=False)
    assert done.manifest["status"] == "complete" and done.manifest["counts"]["new"] == 60
    texts = {v["custom_id"].split("|")[0]: user_text(v["body"]) for v in lines}
    votes = list(read_votes(out / "votes.jsonl"))
    assert len(votes) == 60 and all(v.label == expected(texts[v.item_id]) for v in votes)
    assert not any(v.cached for v in votes)
    assert (out / "labels.csv").exists() and json.loads((out / "run.json").read_text())["status"] == "complete"

    # Every collected answer is in the cache: a live run of the same job asks nothing.
    calls = server.calls
    live = annotate(rows, "sentiment", ["openai/fake"], samples=3, api_base=server.url, id_column="id",
                    out=tmp_path / "live", progress=False)
    assert server.calls == calls and live.manifest["counts"]["cache_hits"] == 60
    assert live.labels()["label"].tolist() == done.labels()["label"].tolist()


def test_a_kill_between_submit_and_collect_and_the_cli(fake_server, tmp_path, isolated_cache):
    server = fake_server(answer)
    server.hold_batches = True
    data = write_data(tmp_path / "d.csv", 12)
    out = tmp_path / "run"
    env = {"OPENAI_API_KEY": CANARY, "LLM_ANNOTATOR_CACHE_DIR": str(isolated_cache)}
    submit = cli("annotate", data, "-t", "sentiment", "-m", "openai/fake", "--api-base", server.url, "-k", "2",
                 "--id-column", "id", "--out", out, "--batch", env=env)
    assert submit.returncode == 0, submit.stderr
    assert "24 votes wait in 1 batch job(s)" in submit.stdout and "batch collect" in submit.stdout

    # The submitting process is gone; another one finds the batch from the run directory alone.
    status = cli("batch", "status", out, env=env)
    assert status.returncode == 0 and "in_progress" in status.stdout, status.stderr
    early = cli("batch", "collect", out, "-q", env=env)
    assert early.returncode == 0 and "24 votes wait" in early.stdout
    assert (out / "votes.jsonl").read_text() == ""

    # A live run into the same directory does not ask again what the running batch was asked.
    live = cli("annotate", data, "-t", "sentiment", "-m", "openai/fake", "--api-base", server.url, "-k", "2",
               "--id-column", "id", "--out", out, "-q", env=env)
    assert live.returncode == 0 and server.calls == 0 and "24 votes wait" in live.stdout

    server.hold_batches = False
    final = cli("batch", "collect", out, "--wait", "--poll", "0.01", "-q", env=env)
    assert final.returncode == 0, final.stderr
    assert "24 valid votes" in final.stdout
    report = cli("report", out, env=env)
    assert report.returncode == 0
    # The key went to the server on every files/batches call, and nowhere else.
    assert all(h.get("authorization") == f"Bearer {CANARY}" for h in server.headers_seen)
    leaks = [p for p in [*out.rglob("*"), *isolated_cache.rglob("*")] if p.is_file() and CANARY.encode() in p.read_bytes()]
    assert not leaks
    assert CANARY not in "".join(p.stdout + p.stderr for p in (submit, status, early, live, final, report))


def test_failed_lines_become_retryable_votes_and_only_they_are_resubmitted(fake_server, tmp_path):
    broken = {"on": True}

    def respond(request):
        text = user_text(request)
        if broken["on"] and int(re.search(r"sentence (\d+)", text).group(1)) % 4 == 0:
            return Reply(status=500)
        return answer(request)

    server = fake_server(respond)
    rows = [{"id": f"s{i}", "text": f"sentence {i} on topic {i % 5}"} for i in range(16)]
    out = tmp_path / "run"
    options = {"samples": 2, "api_base": server.url, "id_column": "id", "out": out, "progress": False}
    annotate(rows, "sentiment", ["openai/fake"], batch=True, **options)
    partial = collect(out, data=rows, wait=True, poll_s=0.01, progress=False)
    votes = partial.votes.set_index("item_id")
    failed = sorted({i for i in votes.index if votes.loc[i, "error"].astype(str).str.startswith("batch_failed").all()})
    assert failed == ["s0", "s12", "s4", "s8"]
    assert votes.loc[failed, "label"].isna().all() and votes.drop(failed)["label"].notna().all()
    assert partial.manifest["counts"]["errors"] == 8 and partial.manifest["counts"]["valid"] == 24

    broken["on"] = False
    again = annotate(rows, "sentiment", ["openai/fake"], batch=True, **options)
    second = BatchState.load(out).batches[-1]
    assert second["requests"] == 4 and again.manifest["counts"]["resumed"] == 24
    complete = collect(out, data=rows, wait=True, poll_s=0.01, progress=False)
    assert complete.manifest["status"] == "complete" and complete.votes["label"].notna().all()
    assert len(complete.votes) == 32


def test_an_expired_batch_keeps_its_answers_and_the_rest_are_asked_again(fake_server, tmp_path):
    server = fake_server(answer)
    server.expire_batches = True
    rows = [{"id": f"s{i}", "text": f"sentence {i}"} for i in range(10)]
    out = tmp_path / "run"
    annotate(rows, "sentiment", ["openai/fake"], samples=1, api_base=server.url, id_column="id", out=out,
             batch=True, progress=False)
    result = collect(out, data=rows, wait=True, poll_s=0.01, progress=False)
    assert result.votes["label"].notna().sum() == 5
    assert result.votes["error"].dropna().str.startswith("batch_failed: batch_expired").sum() == 5
    server.expire_batches = False
    before = server.calls
    live = annotate(rows, "sentiment", ["openai/fake"], samples=1, api_base=server.url, id_column="id", out=out,
                    progress=False)
    assert server.calls - before == 5 and live.votes["label"].notna().all()


def test_an_interrupted_submission_is_adopted_or_abandoned(fake_server, tmp_path):
    server = fake_server(answer)
    rows = [{"id": f"s{i}", "text": f"sentence {i}"} for i in range(6)]
    out = tmp_path / "run"
    options = {"samples": 1, "api_base": server.url, "id_column": "id", "out": out, "progress": False}
    annotate(rows, "sentiment", ["openai/fake"], batch=True, **options)
    state = BatchState.load(out)
    # As if killed after the upload, before the batch id was recorded (it was created) ...
    state.batches[0].update(id=None, status="submitting")
    # ... and, a second time, before the upload finished (nothing exists on the provider).
    state.batches.append({**state.batches[0], "id": None, "status": "uploading", "input_file_id": None})
    state.save()
    result = collect(out, data=rows, wait=True, poll_s=0.01, progress=False)
    batches = BatchState.load(out).batches
    assert batches[0]["id"] is not None and batches[0]["collected"] and batches[1]["status"] == "abandoned"
    assert result.manifest["status"] == "complete" and len(server.batches) == 1


def test_batch_cost_is_the_batch_price(fake_server, tmp_path):
    from llm_annotator.providers import pricing

    server = fake_server(answer)
    rows = [{"id": f"s{i}", "text": f"sentence {i}"} for i in range(4)]
    out = tmp_path / "run"
    annotate(rows, "sentiment", ["openai/gpt-4o"], samples=1, api_base=server.url, api_key="sk-test",
             id_column="id", out=out, batch=True, progress=False)
    result = collect(out, data=rows, api_key="sk-test", wait=True, poll_s=0.01, progress=False)
    vote = result.votes.iloc[0]
    live = pricing.price("openai/gpt-4o", int(vote["tokens_in"]), int(vote["tokens_out"]))
    assert vote["cost_usd"] == pytest.approx(live / 2) and vote["cost_usd"] > 0
    assert result.manifest["cost_usd"] == pytest.approx(result.votes["cost_usd"].sum())


@pytest.mark.parametrize("models, options, message", [
    (["local/smollm2-135m"], {}, "the embedded model has no batch API"),
    (["anthropic/claude-sonnet-4-5"], {}, "supported for OpenAI and Azure"),
    (["openai/fake"], {"out": None}, "needs a run directory"),
    (["openai/fake"], {"cache": False}, "needs the answer cache"),
])
def test_batch_refusals_are_clear(tmp_path, models, options, message):
    kwargs = {"out": tmp_path / "run", "api_base": "http://127.0.0.1:9/v1", **options}
    with pytest.raises(ConfigError, match=message):
        annotate([{"text": "a"}], "sentiment", models, batch=True, progress=False, **kwargs)
    assert not (tmp_path / "run").exists()

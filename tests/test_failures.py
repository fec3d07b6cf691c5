"""A run that failed says so: its status, the exit code, and the reasons on the terminal."""

import json
import os
import socket
import subprocess
import sys
import time

import pandas as pd
import pytest

from llm_annotator import annotate
from llm_annotator.core.errors import ErrorKind
from llm_annotator.testing import Reply, sampling_responder, user_text

LABELS = ["positive", "negative", "neutral"]


def cli(*args, env=None, prelude=None):
    """The CLI in a real process; ``prelude`` is Python run first (to hide a package)."""
    code = (prelude or "") + "\nimport sys\nfrom llm_annotator.cli import main\nsys.exit(main(sys.argv[1:]))"
    return subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=300)


@pytest.fixture
def table(tmp_path):
    path = tmp_path / "items.csv"
    pd.DataFrame({"id": [f"r{i}" for i in range(6)], "text": [f"text {i}" for i in range(6)]}).to_csv(path, index=False)
    return path


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_json(out):
    return json.loads((out / "run.json").read_text())


def test_every_answer_outside_the_label_set_is_a_failed_run_that_says_to_check_the_labels(fake_server, table,
                                                                                          tmp_path):
    server = fake_server(lambda request: '{"sentiment": "furious"}')
    out = tmp_path / "run"
    proc = cli("annotate", table, "-t", "sentiment", "-m", "openai/fake", "--api-base", server.url,
               "--id-column", "id", "--out", out)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert run_json(out)["status"] == "failed"
    assert "run failed" in proc.stderr and "out_of_label_set" in proc.stderr
    assert "furious" in proc.stderr  # an example answer
    assert "label set" in proc.stderr  # the fix names the label set


def test_some_failed_requests_make_a_partial_run_and_a_rerun_finishes_it(fake_server, table, tmp_path):
    broken = {"r1", "r4"}

    def respond(request):
        if any(f"text {i[1]}" in user_text(request) for i in broken):
            return Reply(status=500, body=b'{"error": {"message": "boom"}}')
        return '{"sentiment": "neutral"}'

    server = fake_server(respond)
    out = tmp_path / "run"
    args = ("annotate", table, "-t", "sentiment", "-m", "openai/fake", "--api-base", server.url, "--id-column", "id",
            "--out", out)
    proc = cli(*args, "--max-retries", "0")
    assert proc.returncode == 4, proc.stdout + proc.stderr
    manifest = run_json(out)
    assert manifest["status"] == "partial" and manifest["counts"]["errors"] == 2
    assert "server_error" in proc.stderr and "boom" in proc.stderr and "re-run" in proc.stderr

    server.respond = lambda request: '{"sentiment": "neutral"}'
    proc = cli(*args)
    assert proc.returncode == 0, proc.stderr
    assert run_json(out)["status"] == "complete"
    counts = run_json(out)["counts"]
    assert (counts["failed_before"], counts["stale_dropped"]) == (2, 0)  # the true reason they were asked again
    assert "2 votes that failed in an earlier run were asked again" in proc.stdout
    assert "other parameters" not in proc.stdout


def test_an_unreachable_endpoint_is_found_before_the_job_starts(table, tmp_path):
    out = tmp_path / "run"
    started = time.monotonic()
    proc = cli("annotate", table, "-t", "sentiment", "-m", "openai/fake", "--api-base",
               f"http://127.0.0.1:{closed_port()}/v1", "--id-column", "id", "--out", out)
    assert time.monotonic() - started < 30
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "cannot reach" in proc.stderr and "--api-base" in proc.stderr
    assert not out.exists()  # nothing half-written


def test_a_core_install_without_llama_cpp_says_which_extra_before_any_retry(table, tmp_path):
    out = tmp_path / "run"
    started = time.monotonic()
    proc = cli("annotate", table, "-t", "sentiment", "--id-column", "id", "--out", out,
               prelude="import sys\nsys.modules['llama_cpp'] = None")
    assert time.monotonic() - started < 30
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "llm-annotator-kit[local]" in proc.stderr
    assert not out.exists()


@pytest.mark.parametrize("status, kind", [(404, ErrorKind.NOT_FOUND), (400, ErrorKind.BAD_REQUEST)])
def test_an_error_that_cannot_succeed_stops_the_run_early(fake_server, tmp_path, status, kind):
    server = fake_server(lambda request: Reply(status=status, body=json.dumps(
        {"error": {"message": f"the model `fake` does not exist ({status})", "type": "invalid_request_error"}}
    ).encode()))
    rows = [{"id": f"r{i}", "text": f"text {i}"} for i in range(40)]
    result = annotate(rows, "sentiment", [{"model": "openai/fake", "concurrency": 2}], api_base=server.url,
                      id_column="id", out=tmp_path / "run", progress=False)
    assert server.calls <= 4  # not 40 items x retries
    assert result.manifest["status"] == "failed"
    assert result.manifest["counts"]["stopped"] >= 36
    failure = result.manifest["failures"][0]
    assert failure["kind"] == kind.value and "does not exist" in failure["example"]


def test_the_library_warns_about_a_failed_run(fake_server, tmp_path):
    server = fake_server(lambda request: '{"sentiment": "furious"}')
    with pytest.warns(UserWarning, match="run failed.*out_of_label_set"):
        result = annotate([{"text": "a"}, {"text": "b"}], "sentiment", ["openai/fake"], api_base=server.url,
                          progress=False)
    assert result.manifest["status"] == "failed"


def test_a_complete_run_exits_0_and_names_no_failure(fake_server, table, tmp_path):
    server = fake_server(sampling_responder(LABELS, "sentiment"))
    proc = cli("annotate", table, "-t", "sentiment", "-m", "openai/fake", "--api-base", server.url,
               "--id-column", "id", "--out", tmp_path / "run")
    assert proc.returncode == 0, proc.stderr
    assert run_json(tmp_path / "run")["status"] == "complete"
    assert "run failed" not in proc.stderr and "partial" not in proc.stderr


def test_exit_codes_are_documented():
    from llm_annotator.cli import build_parser

    sub = build_parser()._subparsers._group_actions[0].choices["annotate"]  # type: ignore[union-attr]
    help_text = sub.format_help()
    for status, code in [("partial", 4), ("failed", 3), ("stopped_by_budget", 5)]:
        assert f"{code}" in help_text and status in help_text


def test_a_cache_that_cannot_store_loses_no_paid_answer(fake_server, tmp_path, monkeypatch):
    import sqlite3

    from llm_annotator.store.cache import AnswerCache

    def full(self, entries):
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(AnswerCache, "set_many", full)
    server = fake_server(sampling_responder(LABELS, "sentiment"))
    out = tmp_path / "run"
    rows = [{"id": f"r{i}", "text": f"text {i}"} for i in range(5)]
    with pytest.warns(UserWarning, match="cache"):
        result = annotate(rows, "sentiment", ["openai/fake"], api_base=server.url, id_column="id", out=out,
                          progress=False)
    assert result.votes["label"].notna().all() and server.calls == 5
    assert result.manifest["status"] == "complete" and result.manifest["counts"]["cache_write_failed"] == 5
    assert len((out / "votes.jsonl").read_text().splitlines()) == 5  # every paid answer is in the log
    again = annotate(rows, "sentiment", ["openai/fake"], api_base=server.url, id_column="id", out=out, progress=False)
    assert server.calls == 5 and again.votes["label"].notna().all()  # resumed from the log, not asked again


def test_a_key_revoked_mid_run_ends_failed_with_the_paid_answers_written(fake_server, table, tmp_path):
    answered = []

    def respond(request):
        if len(answered) >= 2:
            return Reply(status=401, body=b'{"error": {"message": "key revoked"}}')
        answered.append(1)
        return '{"sentiment": "neutral"}'

    server = fake_server(respond)
    out = tmp_path / "run"
    args = ("annotate", table, "-t", "sentiment", "-m", "openai/fake", "--api-base", server.url, "--id-column", "id",
            "--out", out, "--concurrency", "1")
    proc = cli(*args)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    manifest = run_json(out)
    assert manifest["status"] == "failed" and manifest["counts"]["valid"] == 2 and manifest["counts"]["stopped"] == 3
    assert "refused the credentials" in proc.stderr and "API key" in proc.stderr
    assert len(pd.read_csv(out / "labels.csv")) == 6 and server.calls == 3  # not asked again after the 401

    server.respond = lambda request: '{"sentiment": "neutral"}'  # a working key again: only the rest is asked
    assert cli(*args).returncode == 0 and server.calls == 3 + 4 and run_json(out)["status"] == "complete"


def test_an_annotator_without_a_single_valid_answer_fails_the_run(fake_server, table, tmp_path):
    good = fake_server(lambda request: '{"sentiment": "neutral"}')
    bad = fake_server(lambda request: '{"sentiment": "furious"}')
    models = [{"model": "openai/fake", "name": "good", "api_base": good.url},
              {"model": "openai/fake", "name": "bad", "api_base": bad.url}]
    with pytest.warns(UserWarning, match=r"run failed: 6 of 12 votes valid \(bad gave none\)"):
        result = annotate(table, "sentiment", models, id_column="id", out=tmp_path / "run", progress=False)
    assert result.manifest["status"] == "failed"
    assert result.manifest["counts"]["valid_by_annotator"] == {"good": 6, "bad": 0}


def test_a_shard_without_items_is_complete(fake_server, tmp_path):
    server = fake_server(lambda request: '{"sentiment": "neutral"}')
    rows = [{"id": "only", "text": "one row"}]
    statuses = {annotate(rows, "sentiment", ["openai/fake"], api_base=server.url, id_column="id", shard=f"{i}/4",
                         progress=False).manifest["status"] for i in range(4)}
    assert statuses == {"complete"}

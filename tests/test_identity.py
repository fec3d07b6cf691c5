"""What an answer is (everything that can change it) and what a job is (what a run directory holds)."""

import json
import os
import subprocess
import sys
import threading

import pandas as pd
import pytest

from llm_annotator import RunDirError, annotate
from llm_annotator.testing import schema_labels
from tests.conftest import sentences

KEY = "sk-test"


def always(label):
    return lambda request: json.dumps({"sentiment": label})


def cli(*args, timeout=120):
    return subprocess.run([sys.executable, "-m", "llm_annotator", *args], capture_output=True, text=True,
                          env=dict(os.environ), timeout=timeout)


# -- an answer: the endpoint and every decoding parameter are part of it ------------------------

def test_the_endpoint_from_the_environment_is_part_of_an_answer(fake_server, monkeypatch):
    a = fake_server(always("positive"))
    b = fake_server(always("negative"))
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    monkeypatch.setenv("OPENAI_API_BASE", a.url)
    first = annotate(sentences(6), "sentiment", ["openai/fake"], api_key=KEY, progress=False)
    assert a.calls == 6 and first.votes["label"].eq("positive").all()
    monkeypatch.setenv("OPENAI_API_BASE", b.url)
    second = annotate(sentences(6), "sentiment", ["openai/fake"], api_key=KEY, progress=False)
    assert b.calls == 6, "answers of another endpoint were replayed from the cache"
    assert second.votes["label"].eq("negative").all()
    assert a.calls == 6


def _has_schema(request):
    return "response_format" in request and bool(schema_labels(request))


# (first run's options, second run's options, what the second run's requests carry)
CHANGES = {
    "temperature": ({"temperature": 1.0}, {"temperature": 0.3},
                    lambda r: r["temperature"] == 0.3),
    "max_tokens": ({}, {"max_tokens": 50},
                   lambda r: r["max_tokens"] == 50),
    "top_p": ({"models": [{"model": "openai/fake"}]},
              {"models": [{"model": "openai/fake", "top_p": 0.5}]},
              lambda r: r["top_p"] == 0.5),
    "seed": ({"models": [{"model": "openai/fake", "extra": {"seed": 1}}]},
             {"models": [{"model": "openai/fake", "extra": {"seed": 2}}]},
             lambda r: r["seed"] == 2),
    "json_schema": ({"models": [{"model": "openai/fake", "json_schema": True}]},
                    {"models": [{"model": "openai/fake", "json_schema": False}]},
                    lambda r: "response_format" not in r),
    "api_base": ({}, {"api_base": "SECOND"},
                 lambda r: True),
}


@pytest.mark.parametrize("change", list(CHANGES))
def test_a_changed_decoding_parameter_asks_every_vote_again(fake_server, tmp_path, change):
    first_options, second_options, carries = CHANGES[change]
    server = fake_server(always("neutral"))
    other = fake_server(always("neutral"))
    out = tmp_path / "run"
    rows = sentences(6)

    def run(options):
        options = dict(options)
        models = options.pop("models", ["openai/fake"])
        api_base = other.url if options.pop("api_base", None) == "SECOND" else server.url
        return annotate(rows, "sentiment", models, api_base=api_base, api_key=KEY, id_column="id",
                        out=out, progress=False, **options)

    run(first_options)
    assert server.calls == 6
    if change == "json_schema":
        assert _has_schema(server.requests[-1])
    serving = other if change == "api_base" else server
    before = serving.calls
    second = run(second_options)
    assert serving.calls == before + 6, f"a changed {change} replayed {6 - (serving.calls - before)} old votes"
    assert all(carries(r) for r in serving.requests[before:]), serving.requests[-1]
    assert second.manifest["counts"]["resumed"] == 0
    calls = server.calls + other.calls
    third = run(second_options)
    assert server.calls + other.calls == calls  # the same job again: replayed
    assert third.manifest["counts"]["resumed"] == 6


def test_a_changed_annotator_re_asks_only_its_own_votes(fake_server, tmp_path):
    server = fake_server(always("neutral"))
    out = tmp_path / "run"

    def run(temperature_b):
        models = [{"model": "openai/fake", "name": "a", "temperature": 1.0},
                  {"model": "openai/fake", "name": "b", "temperature": temperature_b}]
        return annotate(sentences(6), "sentiment", models, api_base=server.url, api_key=KEY,
                        id_column="id", out=out, progress=False)

    run(1.0)
    assert server.calls == 6  # a and b ask the same questions while they are the same but for the name
    second = run(0.3)
    votes_b = int((second.votes["annotator"] == "b").sum())
    assert votes_b == 6
    assert server.calls == 6 + votes_b, f"{server.calls - 6} calls for {votes_b} changed votes"
    assert all(r["temperature"] == 0.3 for r in server.requests[6:])
    assert second.manifest["counts"]["resumed"] == 6  # a's votes
    assert second.manifest["counts"]["new"] == votes_b


# -- a job: a run directory holds one ------------------------------------------------------------

OTHER_ROWS = [{"id": f"t{i}", "text": f"another line {i} entirely"} for i in range(8)]

ANOTHER_JOB = {
    "other_input": {"rows": OTHER_ROWS},
    "subset": {"rows": sentences(8)[:4]},
    "shard": {"shard": "0/2"},
    "samples": {"samples": 2},
}


@pytest.mark.parametrize("variant", list(ANOTHER_JOB))
def test_another_job_into_the_same_directory_is_refused_before_any_call(fake_server, tmp_path, variant):
    server = fake_server(always("positive"))
    out = tmp_path / "run"

    def run(rows, **options):
        return annotate(rows, "sentiment", ["openai/fake"], api_base=server.url, api_key=KEY,
                        id_column="id", out=out, progress=False, **options)

    run(sentences(8))
    before = (out / "votes.jsonl").read_bytes()
    calls = server.calls
    options = dict(ANOTHER_JOB[variant])
    rows = options.pop("rows", sentences(8))
    with pytest.raises(RunDirError, match="overwrite") as caught:
        run(rows, **options)
    assert str(out) in str(caught.value)
    assert server.calls == calls
    assert (out / "votes.jsonl").read_bytes() == before

    replaced = run(OTHER_ROWS, overwrite=True)
    ids = {json.loads(line)["item_id"] for line in (out / "votes.jsonl").read_text().splitlines()}
    assert ids == {row["id"] for row in OTHER_ROWS}
    assert replaced.manifest["counts"]["votes"] == 8 and replaced.manifest["status"] == "complete"


def test_the_cli_refuses_another_job_in_one_line_and_overwrites_when_told(fake_server, tmp_path):
    server = fake_server(always("positive"))
    first, second = tmp_path / "a.csv", tmp_path / "b.csv"
    pd.DataFrame(sentences(8)).to_csv(first, index=False)
    pd.DataFrame(OTHER_ROWS).to_csv(second, index=False)
    out = tmp_path / "run"
    annotate(str(first), "sentiment", ["openai/fake"], api_base=server.url, api_key=KEY, id_column="id",
             out=out, progress=False)
    before = (out / "votes.jsonl").read_bytes()
    calls = server.calls
    args = ["annotate", str(second), "-t", "sentiment", "-m", "openai/fake", "--api-base", server.url,
            "--id-column", "id", "--out", str(out), "-q"]
    refused = cli(*args)
    assert refused.returncode == 2, refused.stderr
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1 and "--overwrite" in lines[0] and str(out) in lines[0], refused.stderr
    assert server.calls == calls and (out / "votes.jsonl").read_bytes() == before
    done = cli(*args, "--overwrite")
    assert done.returncode == 0, done.stderr
    ids = {json.loads(line)["item_id"] for line in (out / "votes.jsonl").read_text().splitlines()}
    assert ids == {row["id"] for row in OTHER_ROWS}


def test_the_lock_covers_every_file_of_the_run(fake_server, tmp_path, monkeypatch):
    import llm_annotator.outputs.result as result_module

    server = fake_server(always("positive"))
    data = tmp_path / "data.csv"
    pd.DataFrame(sentences(8)).to_csv(data, index=False)
    out = tmp_path / "run"
    real = result_module.write_csv_rows
    seen: dict[str, object] = {}

    def racing(*args, **kwargs):
        if not seen:  # while process A writes labels.csv, process B starts the same job
            proc = cli("annotate", str(data), "-t", "sentiment", "-m", "openai/fake", "--api-base", server.url,
                       "--id-column", "id", "--out", str(out), "-q", timeout=60)
            seen["rc"], seen["stderr"] = proc.returncode, proc.stderr
        return real(*args, **kwargs)

    monkeypatch.setattr(result_module, "write_csv_rows", racing)
    failure = None
    try:
        annotate(str(data), "sentiment", ["openai/fake"], api_base=server.url, api_key=KEY, id_column="id",
                 out=out, progress=False)
    except RunDirError as exc:  # reported after what process B did
        failure = exc
    assert seen, "labels.csv was never written"
    assert seen["rc"] == 2, f"process B was let in while A wrote its files: rc {seen['rc']} {seen['stderr']}"
    assert "another process" in str(seen["stderr"])
    assert failure is None, f"process A failed: {failure}"
    manifest = json.loads((out / "run.json").read_text())
    lines = (out / "votes.jsonl").read_text().splitlines()
    assert manifest["counts"]["votes"] == len(lines) == 8


def test_write_atomic_from_many_threads_on_one_path(tmp_path):
    from llm_annotator.store.files import write_atomic

    path = tmp_path / "run.json"
    for round_ in range(20):
        texts = [f"{round_}:{n}:" + str(n) * 200_000 + "\n" for n in range(8)]
        barrier = threading.Barrier(len(texts))
        errors: list[BaseException] = []

        def write(text, barrier=barrier, errors=errors):
            barrier.wait()
            try:
                write_atomic(path, text)
            except BaseException as exc:  # every failure is reported below
                errors.append(exc)

        threads = [threading.Thread(target=write, args=(text,)) for text in texts]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert not errors, f"round {round_}: {errors[0]!r}"
        assert path.read_text() in texts, f"round {round_}: the file holds a mix of writes"
        assert not [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


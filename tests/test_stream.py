"""Corpora larger than memory: streamed input, votes on disk, the same run directory."""

import gzip
import json
import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest

from llm_annotator import annotate, annotate_stream
from llm_annotator.core.errors import ConfigError, DataError
from llm_annotator.store.votelog import read_votes
from llm_annotator.testing import sampling_responder

LABELS = ["positive", "negative", "neutral"]
MODELS = ["openai/fake", {"model": "openai/fake", "name": "cool", "temperature": 0.3}]


def table(n):
    return pd.DataFrame({"id": [f"s{i}" for i in range(n)],
                         "text": [f"sentence {i} on topic {i % 5}" for i in range(n)],
                         "note": ["=HYPERLINK(1)" if i % 9 == 0 else f"n{i}" for i in range(n)]})


def votes_of(run):
    return sorted((v.item_id, v.annotator, v.sample_index, v.label, v.raw, v.prompt_hash)
                  for v in read_votes(run / "votes.jsonl"))


def test_a_streamed_run_writes_what_an_in_memory_run_writes(fake_server, tmp_path):
    server = fake_server(sampling_responder(LABELS, "sentiment"))
    data = tmp_path / "d.csv"
    table(95).to_csv(data, index=False)
    options = {"samples": 3, "api_base": server.url, "id_column": "id", "progress": False}
    streamed = annotate_stream(data, "sentiment", MODELS, out=tmp_path / "s", chunk_rows=7, **options)
    assert streamed.manifest["status"] == "complete" and streamed.manifest["counts"]["new"] == 570
    calls = server.calls
    whole = annotate(data, "sentiment", MODELS, out=tmp_path / "m", **options)  # same cache: same answers
    assert server.calls == calls
    assert votes_of(tmp_path / "s") == votes_of(tmp_path / "m")
    a, b = pd.read_csv(tmp_path / "s" / "labels.csv"), pd.read_csv(tmp_path / "m" / "labels.csv")
    pd.testing.assert_frame_equal(a, b, check_exact=False, rtol=1e-12)
    assert a["note"].iloc[0] == "'=HYPERLINK(1)"
    ja = [json.loads(x) for x in (tmp_path / "s" / "labels.jsonl").read_text().splitlines()]
    jb = [json.loads(x) for x in (tmp_path / "m" / "labels.jsonl").read_text().splitlines()]
    assert [r["item_id"] for r in ja] == [r["item_id"] for r in jb]
    assert all(r["soft_label"] == pytest.approx(s["soft_label"]) for r, s in zip(ja, jb, strict=True))
    keep = ("votes", "valid", "invalid", "errors", "by_reason")
    sm, mm = streamed.manifest["counts"], whole.manifest["counts"]
    assert {k: sm[k] for k in keep} == {k: mm[k] for k in keep}
    loaded = streamed.load()
    assert loaded.labels()["label"].tolist() == whole.labels()["label"].tolist()


def test_jsonl_gz_parquet_and_a_streaming_dataset(fake_server, tmp_path):
    server = fake_server(sampling_responder(LABELS, "sentiment"))
    frame = table(30)
    with gzip.open(tmp_path / "d.jsonl.gz", "wt", encoding="utf-8") as out:
        out.writelines(json.dumps(r) + "\n" for r in frame.to_dict(orient="records"))
    frame.to_parquet(tmp_path / "d.parquet", index=False)
    import datasets

    streaming = datasets.Dataset.from_pandas(frame, preserve_index=False).to_iterable_dataset(num_shards=3)
    runs = {}
    for name, data in {"jsonl": tmp_path / "d.jsonl.gz", "parquet": tmp_path / "d.parquet", "hf": streaming}.items():
        runs[name] = annotate_stream(data, "sentiment", ["openai/fake"], out=tmp_path / name, api_base=server.url,
                                     id_column="id", chunk_rows=8, progress=False)
    assert server.calls == 30  # the same rows, the same prompts: asked once, replayed twice
    assert {r.manifest["counts"]["valid"] for r in runs.values()} == {30}
    first = pd.read_csv(tmp_path / "jsonl" / "labels.csv")
    for name in ("parquet", "hf"):
        pd.testing.assert_frame_equal(pd.read_csv(tmp_path / name / "labels.csv"), first)


def test_a_million_rows_stream_and_a_bad_last_row_stops_them_before_any_call(fake_server, tmp_path):
    server = fake_server(sampling_responder(LABELS, "sentiment"))
    n = 1_000_000
    data = tmp_path / "big.jsonl"
    with data.open("w", encoding="utf-8") as out:
        out.writelines(f'{{"id": "r{i}", "text": "sentence {i}"}}\n' for i in range(n - 1))
        out.write(f'{{"id": "r{n - 1}", "text": null}}\n')
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    proc = subprocess.run([sys.executable, "-m", "llm_annotator", "annotate", str(data), "-t", "sentiment",
                           "-m", "openai/fake", "--api-base", server.url, "--id-column", "id", "--stream",
                           "--out", str(tmp_path / "run")], capture_output=True, text=True, timeout=600,
                          env={**os.environ, "TMPDIR": str(scratch)})
    assert proc.returncode == 2
    assert list(scratch.iterdir()) == []  # the index of the million rows is removed with the error
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and f"big.jsonl row {n:d} (item r{n - 1}): field 'text' is empty" in lines[0]
    assert "fix:" in lines[0]
    assert server.calls == 0 and not (tmp_path / "run").exists()


def test_a_duplicate_id_far_apart_is_found_across_chunks(fake_server, tmp_path):
    rows = [{"id": f"r{i}", "text": f"sentence {i}"} for i in range(25)] + [{"id": "r3", "text": "again"}]
    with pytest.raises(DataError, match="rows 4 and 26: duplicate id 'r3'"):
        annotate_stream(rows, "sentiment", ["openai/fake"], out=tmp_path / "run", api_base="http://127.0.0.1:9/v1",
                        id_column="id", chunk_rows=5, progress=False)
    assert not (tmp_path / "run").exists()


def test_a_finished_streamed_job_run_again_resumes_every_vote_from_its_keys_on_disk(fake_server, tmp_path):
    server = fake_server(sampling_responder(LABELS, "sentiment"))
    options = {"out": tmp_path / "run", "api_base": server.url, "id_column": "id", "chunk_rows": 5, "progress": False}
    run = annotate_stream(table(12), "sentiment", MODELS, samples=2, **options)
    assert run.manifest["counts"]["valid"] == 48 and server.calls == 24
    labels = (tmp_path / "run" / "labels.csv").read_text()
    again = annotate_stream(table(12), "sentiment", MODELS, samples=2, **options)
    assert again.manifest["counts"]["resumed"] == 48 and server.calls == 24
    assert (tmp_path / "run" / "labels.csv").read_text() == labels and len(labels.splitlines()) == 13


def test_streaming_refuses_dialogue_context(tmp_path):
    with pytest.raises(ConfigError, match="dialogue context"):
        annotate_stream([{"Utterance": "hi", "Speaker": "A", "Dialogue_ID": 1, "Utterance_ID": 0}],
                        "emotion_context", ["openai/fake"], out=tmp_path / "run")


def test_a_killed_streamed_run_resumes_without_loss_or_duplicates(fake_server, tmp_path, isolated_cache):
    server = fake_server(sampling_responder(LABELS, "sentiment"), latency=0.02)
    data = tmp_path / "d.csv"
    table(300).to_csv(data, index=False)
    out = tmp_path / "run"
    command = [sys.executable, "-m", "llm_annotator", "annotate", str(data), "-t", "sentiment", "-m", "openai/fake",
               "--api-base", server.url, "-k", "2", "--id-column", "id", "--out", str(out), "--stream", "-q",
               "--concurrency", "4"]
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    env = {**os.environ, "LLM_ANNOTATOR_CACHE_DIR": str(isolated_cache), "TMPDIR": str(scratch)}
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 60
    while time.time() < deadline and (not (out / "votes.jsonl").exists()
                                      or len((out / "votes.jsonl").read_bytes().splitlines()) < 100):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert list(scratch.iterdir()) == []  # the item index dies with its process, however it ends
    # an unfinished run names its job and never passes for complete
    assert not (out / "labels.csv").exists() and json.loads((out / "run.json").read_text())["status"] == "running"
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    votes = votes_of(out)
    assert len(votes) == 600 and len({v[:3] for v in votes}) == 600
    manifest = json.loads((out / "run.json").read_text())
    assert manifest["counts"]["resumed"] >= 100 and manifest["status"] == "complete"
    assert len(pd.read_csv(out / "labels.csv")) == 300


def test_repeated_rows_get_the_same_ids_as_in_memory(fake_server, tmp_path):
    server = fake_server(sampling_responder(LABELS, "sentiment"))
    rows = [{"text": f"line {i % 4}"} for i in range(11)]  # no id column: ids are row hashes, repeats get ~N
    streamed = annotate_stream(rows, "sentiment", ["openai/fake"], out=tmp_path / "s", api_base=server.url,
                               chunk_rows=3, progress=False)
    whole = annotate(rows, "sentiment", ["openai/fake"], out=tmp_path / "m", api_base=server.url, progress=False)
    ids = pd.read_csv(tmp_path / "s" / "labels.csv")["item_id"].tolist()
    assert ids == whole.items["item_id"].tolist() and sum("~" in i for i in ids) == 7
    assert streamed.manifest["counts"]["valid"] == 11


def test_a_row_changed_between_passes_is_an_error():
    from llm_annotator.store.item_index import ItemIndex

    index = ItemIndex("d.csv", None, 1)
    rows = [{"text": "a"}, {"text": "b"}, {"text": "a"}]
    first = index.assign(rows, 0)
    assert first[2] == f"{first[0]}~1"
    assert index.replay(rows, 0)[0] == first
    with pytest.raises(DataError, match=r"d\.csv row 2 changed"):
        index.replay([{"text": "a"}, {"text": "B"}, {"text": "a"}], 0)
    index.close()


def test_a_streamed_batch_job(fake_server, tmp_path):
    from llm_annotator.api import StreamedRun, collect
    from tests.test_batch import answer, expected

    server = fake_server(answer)
    data = tmp_path / "d.csv"
    table(20).to_csv(data, index=False)
    out = tmp_path / "run"
    submitted = annotate_stream(data, "sentiment", ["openai/fake"], samples=2, out=out, api_base=server.url,
                                id_column="id", chunk_rows=6, batch=True, progress=False)
    assert submitted.manifest["status"] == "batch_pending" and len(submitted.manifest["batches"]) == 4
    done = collect(out, wait=True, poll_s=0.01, progress=False)
    assert isinstance(done, StreamedRun) and done.manifest["status"] == "complete"
    texts = {f"s{i}": f"sentence {i} on topic {i % 5}" for i in range(20)}
    votes = list(read_votes(out / "votes.jsonl"))
    assert len(votes) == 40 and all(v.label == expected_for(v, texts, expected) for v in votes)
    assert len(pd.read_csv(out / "labels.csv")) == 20


def expected_for(vote, texts, expected):
    from llm_annotator.core.prompts import compile_prompt
    from llm_annotator.core.task import load_task

    messages = compile_prompt(load_task("sentiment")).render({"text": texts[vote.item_id]}, item_id=vote.item_id,
                                                             where="test")
    return expected(messages[-1]["content"])

"""What a fault-finding pass over annotators with their own prompts found, each fixed:
secrets in messages and records, one question asked twice, context windows, a replaced
clip, and outputs an annotator was never asked."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pandas as pd
import pytest

from llm_annotator import annotate, annotate_stream
from llm_annotator.core.data import load_dataset
from llm_annotator.core.errors import ConfigError
from llm_annotator.core.models import as_specs
from llm_annotator.core.task import load_task, parse_task_text
from llm_annotator.engine.jobs import JobBuilder
from llm_annotator.testing import media_hash
from tests.test_annotators import NAMES, models, respond


def test_a_bad_annotator_entry_is_named_without_its_key_or_router_keys():
    router = {"model_list": [{"model_name": "m", "litellm_params": {"model": "azure/x", "api_key": "azure-TOPSECRET"}}]}
    for entry in ({"model": "openai/gpt-4o", "api_key": "sk-live-TOPSECRET", "temperature": 5},
                  {"model": "openai/x", "api_key": "sk-live-TOPSECRET", "bogus": 1},
                  {"model": "m", "router": router, "temperature": 3}):
        with pytest.raises(ConfigError) as info:
            as_specs([entry])
        assert "TOPSECRET" not in str(info.value) and repr(entry["model"]) in str(info.value)


def test_credentials_in_extra_headers_reach_no_record_and_no_batch_file(fake_server, tmp_path):
    server = fake_server(lambda request: json.dumps({"sentiment": "neutral"}))
    spec = {"model": "openai/fake", "extra": {"extra_headers": {"Authorization": "Bearer sk-HEADERSECRET",
                                                                "X-Api-Key": "sk-HEADERSECRET2", "X-Trace": "on"}}}
    out = tmp_path / "run"
    annotate([{"id": "a", "text": "hi"}], "sentiment", [spec], id_column="id", api_base=server.url, api_key="sk-t",
             out=out, cache=tmp_path / "cache", progress=False)
    for path in out.rglob("*"):
        if path.is_file():
            assert "HEADERSECRET" not in path.read_text(errors="replace"), path
    manifest = json.loads((out / "run.json").read_text())
    assert manifest["models"][0]["extra"] == {"extra_headers": {"X-Trace": "on"}}  # what is no secret stays
    with pytest.raises(ConfigError, match="HTTP headers") as info:
        annotate([{"id": "a", "text": "hi"}], "sentiment", [spec], id_column="id", api_base=server.url,
                 api_key="sk-t", out=tmp_path / "batch", batch=True, progress=False)
    assert "HEADERSECRET" not in str(info.value)


def test_annotators_identical_but_for_their_name_ask_once_and_share_the_answer(fake_server, tmp_path):
    count = [0]

    def answer(request):
        count[0] += 1
        return json.dumps({"sentiment": ["positive", "negative", "neutral"][count[0] % 3]})

    server = fake_server(answer)
    rows = [{"id": f"s{i}", "text": f"sentence {i}"} for i in range(6)]
    twins = [{"model": "openai/m", "name": "A"}, {"model": "openai/m", "name": "B"}]
    options = dict(id_column="id", api_base=server.url, api_key="sk-t", progress=False, cache=tmp_path / "cache")
    first = annotate(rows, "sentiment", twins, out=tmp_path / "one", **options)
    assert server.calls == 6  # one request per question, not one per name
    by = first.votes.pivot(index="item_id", columns="annotator", values="label")
    assert (by["A"] == by["B"]).all()
    again = annotate(rows, "sentiment", twins, out=tmp_path / "two", **options)
    assert server.calls == 6
    pd.testing.assert_frame_equal(by, again.votes.pivot(index="item_id", columns="annotator", values="label"))


def test_each_annotators_prompt_shows_its_own_context_window(tmp_path):
    text = (Path(__file__).resolve().parent.parent / "prompt_templates" / "emotion_context.jinja").read_text()
    one_turn = parse_task_text(text.replace("name: emotion_context", "name: ctx1")
                               .replace("context_window: 3", "context_window: 1"), "ctx1.jinja")
    rows = [{"Dialogue_ID": 1, "Utterance_ID": u, "Speaker": s, "Season": 1, "Episode": 1, "Utterance": t}
            for u, (s, t) in enumerate([("Joey", "one"), ("Ross", "two"), ("Monica", "three"), ("Joey", "four")])]
    alone = JobBuilder(one_turn, as_specs(["openai/m"]), 1)
    both = JobBuilder(load_task("emotion_melt"), as_specs([{"model": "openai/m", "task": one_turn},
                                                           {"model": "openai/m", "task": "emotion_context"}]), 1)
    assert alone.context_window == 1 and both.context_window == 3
    mine = alone.prompt_hashes(load_dataset(rows, context=alone.context_window))
    with_other = both.prompt_hashes(load_dataset(rows, context=both.context_window))
    assert [h[0] for h in mine] == [h[0] for h in with_other]  # the one-turn prompt is the same either way
    shown = both.render(load_dataset(rows, context=3), 3, 0)[-1]["content"]
    assert '"three"' in shown and '"two"' not in shown
    assert '"two"' in both.render(load_dataset(rows, context=3), 3, 1)[-1]["content"]


def test_a_clip_replaced_with_the_same_size_and_time_is_sent_anew(fake_server, corpus, tmp_path):
    heard: dict[str, str] = {}
    server = fake_server(respond(heard))
    only = [{"model": "openai/qwen2-audio", "task": "emotion_audio_only", "api_base": server.url}]
    options = dict(id_column="id", api_key="sk-t", progress=False, cache=False)
    annotate(str(corpus / "data.csv"), "emotion_audio_only", only, out=tmp_path / "a", **options)
    clip0, clip1 = corpus / "wav" / "03a01Fa.wav", corpus / "wav" / "03a01Nc.wav"
    assert clip0.stat().st_size == clip1.stat().st_size
    before = os.stat(clip0)
    shutil.copyfile(clip1, clip0)
    os.utime(clip0, ns=(before.st_atime_ns, before.st_mtime_ns))  # as an archive that keeps times restores it
    again = annotate(str(corpus / "data.csv"), "emotion_audio_only", only, out=tmp_path / "b", **options)
    labels = again.votes.set_index("item_id")["label"]
    assert labels["u0"] == labels["u1"]  # u0 now sounds as u1 does
    hashes = [media_hash(r) for r in server.requests[-4:]]
    assert len(set(hashes)) == 3


def test_outputs_count_only_the_annotators_asked(fake_server, corpus, tmp_path):
    heard: dict[str, str] = {}
    server = fake_server(respond(heard))
    options = dict(id_column="id", api_key="sk-t", progress=False)
    result = annotate(str(corpus / "data.csv"), "emotion_melt", models(server), out=tmp_path / "m", **options)
    loud = result.output("loudness")
    assert loud.annotators == NAMES[:2] and result.output("emotion").annotators == NAMES
    assert NAMES[2] not in json.dumps(loud.agreement(bootstrap=0), default=str)
    assert NAMES[2] in json.dumps(result.agreement(bootstrap=0), default=str)
    labels = pd.read_csv(tmp_path / "m" / "labels.csv")
    assert (labels["loudness_n_requested"] == 2).all() and (labels["loudness_valid_share"] == 1.0).all()
    assert (labels["n_requested"] == 3).all()
    annotate_stream(str(corpus / "data.csv"), "emotion_melt", models(server), out=tmp_path / "s", context=0,
                    **options)
    streamed = pd.read_csv(tmp_path / "s" / "labels.csv")
    assert (streamed["loudness_n_requested"] == 2).all() and (streamed["n_requested"] == 3).all()


def test_small_settings_are_checked_where_they_are_given(tmp_path):
    from llm_annotator.core.errors import ModelError
    from llm_annotator.engine.workers import check_workers

    assert check_workers(None, out=None, batch=False, collect=False, data=[], stream=False) == 1
    with pytest.raises(ConfigError, match="top_p 3"):
        as_specs([{"model": "openai/m", "top_p": 3}])
    rows = [{"id": "a", "clip": "x.wav"}]
    with pytest.raises(ModelError) as info:  # the fix is said for Python and for the CLI
        annotate(rows, "emotion_audio_only", ["gpt-4o-mini"], id_column="id", progress=False, cache=False)
    assert "-m 'gpt-4o-mini,media=audio'" in str(info.value)


def test_an_interrupted_run_says_so_in_run_json_and_resumes(fake_server, tmp_path):
    import signal
    import subprocess
    import sys
    import time

    server = fake_server(lambda request: json.dumps({"sentiment": "neutral"}), latency=0.3)
    path = tmp_path / "data.csv"
    pd.DataFrame({"id": [f"s{i}" for i in range(60)], "text": [f"line {i}" for i in range(60)]}).to_csv(path, index=False)
    out = tmp_path / "run"
    command = [sys.executable, "-m", "llm_annotator", "annotate", str(path), "-t", "sentiment", "-m", "openai/fake",
               "--api-base", server.url, "--id-column", "id", "--out", str(out), "--concurrency", "2", "--no-cache"]
    env = {**os.environ, "OPENAI_API_KEY": "sk-x"}
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and server.calls < 4:  # some answers in, many to go
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "interrupted" in err
    assert json.loads((out / "run.json").read_text())["status"] == "interrupted"
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    manifest = json.loads((out / "run.json").read_text())
    assert done.returncode == 0 and manifest["status"] == "complete" and manifest["counts"]["resumed"] > 0


def test_what_a_new_user_met_is_mended(fake_server, corpus, tmp_path, capsys):
    import llm_annotator
    from llm_annotator.analysis.agreement import format_report

    assert llm_annotator.plan.__module__ == "llm_annotator.engine.plan"
    found = llm_annotator.plan(str(corpus / "data.csv"), "emotion_melt",
                               ["gpt-4o", {"model": "openai/qwen2-audio", "task": "emotion_audio",
                                           "api_base": "http://127.0.0.1:9/v1"}], id_column="id", cache=False)
    table = found.table()
    assert "(without openai/qwen2-audio/emotion_audio: not priced)" in table
    assert [line.split()[-3] for line in table.splitlines() if line.startswith("openai/qwen2")] == ["n/a"]
    # two annotators whose names share a long prefix stay apart in the printed tables
    server = fake_server(respond({}))
    result = annotate(str(corpus / "data.csv"), "emotion_melt", models(server), id_column="id", api_key="sk-t",
                      progress=False, out=tmp_path / "run")
    printed = format_report(result.agreement(gold="Emotion", bootstrap=0), gold="Emotion")
    assert all(name in printed for name in NAMES)
    manifest = json.loads((tmp_path / "run" / "run.json").read_text())
    assert manifest["counts"]["by_output"]["loudness"]["votes"] == 8
    assert manifest["counts"]["by_output"]["emotion"]["votes"] == 12

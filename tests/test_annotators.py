"""An annotator is a model plus a prompt: several tasks in one job, side by side.

Text cues, text cues with the scene, and the clip itself (real EmoDB audio) as three
annotators over the same items, through annotate -> agree -> report, in memory, streamed
and as a provider batch job, against the loopback OpenAI-compatible server.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import soundfile

from llm_annotator import annotate, annotate_stream
from llm_annotator.api import collect
from llm_annotator.core.errors import ConfigError
from llm_annotator.core.models import as_specs
from llm_annotator.outputs.report import write_report
from llm_annotator.outputs.result import AnnotationResult
from llm_annotator.store.votelog import read_votes
from llm_annotator.testing import media_hash, request_media, user_text
from tests.conftest import MELT_CLIPS

LABELS = ["neutral", "joy", "surprise", "anger", "sadness", "disgust", "fear"]
CLIPS = MELT_CLIPS  # the clips of the corpus fixture (tests/conftest.py)
TEXT = "openai/text-model"
AUDIO = {"model": "openai/qwen2-audio", "task": "emotion_audio"}  # unknown to LiteLLM, at an API base
NAMES = [TEXT, f"{TEXT}/emotion_context", "openai/qwen2-audio/emotion_audio"]


def melt_answer(emotion: str) -> str:
    return json.dumps({"character": "Joey", "context": "at the coffee house",
                       "elements": {"emotion": emotion, "loudness": "high", "pitch": "medium",
                                    "rhythm_speed": "fast", "emotional_impact": "low"}})


def respond(heard: dict[str, str]):
    """Text cues: MELT's five elements, joy; with the scene: sadness; a clip: a label of its
    own per distinct clip (by the decoded bytes' hash), the first one heard 'anger'."""

    def answer(request):
        key = media_hash(request)
        if key:
            return json.dumps({"emotion": heard.setdefault(key, LABELS[(3 + len(heard)) % len(LABELS)])})
        if "the last line of this scene" in user_text(request):  # emotion_context's wording
            return melt_answer("sadness")
        return melt_answer("joy")

    return answer


def models(server) -> list[dict]:
    return [{"model": TEXT, "api_base": server.url}, {"model": TEXT, "task": "emotion_context", "api_base": server.url},
            {**AUDIO, "api_base": server.url}]


def check_votes(votes: pd.DataFrame, heard: dict[str, str]) -> None:
    assert sorted(votes["annotator"].unique()) == sorted(NAMES)
    by = votes.set_index(["annotator", "item_id"])["label"]
    assert set(by[TEXT]) == {"joy"} and set(by[f"{TEXT}/emotion_context"]) == {"sadness"}
    heard_labels = list(by["openai/qwen2-audio/emotion_audio"])
    assert sorted(heard_labels) == sorted(heard.values()) and len(set(heard_labels)) == 4  # each clip its own
    # each annotator was asked with its own prompt: one template hash per annotator
    assert votes.groupby("annotator")["template_hash"].nunique().max() == 1
    assert votes.groupby("item_id")["template_hash"].nunique().min() == 3


def test_three_annotators_in_memory_agree_and_report(fake_server, corpus, tmp_path):
    heard: dict[str, str] = {}
    server = fake_server(respond(heard))
    out = tmp_path / "run"
    result = annotate(str(corpus / "data.csv"), "emotion_melt", models(server), id_column="id", out=out,
                      api_key="sk-test", progress=False)
    assert result.manifest["status"] == "complete"
    check_votes(result.votes, heard)
    assert len(heard) == 4 and server.calls == 12
    audio_requests = [r for r in server.requests if request_media(r)]
    assert len(audio_requests) == 4 and all(" at s" in user_text(r) for r in audio_requests)  # cues + clip
    # the context annotator saw the scene: the second turn of a dialogue carries the first
    scene = [user_text(r) for r in server.requests if not request_media(r) and "Could I BE" in user_text(r)]
    assert sorted("I know!" in text for text in scene) == [False, True]

    # the audio annotator answers the emotion only: the other four outputs are the text annotators'
    by_output = result.votes_by_output()
    asked = by_output.groupby("output")["annotator"].unique().map(sorted)
    assert asked["emotion"] == sorted(NAMES) and asked["loudness"] == sorted(NAMES[:2])
    assert by_output[by_output["output"] == "loudness"]["error"].isna().all()

    agreement = result.agreement()
    assert agreement is not None
    # the run directory holds the same: labels, run.json with each annotator's task, a report
    manifest = json.loads((out / "run.json").read_text())
    assert [m.get("task") for m in manifest["models"]] == [None, "emotion_context", "emotion_audio"]
    assert manifest["job"]["annotator_tasks"].keys() == set(NAMES[1:])
    assert manifest["counts"]["by_output"]["loudness"]["valid"] == 8
    loaded = AnnotationResult.load(out)
    check_votes(loaded.votes, heard)
    report = write_report(loaded, tmp_path / "report.html", gold="Emotion")
    html = Path(report).read_text(encoding="utf-8")
    assert all(name in html for name in NAMES)

    # a re-run asks nothing; a clip whose bytes change is asked again by the audio annotator alone
    calls = server.calls
    annotate(str(corpus / "data.csv"), "emotion_melt", models(server), id_column="id", out=out, api_key="sk-test",
             progress=False)
    assert server.calls == calls
    shutil.copy(corpus / "wav" / CLIPS[0], corpus / "wav" / CLIPS[2])
    again = annotate(str(corpus / "data.csv"), "emotion_melt", models(server), id_column="id", out=tmp_path / "run2",
                     api_key="sk-test", progress=False)
    assert server.calls == calls + 1  # exactly that item, by the audio annotator alone
    assert request_media(server.requests[-1]) and "I know!" in user_text(server.requests[-1])
    audio = again.votes[again.votes["annotator"] == NAMES[2]].set_index("item_id")["label"]
    assert audio["u2"] == audio["u0"]


def test_three_annotators_streamed_match_in_memory(fake_server, corpus, tmp_path):
    heard: dict[str, str] = {}
    server = fake_server(respond(heard))
    options = dict(id_column="id", api_key="sk-test", progress=False, context=0)
    streamed = annotate_stream(str(corpus / "data.csv"), "emotion_melt", models(server), out=tmp_path / "s", **options)
    assert streamed.manifest["status"] == "complete" and streamed.manifest["counts"]["votes"] == 12
    memory = annotate(str(corpus / "data.csv"), "emotion_melt", models(server), out=tmp_path / "m", **options)
    assert server.calls == 12  # the in-memory run replays every answer of the streamed one
    loaded = streamed.load()
    check_votes(loaded.votes, heard)
    for name in ("labels.csv", "run.json"):
        assert (tmp_path / "s" / name).exists()
    a = pd.read_csv(tmp_path / "s" / "labels.csv").set_index("id").sort_index()
    b = pd.read_csv(tmp_path / "m" / "labels.csv").set_index("id").sort_index()
    assert list(a.columns) == list(b.columns)
    pd.testing.assert_frame_equal(a.round(9), b.round(9), check_dtype=False)
    assert memory.manifest["counts"]["by_output"] == streamed.manifest["counts"]["by_output"]


def test_three_annotators_as_a_batch_job_carry_the_clips(fake_server, corpus, tmp_path):
    heard: dict[str, str] = {}
    server = fake_server(respond(heard))
    out = tmp_path / "run"
    options = dict(id_column="id", api_key="sk-test", progress=False)
    submitted = annotate(str(corpus / "data.csv"), "emotion_melt", models(server), out=out, batch=True, **options)
    assert submitted.manifest["status"] == "batch_pending" and server.calls == 0
    files = sorted((out / "batch").iterdir())
    assert len(files) == 3  # one per annotator
    lines = [json.loads(x) for f in files for x in f.read_text().splitlines()]
    with_audio = [line for line in lines if request_media(line["body"])]
    assert len(with_audio) == 4 and all(line["custom_id"].split("|")[1] == NAMES[2] for line in with_audio)
    clip_of = pd.read_csv(corpus / "data.csv").set_index("id")["clip"]
    for line in with_audio:  # the line carries its own item's clip, as 16 kHz mono
        sent, rate = soundfile.read(io.BytesIO(request_media(line["body"])[0].data), dtype="int16")
        held = soundfile.info(str(corpus / clip_of[line["custom_id"].split("|")[0]]))
        assert rate == 16_000 and abs(len(sent) / rate - held.duration) < 1e-3
    done = collect(out, data=str(corpus / "data.csv"), wait=True, poll_s=0.01, progress=False, api_key="sk-test")
    assert done.manifest["status"] == "complete"
    check_votes(done.votes, heard)
    assert len(list(read_votes(out / "votes.jsonl"))) == 12


def test_a_batch_file_is_cut_by_size(fake_server, corpus, tmp_path, monkeypatch):
    from llm_annotator.engine import batch

    server = fake_server(respond({}))
    monkeypatch.setattr(batch, "MAX_BYTES", 150_000)  # one clip's line is about 90 kB
    annotate(str(corpus / "data.csv"), "emotion_audio", [{**AUDIO, "api_base": server.url}], out=tmp_path / "run",
             batch=True, id_column="id", api_key="sk-test", progress=False)
    files = sorted((tmp_path / "run" / "batch").iterdir())
    assert [len(f.read_text().splitlines()) for f in files] == [1, 1, 1, 1]
    assert all(f.stat().st_size < 150_000 for f in files)


def test_an_annotator_task_must_declare_the_jobs_outputs_as_the_job_does(tmp_path):
    other = tmp_path / "other.jinja"
    other.write_text("---\nname: other\nlabels: [neutral, joy]\n---\nSay it: {{ text }}\n", encoding="utf-8")
    rows = [{"id": "a", "text": "hi", "Speaker": "Joey", "Season": 1, "Episode": 1, "Utterance": "hi"}]
    with pytest.raises(ConfigError) as info:
        annotate(rows, "emotion_melt", ["local/smollm2-135m", {"model": TEXT, "task": str(other)}], progress=False,
                 cache=False)
    message = str(info.value)
    assert "openai/text-model/other" in message and "emotion" in message and "\n" not in message
    sentiment = {"model": TEXT, "task": "sentiment"}
    with pytest.raises(ConfigError, match="primary output"):
        annotate(rows, "emotion_melt", [sentiment], progress=False, cache=False)


def test_annotator_names_and_the_cli_syntax():
    specs = as_specs([TEXT, {"model": TEXT, "task": "emotion_context"}, {"model": TEXT, "task": "x.jinja", "name": "n"}])
    assert [s.name for s in specs] == [TEXT, f"{TEXT}/emotion_context", "n"]
    assert specs[1].public()["task"] == "emotion_context" and "task" not in specs[0].public()
    from llm_annotator.cli.run import _model_entry

    assert _model_entry("gpt-4o") == "gpt-4o"
    assert _model_entry("gpt-4o, task=emotion_context ,temperature=0.7") == {
        "model": "gpt-4o", "task": "emotion_context", "temperature": "0.7"}
    assert as_specs([_model_entry("gpt-4o,temperature=0.7")])[0].temperature == 0.7
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        _model_entry("gpt-4o,colour=blue")


def test_the_cli_runs_annotators_with_their_own_tasks(fake_server, corpus, tmp_path):
    heard: dict[str, str] = {}
    server = fake_server(respond(heard))
    out = tmp_path / "run"
    done = subprocess.run(
        [sys.executable, "-m", "llm_annotator", "annotate", str(corpus / "data.csv"), "-t", "emotion_melt",
         "-m", TEXT, "-m", f"{TEXT},task=emotion_context", "-m", "openai/qwen2-audio,task=emotion_audio",
         "--api-base", server.url, "--id-column", "id", "--out", str(out)],
        capture_output=True, text=True, timeout=300, env={**os.environ, "OPENAI_API_KEY": "sk-test"})
    assert done.returncode == 0, done.stderr
    votes = pd.read_json(out / "votes.jsonl", lines=True)
    check_votes(votes, heard)


def test_plan_prices_each_annotator_with_its_own_prompt_and_media(corpus):
    from llm_annotator.engine.plan import plan

    audio_model = "gpt-4o-audio-preview-2024-12-17"
    found = plan(str(corpus / "data.csv"), "emotion_melt",
                 ["gpt-4o", {"model": "gpt-4o", "task": "emotion_context"}, {"model": audio_model, "task": "emotion_audio"}],
                 id_column="id", cache=False)
    text, scene, audio = found.models
    assert [m.annotator for m in found.models] == ["gpt-4o", "gpt-4o/emotion_context", f"{audio_model}/emotion_audio"]
    assert text.audio_seconds == scene.audio_seconds == 0 and text.media_usd == 0
    assert scene.tokens_in > text.tokens_in  # the scene's earlier turns are in its prompts
    seconds = sum(soundfile.info(str(corpus / "wav" / n)).duration for n in CLIPS)
    assert audio.audio_seconds == pytest.approx(seconds, abs=0.01) and audio.audio_tokens >= 10 * seconds
    assert audio.priced and audio.media_usd > 0 and not audio.unpriced
    assert audio.cost_usd_expected > audio.media_usd  # text and answer tokens on top
    assert audio.tokens_in < 200 * 4  # the clips' base64 is not counted as text
    assert "audio s" in found.table() and found.cost_usd_expected == pytest.approx(
        sum(m.cost_usd_expected for m in found.models))


def test_a_batch_job_is_collected_from_each_annotators_server_and_media_root(fake_server, corpus, tmp_path,
                                                                              monkeypatch):
    heard: dict[str, str] = {}
    text_server, audio_server = fake_server(respond(heard)), fake_server(respond(heard))
    table = corpus / "data.csv"
    moved = tmp_path / "elsewhere" / "table.csv"  # the data apart from the clips: media_root names their folder
    moved.parent.mkdir()
    shutil.copy(table, moved)
    monkeypatch.chdir(tmp_path)
    annotators = [{"model": TEXT}, {**AUDIO, "api_base": audio_server.url}]
    out = tmp_path / "run"
    annotate(str(moved), "emotion_melt", annotators, out=out, batch=True, id_column="id", api_key="sk-test",
             api_base=text_server.url, media_root="corpus", progress=False)
    monkeypatch.chdir(tmp_path / "elsewhere")  # collected from another folder, with the text server's base
    done = collect(out, wait=True, poll_s=0.01, progress=False, api_key="sk-test", api_base=text_server.url)
    assert done.manifest["status"] == "complete"
    assert text_server.calls == audio_server.calls == 4  # each answered its own annotator's batch lines
    by = done.votes.groupby("annotator")["label"].apply(set)
    assert by[TEXT] == {"joy"} and len(by[NAMES[2]]) == 4

"""Media in the prompt: real EmoDB clips through annotate to the loopback server."""

from __future__ import annotations

import base64
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile
from scipy.signal import resample

from llm_annotator import annotate
from llm_annotator.core.errors import DataError, ModelError, TemplateError
from llm_annotator.core.prompts import compile_prompt, prompt_hash
from llm_annotator.core.task import load_task, parse_task_text
from llm_annotator.testing import media_hash, request_media

LABELS = ["neutral", "joy", "surprise", "anger", "sadness", "disgust", "fear"]
CLIPS = ["03a01Fa.wav", "03a01Nc.wav", "03a01Wa.wav"]
AUDIO_MODEL = {"model": "openai/qwen2-audio", "name": "listener"}  # unknown to LiteLLM, at an API base

PLAIN_AUDIO = """---
name: plain_audio
labels: [neutral, joy, surprise, anger, sadness, disgust, fear]
outputs:
  emotion: {kind: categorical}
media:
  clip: {kind: audio, max_seconds: MAX}
---
Which emotion? Reply {"emotion": "..."}
{{ media("clip") }}
"""


def by_media(seen: dict[str, str]):
    """Answers by the media's hash: each distinct clip its own label, in order of first hearing."""

    def respond(request):
        key = media_hash(request)
        assert key, "a request without media"
        label = seen.setdefault(key, LABELS[len(seen) % len(LABELS)])
        return json.dumps({"emotion": label})

    return respond


@pytest.fixture
def clips(shared_data: Path, tmp_path: Path) -> Path:
    """Three EmoDB clips in a folder with a data.csv naming them by relative path."""
    folder = tmp_path / "corpus"
    (folder / "wav").mkdir(parents=True)
    for name in CLIPS:
        shutil.copy(shared_data / "emodb" / "wav" / name, folder / "wav" / name)
    pd.DataFrame({"id": ["a", "b", "c"], "clip": [f"wav/{n}" for n in CLIPS]}).to_csv(folder / "data.csv", index=False)
    return folder


def plain_task(tmp_path: Path, max_seconds: float = 30) -> Path:
    path = tmp_path / "plain_audio.jinja"
    path.write_text(PLAIN_AUDIO.replace("MAX", str(max_seconds)), encoding="utf-8")
    return path


def run(server, data, task="emotion_audio_only", model=None, **options):
    spec = {**(model or AUDIO_MODEL), "api_base": server.url}
    return annotate(str(data), task, [spec], id_column="id", progress=False, api_key="sk-test", **options)


def decoded(part) -> tuple[np.ndarray, int]:
    samples, rate = soundfile.read(io.BytesIO(part.data), dtype="int16")
    return samples, rate


def test_clip_arrives_with_the_files_samples(fake_server, clips, tmp_path):
    server = fake_server(by_media({}))
    result = run(server, clips / "data.csv", plain_task(tmp_path), out=tmp_path / "run")
    assert server.calls == 3 and result.votes["label"].notna().all()
    for request in server.requests:
        [part] = request_media(request)
        assert part.kind == "audio" and part.format == "wav"
        samples, rate = decoded(part)
        originals = [soundfile.read(clips / "wav" / n, dtype="int16") for n in CLIPS]
        # no sample_rate: the clip's own samples, bit for bit, at its own rate
        assert any(rate == r and np.array_equal(samples, s) for s, r in originals)
    assert len({media_hash(r) for r in server.requests}) == 3
    # the votes, the run's files and the cache keep hashes, never the base64 payloads
    payload = server.requests[0]["messages"][-1]["content"][-1]["input_audio"]["data"]
    needle = payload[1000:1060].encode()
    stored = [p for root in (tmp_path / "run", tmp_path / "cache") for p in root.rglob("*") if p.is_file()]
    assert stored and not [p for p in stored if needle in p.read_bytes()]


def test_clip_is_mixed_and_resampled_to_the_tasks_rate(fake_server, clips):
    server = fake_server(by_media({}))
    run(server, clips / "data.csv")  # emotion_audio_only: sample_rate 16000
    assert server.calls == 3
    heard = {}
    for request in server.requests:
        [part] = request_media(request)
        samples, rate = decoded(part)
        assert rate == 16000 and samples.ndim == 1
        heard[len(heard)] = samples
    for name in CLIPS:
        original, rate = soundfile.read(clips / "wav" / name, dtype="float32")
        assert rate == 22050  # 2 s at 22050 Hz -> 32000 samples at 16000 Hz; what overshoots full scale is clipped
        expected = np.clip(resample(original.astype("float64"), 32000), -1, 1)
        assert any(len(s) == len(expected) and np.abs(s / 32768 - expected).max() <= 1.5 / 32768 for s in heard.values())


def test_changed_bytes_are_asked_again_and_a_renamed_file_is_not(fake_server, clips, shared_data):
    server = fake_server(by_media({}))
    data = clips / "data.csv"
    first = run(server, data)
    assert server.calls == 3
    # the same bytes under another name: nothing asked, every vote from the cache
    (clips / "wav" / CLIPS[0]).rename(clips / "wav" / "renamed.wav")
    frame = pd.read_csv(data)
    frame.loc[0, "clip"] = "wav/renamed.wav"
    frame.to_csv(data, index=False)
    again = run(server, data)
    assert server.calls == 3 and again.votes["cached"].all()
    assert list(again.votes["fingerprint"]) == list(first.votes["fingerprint"])
    # other bytes under the same name: exactly that item is asked again
    shutil.copy(shared_data / "emodb" / "wav" / "03a02Fc.wav", clips / "wav" / CLIPS[1])
    third = run(server, data)
    assert server.calls == 4
    changed = third.votes.set_index("item_id")
    assert not changed.loc["b", "cached"] and changed.loc[["a", "c"], "cached"].all()


def test_prompt_hash_follows_the_bytes_not_the_name(clips, tmp_path):
    task = load_task("emotion_audio_only")
    prompt = compile_prompt(task, clips)
    shutil.copy(clips / "wav" / CLIPS[0], tmp_path / "other name.wav")
    one = prompt.render({"clip": f"wav/{CLIPS[0]}"}, where="x row 1")
    same = prompt.render({"clip": str(tmp_path / "other name.wav")}, where="x row 1")
    other = prompt.render({"clip": f"wav/{CLIPS[1]}"}, where="x row 1")
    assert prompt_hash(one, None) == prompt_hash(same, None) != prompt_hash(other, None)
    # text, then the clip, in the template's order
    assert [p["type"] for p in one[-1]["content"]] == ["text", "input_audio"]


@pytest.mark.parametrize("case", ["missing", "unreadable", "too_long"])
def test_a_bad_row_is_named_before_any_call(fake_server, clips, tmp_path, case):
    server = fake_server(by_media({}))
    data = clips / "data.csv"
    task: str | Path = "emotion_audio_only"
    if case == "missing":
        (clips / "wav" / CLIPS[1]).unlink()
        expected = ["does not exist", "--media-root"]
    elif case == "unreadable":
        (clips / "wav" / CLIPS[1]).write_bytes(b"this is not a sound file" * 40)
        expected = ["not readable as audio", "WAV, FLAC or OGG"]
    else:  # row 2's clip made twice as long (the 2 s clip twice over), the limit 3 s
        samples, rate = soundfile.read(clips / "wav" / CLIPS[1])
        soundfile.write(clips / "wav" / CLIPS[1], np.concatenate([samples, samples]), rate)
        task = plain_task(tmp_path, max_seconds=3)
        expected = ["lasts 4.00 s, above max_seconds 3", "cut the clip"]
    with pytest.raises(DataError) as caught:
        run(server, data, task)
    message = str(caught.value)
    assert "data.csv row 2" in message and "'clip'" in message and CLIPS[1] in message
    assert all(text in message for text in expected) and "\n" not in message
    assert server.calls == 0


def test_a_model_without_audio_is_refused_and_the_override_lets_it_through(fake_server, clips):
    server = fake_server(by_media({}))
    with pytest.raises(ModelError) as caught:
        run(server, clips / "data.csv", model={"model": "openai/gpt-4o-mini"})
    assert "cannot take audio input" in str(caught.value) and "'media': ['audio']" in str(caught.value)
    assert server.calls == 0
    with pytest.raises(ModelError):
        run(server, clips / "data.csv", model={"model": "local/smollm2-135m"})
    result = run(server, clips / "data.csv", model={"model": "openai/gpt-4o-mini", "media": ["audio"]})
    assert server.calls == 3 and result.votes["label"].notna().all()


def test_the_override_does_not_change_the_fingerprint(fake_server, clips):
    server = fake_server(by_media({}))
    first = run(server, clips / "data.csv", model={"model": "openai/qwen2-audio"})
    second = run(server, clips / "data.csv", model={"model": "openai/qwen2-audio", "media": ["audio"]})
    assert server.calls == 3 and second.votes["cached"].all()
    assert list(first.votes["fingerprint"]) == list(second.votes["fingerprint"])


def test_listeners_of_different_clips_disagree(fake_server, clips, shared_data):
    seen: dict[str, str] = {}
    server = fake_server(by_media(seen))
    frame = pd.read_csv(clips / "data.csv")
    frame["other"] = [frame.loc[0, "clip"], f"wav/{CLIPS[2]}", f"wav/{CLIPS[1]}"]  # a the same, b and c swapped
    frame.to_csv(clips / "data.csv", index=False)
    one = run(server, clips / "data.csv", model={"model": "openai/qwen2-audio", "name": "hears-clip"})
    two = run(server, clips / "data.csv", model={"model": "openai/qwen2-audio", "name": "hears-other"},
              columns={"clip": "other"})
    a = one.votes.set_index("item_id")["label"]
    b = two.votes.set_index("item_id")["label"]
    assert len(seen) == 3 and a["a"] == b["a"]
    assert a["b"] != b["b"] and a["b"] == b["c"] and a["c"] == b["b"]


def test_emotion_audio_places_the_clip_after_the_text_cues(clips):
    task = load_task("emotion_audio")
    assert [s.name for s in task.output_specs] == ["emotion"] and list(task.labels) == LABELS
    row = {"Speaker": "Joey", "Season": 3, "Episode": 5, "Utterance": "How you doin'?", "clip": f"wav/{CLIPS[0]}"}
    messages = compile_prompt(task, clips).render(row, where="meld.csv row 1")
    text, audio = messages[-1]["content"]
    assert 'Joey at s3e5 said: "How you doin\'?"' in text["text"]
    raw = base64.b64decode(audio["input_audio"]["data"])
    assert soundfile.info(io.BytesIO(raw)).samplerate == 16000


def test_template_and_declaration_errors(tmp_path):
    text = PLAIN_AUDIO.replace("MAX", "30")
    with pytest.raises(TemplateError, match="never placed"):
        compile_prompt(parse_task_text(text.replace('{{ media("clip") }}', ""), "t.jinja")).render(
            {"clip": "x.wav"}, where="x row 1")
    with pytest.raises(TemplateError, match=r"media\('frame'\) names no declared media field"):
        compile_prompt(parse_task_text(text.replace('media("clip")', 'media("frame")'), "t.jinja")).render(
            {"clip": "x.wav"}, where="x row 1")
    with pytest.raises(Exception, match="max_bytes"):
        parse_task_text(PLAIN_AUDIO.replace("max_seconds: MAX", "max_bytes: 5"), "t.jinja")
    with pytest.raises(Exception, match="positive"):
        parse_task_text(PLAIN_AUDIO.replace("MAX", "0"), "t.jinja")


def test_images_are_sent_as_data_or_as_their_url(tmp_path):
    png = tmp_path / "frame.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(200))
    text = PLAIN_AUDIO.replace("clip: {kind: audio, max_seconds: MAX}", "frame: {kind: image, max_bytes: 100}")
    assert "MAX" not in text
    text = text.replace('media("clip")', 'media("frame")')
    prompt = compile_prompt(parse_task_text(text, "t.jinja"), tmp_path)
    with pytest.raises(DataError, match="208 bytes is above max_bytes 100"):
        prompt.render({"frame": "frame.png"}, where="x row 1")
    roomy = compile_prompt(parse_task_text(text.replace("max_bytes: 100", "max_bytes: 1000"), "t.jinja"), tmp_path)
    part = roomy.render({"frame": "frame.png"}, where="x row 1")[-1]["content"][-1]
    assert part["image_url"]["url"] == "data:image/png;base64," + base64.b64encode(png.read_bytes()).decode()
    request = {"messages": [{"role": "user", "content": [part]}]}
    assert request_media(request)[0].data == png.read_bytes()
    url = roomy.render({"frame": "https://example.org/f.png"}, where="x row 1")[-1]["content"][-1]
    assert url == {"type": "image_url", "image_url": {"url": "https://example.org/f.png"}}


def test_streamed_and_cli_runs_read_media_from_the_media_root(fake_server, clips, tmp_path, monkeypatch, capsys):
    from llm_annotator import annotate_stream
    from llm_annotator.cli import main

    server = fake_server(by_media({}))
    # the data file lies elsewhere: its paths are relative to --media-root, not to its own folder
    moved = tmp_path / "elsewhere" / "data.csv"
    moved.parent.mkdir()
    shutil.move(clips / "data.csv", moved)
    spec = {**AUDIO_MODEL, "api_base": server.url}
    with pytest.raises(DataError, match="does not exist"):
        annotate_stream(str(moved), "emotion_audio_only", [spec], out=tmp_path / "s0", id_column="id", progress=False)
    run = annotate_stream(str(moved), "emotion_audio_only", [spec], out=tmp_path / "s1", id_column="id",
                          progress=False, api_key="sk-test", media_root=clips)
    assert server.calls == 3 and run.manifest["counts"]["valid"] == 3
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    code = main(["annotate", str(moved), "-t", "emotion_audio_only", "-m", "openai/qwen2-audio", "--api-base",
                 server.url, "--id-column", "id", "--media-root", str(clips), "--out", str(tmp_path / "c"), "--quiet"])
    assert code == 0 and server.calls == 3  # the same requests: every vote from the cache
    assert "3 valid votes" in capsys.readouterr().out


def test_a_marker_in_the_data_stays_text(clips):
    """Only media() places media: the same marker text in a data value, of a declared field
    or another, stays text (each compiled prompt marks its media with its own token)."""
    text = PLAIN_AUDIO.replace("MAX", "30").replace("Which emotion?", "Which emotion? {{ note }}")
    prompt = compile_prompt(parse_task_text(text, "t.jinja"), clips)
    for note in ("\x00media:other\x00", "before \x00media:clip\x00 after"):
        content = prompt.render({"clip": f"wav/{CLIPS[0]}", "note": note}, where="x row 1")[-1]["content"]
        assert [p["type"] for p in content] == ["text", "input_audio"] and note in content[0]["text"]
    first = prompt.render({"clip": f"wav/{CLIPS[0]}", "note": ""}, where="x row 1")[-1]["content"][-1]
    first["input_audio"]["data"] = "changed by a caller"
    again = prompt.render({"clip": f"wav/{CLIPS[0]}", "note": ""}, where="x row 1")[-1]["content"][-1]
    assert again["input_audio"]["data"] != "changed by a caller"  # the conversion cache hands out copies

def test_empty_and_too_short_clips_empty_cells_and_odd_urls_are_named_before_any_call(clips, tmp_path):
    text = PLAIN_AUDIO.replace("MAX", "30").replace("max_seconds: 30", "max_seconds: 30, sample_rate: 8")
    prompt = compile_prompt(parse_task_text(text, "t.jinja"), clips)
    soundfile.write(clips / "empty.wav", np.zeros(0, dtype="float32"), 16000)
    soundfile.write(clips / "blip.wav", np.zeros(1, dtype="float32"), 16000)
    cases = {"empty.wav": "the clip holds no samples", "blip.wav": "too short to resample to 8 Hz",
             "": "media field 'clip' is empty",
             "https://ex.org/c.wav?token=sk-query-secret-123": "holds the URL 'https://ex.org/c.wav'"}
    for value, expected in cases.items():
        with pytest.raises(DataError) as caught:
            prompt.render({"clip": value}, where="x row 1")
        assert expected in str(caught.value) and "x row 1" in str(caught.value)
        assert "sk-query-secret" not in str(caught.value)
    image = compile_prompt(parse_task_text(PLAIN_AUDIO.replace("clip: {kind: audio, max_seconds: MAX}",
                                                               "frame: {kind: image}").replace('media("clip")',
                                                                                               'media("frame")'),
                                           "t.jinja"), tmp_path)
    with pytest.raises(DataError, match="holds a data URL that is not an image"):
        image.render({"frame": "data:text/plain;base64,bm90IGFuIGltYWdl"}, where="x row 1")


def test_a_provider_error_that_echoes_the_clip_is_stored_without_it(fake_server, clips):
    from llm_annotator.testing import Reply

    def echo(request):
        clip = request["messages"][-1]["content"][-1]["input_audio"]["data"]
        return Reply(status=400, body=json.dumps({"error": {"message": "Invalid audio: " + clip[:5000]}}).encode())

    server = fake_server(echo)
    with pytest.warns(Warning):
        result = run(server, clips / "data.csv")
    errors = result.votes["error"].tolist()
    assert all(e.startswith("bad_request") and "<data>" in e for e in errors)
    payload = base64.b64encode((clips / "wav" / CLIPS[0]).read_bytes()[:300]).decode()[:60]
    assert all(payload not in e for e in errors)


def test_a_router_s_every_deployment_must_take_the_media(fake_server, clips):
    dated = "gpt-4o-audio-preview-2024-12-17"
    for order in ([dated, "gpt-4o-mini"], ["gpt-4o-mini", dated]):
        router = {"model_list": [{"model_name": "pool", "litellm_params": {"model": m}} for m in order]}
        with pytest.raises(ModelError, match=r"cannot take audio input .*'gpt-4o-mini'"):
            annotate(clips / "data.csv", "emotion_audio_only", [{"model": "pool", "router": router}],
                     progress=False)

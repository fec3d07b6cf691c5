"""examples/melt with --audio-dir: text-cue, text+clip and clip-only annotators in one job.

Real EmoDB clips stand in for MELD's (named ``dia{D}_utt{U}.wav`` for the first rows of
MELD train); the annotators are asked through the loopback OpenAI-compatible server, which
answers MELT's JSON for the text prompts and a label per distinct clip for the audio ones.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile

from examples.melt.run_melt import main
from llm_annotator.testing import media_hash, user_text

LABELS = ["neutral", "joy", "surprise", "anger", "sadness", "disgust", "fear"]
EMODB = ["03a01Fa.wav", "03a01Nc.wav", "03a01Wa.wav", "03a02Fc.wav"]
TEXT = "openai/text-model"
AUDIO = "openai/qwen2-audio"  # unknown to LiteLLM: allowed at an explicit API base
NAMES = [TEXT, f"{AUDIO}/emotion_audio", f"{AUDIO}/emotion_audio_only"]


def respond(heard: dict[str, str]):
    """Text cues: MELT's five elements, joy. A clip: a label of its own per distinct clip (by
    its bytes' hash); the clip alone is heard one label further on than with the cues."""

    def answer(request):
        key = media_hash(request)
        if not key:
            return json.dumps({"character": "Chandler", "context": "a job interview",
                               "elements": {"emotion": "joy", "loudness": "medium", "pitch": "medium",
                                            "rhythm_speed": "medium", "emotional_impact": "low"}})
        label = heard.setdefault(key, LABELS[len(heard) % len(LABELS)])
        if " at s" not in user_text(request):  # emotion_audio_only: no cues
            label = LABELS[(LABELS.index(label) + 1) % len(LABELS)]
        return json.dumps({"emotion": label})

    return answer


@pytest.fixture
def clips(shared_data: Path, tmp_path: Path) -> Path:
    """MELD train dia0_utt0..utt3 as EmoDB clips; utt4 is 31 s of silence; utt5 is missing."""
    folder = tmp_path / "MELD_WAV"
    folder.mkdir()
    for utterance, name in enumerate(EMODB):
        shutil.copy(shared_data / "emodb" / "wav" / name, folder / f"dia0_utt{utterance}.wav")
    soundfile.write(str(folder / "dia0_utt4.wav"), np.zeros(31 * 16_000, dtype="int16"), 16_000)
    return folder


def test_melt_with_audio_compares_text_audio_and_text_audio_annotators(shared_data, clips, tmp_path, fake_server,
                                                                       capsys, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    heard: dict[str, str] = {}
    server = fake_server(respond(heard))
    out = tmp_path / "run"
    assert main(["--split", "train", "--limit", "6", "--samples", "1", "--out", str(out),
                 "--meld-dir", str(shared_data / "meld"), "--melt-csv", str(shared_data / "melt" / "meld_train.csv"),
                 "-m", TEXT, "--api-base", server.url, "--audio-dir", str(clips), "--audio-model", AUDIO]) == 0
    printed = capsys.readouterr().out
    # the missing clip and the one over the templates' 30 s are left out, counted and listed
    assert ("skipped 2 utterances whose clip is unusable (1 longer than 30 s, 1 missing; first: dia0_utt4.wav): "
            f"listed in {out / 'skipped_clips.csv'}") in printed
    skipped = pd.read_csv(out / "skipped_clips.csv", keep_default_na=False)
    assert skipped.to_dict(orient="records") == [
        {"clip": "dia0_utt4", "file": "dia0_utt4.wav", "reason": "longer than 30 s", "seconds": "31.0"},
        {"clip": "dia0_utt5", "file": "dia0_utt5.wav", "reason": "missing", "seconds": ""}]
    assert server.calls == 4 * 3 and len(heard) == 4  # each kept row once per annotator; each clip heard

    votes = pd.read_json(out / "votes.jsonl", lines=True)
    assert sorted(votes["annotator"].unique()) == sorted(NAMES)
    assert sorted(votes["item_id"].unique()) == [f"dia0_utt{u}" for u in range(4)]
    by = votes.set_index(["annotator", "item_id"])["label"]  # the label is the emotion (the primary output)
    assert set(by[TEXT]) == {"joy"} and sorted(by[NAMES[1]]) == sorted(heard.values())
    assert all(by[NAMES[2]][i] != by[NAMES[1]][i] for i in by[NAMES[1]].index)

    figures = json.loads((out / "agreement.json").read_text())
    assert figures["annotators"] == [*NAMES, "Emotion", "llm_label"]
    for name in NAMES:  # each annotator against the human labels, and against each other one
        assert figures["vs_gold"][name]["n"] == 4
        assert all(other in figures["pairwise_cohen_kappa"][name] for other in NAMES)
    assert figures["vs_gold"][TEXT]["accuracy"] == 0  # joy; MELD's humans: neutral, neutral, neutral, neutral
    assert "pairwise Cohen's kappa:" in printed and "against gold (Emotion):" in printed
    html = (out / "report.html").read_text(encoding="utf-8")
    assert all(name in html for name in NAMES)
    rows = [json.loads(line) for line in (out / "soft_labels.jsonl").read_text().splitlines()]
    assert [r["file"] for r in rows] == [f"dia0_utt{u}.wav" for u in range(4)]
    assert rows[0]["loudness_label"] == "medium"  # the text annotator's other elements are kept


def test_melt_with_audio_stops_when_no_clip_is_there(shared_data, tmp_path, capsys):
    with pytest.raises(SystemExit) as stopped:
        main(["--split", "dev", "--limit", "3", "--meld-dir", str(shared_data / "meld"), "--out", str(tmp_path / "r"),
              "--audio-dir", str(tmp_path), "--audio-model", AUDIO, "--api-base", "http://127.0.0.1:9/v1"])
    error = capsys.readouterr().err
    assert stopped.value.code == 2
    assert (f"--audio-dir {tmp_path}: none of the 3 clips is there as --audio-template "
            "'dia{Dialogue_ID}_utt{Utterance_ID}.wav' names them (first: dia0_utt0.wav)") in error
    assert "ffmpeg -i dia0_utt0.mp4" in error and not (tmp_path / "r").exists()


def test_melt_with_audio_through_batch_jobs(shared_data, clips, tmp_path, fake_server, capsys, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    heard: dict[str, str] = {}
    server = fake_server(respond(heard))
    server.hold_batches = True
    out = tmp_path / "run"
    argv = ["--split", "train", "--limit", "4", "--samples", "1", "--out", str(out), "--batch",
            "--meld-dir", str(shared_data / "meld"), "--melt-csv", str(shared_data / "melt" / "meld_train.csv"),
            "-m", TEXT, "--api-base", server.url, "--audio-dir", str(clips), "--audio-model", AUDIO]
    assert main(argv) == 0
    assert "12 votes wait in batch jobs" in capsys.readouterr().out and not (out / "report.html").exists()
    server.hold_batches = False
    for batch in list(server.batches):  # the provider finishes
        while server.retrieve_batch(batch)["status"] != "completed":
            pass
    monkeypatch.chdir(tmp_path)  # collected from elsewhere: the clips are found by their absolute paths
    assert main(argv) == 0
    figures = json.loads((out / "agreement.json").read_text())
    assert figures["annotators"][:3] == NAMES and (out / "report.html").is_file()
    assert server.calls == 12 and len(heard) == 4

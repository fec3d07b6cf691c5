"""The SER trainer on the outputs of a structured annotation run: real EmoDB clips, a real
loopback server, tiny random backbones.

The run's task has a categorical primary output (emotion), an ordinal one (loudness), a
numeric one (arousal, 1-5) and a multi-label one (cues). Two annotators answer two samples
each, scripted from the emotion code in each clip's file name, so that the targets are
learnable and known here by hand.
"""

import json
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from examples.ser import train
from examples.ser.data import Table, table_from_arguments
from examples.ser.metrics import ccc, pearson, regression_scores
from examples.ser.model import SERModel, load_backbone, save_tiny_backbone
from examples.ser.objectives import Ordinal, Regression, objective_for
from llm_annotator import annotate
from llm_annotator.testing import user_text
from llm_annotator.testing.server import FakeOpenAI

TASK = """---
name: speech_structured
outputs:
  emotion: {kind: categorical, labels: [anger, boredom, disgust, fear, happiness, neutral, sadness]}
  loudness: {kind: ordinal, labels: [low, medium, high]}
  arousal: {kind: numeric, range: [1, 5], integer: true}
  cues: {kind: multi_label, labels: [pitch, tempo, voice]}
---
How was the clip {{ file }} spoken? Reply with JSON:
{"emotion": ..., "loudness": low|medium|high, "arousal": 1-5, "cues": [...]}
"""

# EmoDB's emotion codes (the sixth character of the file name)
EMOTION = {"W": "anger", "L": "boredom", "E": "disgust", "A": "fear", "F": "happiness", "N": "neutral",
           "T": "sadness"}
AROUSAL = {"anger": 5, "happiness": 4, "fear": 4, "disgust": 3, "neutral": 2, "boredom": 1, "sadness": 1}
LOUDNESS = {"anger": "high", "happiness": "high", "fear": "high", "disgust": "medium", "neutral": "medium",
            "boredom": "low", "sadness": "low"}
LEVELS = ["low", "medium", "high"]
MODELS = ["openai/fake", "openai/other"]


def emotion_of(file: str) -> str:
    return EMOTION[Path(file).name[5]]


def answers(model: str, file: str) -> list[dict]:
    """What ``model`` says of ``file``, sample by sample. ``fake`` gives the scripted arousal,
    then one step lower (not below 1); ``other`` one step higher (not above 5), then an
    arousal of 9, outside the range, for the clips of speaker 03 (an invalid value), else
    the scripted one. Loudness: ``fake`` scripted twice; ``other`` scripted, then one level
    lower for the speakers 08 and 09."""
    emotion = emotion_of(file)
    a, loud = AROUSAL[emotion], LOUDNESS[emotion]
    speaker = Path(file).name[:2]
    if model == "fake":
        arousal, loudness = [a, max(1, a - 1)], [loud, loud]
    else:
        arousal = [min(5, a + 1), 9 if speaker == "03" else a]
        loudness = [loud, LEVELS[max(0, LEVELS.index(loud) - 1)] if speaker in ("08", "09") else loud]
    return [{"emotion": emotion, "loudness": loudness[s], "arousal": arousal[s], "cues": ["pitch"]} for s in range(2)]


def respond(request: dict) -> list[str]:
    file = re.search(r"wav/\S+?\.wav", user_text(request)).group(0)
    model = request["model"].split("/")[-1]
    return [json.dumps(answer) for answer in answers(model, file)][:request.get("n", 1)]


def hand_arousal(file: str) -> float:
    """The mean of each annotator's valid values, then the mean over the annotators."""
    per_model = []
    for model in ("fake", "other"):
        valid = [x["arousal"] for x in answers(model, file) if 1 <= x["arousal"] <= 5]
        per_model.append(sum(valid) / len(valid))
    return sum(per_model) / len(per_model)


def hand_loudness(file: str) -> list[float]:
    """Each annotator's share of samples per level, averaged over the annotators."""
    shares = np.zeros(3)
    for model in ("fake", "other"):
        for x in answers(model, file):
            shares[LEVELS.index(x["loudness"])] += 0.5 / 2
    return shares.tolist()


@pytest.fixture(scope="module")
def structured_run(shared_data, tmp_path_factory):
    """A finished run over 24 EmoDB clips (speakers 03, 08, 09, 10; six each, emotions mixed)."""
    labels = pd.read_csv(shared_data / "emodb" / "labels.csv")
    clips = labels[labels["speaker"].isin([3, 8, 9, 10])].groupby("speaker").head(6)
    part = {3: "train", 8: "train", 9: "val", 10: "test"}
    rows = [{"file": row.file, "speaker": f"{row.speaker:02d}", "part": part[row.speaker], "clip": Path(row.file).stem}
            for row in clips.itertuples()]
    work = tmp_path_factory.mktemp("structured")
    (work / "task.jinja").write_text(TASK)
    with FakeOpenAI(respond) as server:
        annotate(rows, task=work / "task.jinja", models=MODELS, api_base=server.url, out=work / "run",
                 samples=2, temperature=1.0, cache=work / "answers")
    return {"run": work / "run", "files": [r["file"] for r in rows], "work": work,
            "backbone": save_tiny_backbone("wav2vec2", work / "backbone")}


def common(run, emodb_dir, out, cache):
    return ["--run", str(run["run"]), "--audio-dir", str(emodb_dir), "--speaker-column", "speaker",
            "--backbone", str(run["backbone"]), "--mode", "probe", "--epochs", "3", "--batch-size", "4",
            "--feature-cache", str(cache), "--out", str(out), "-q"]


def test_an_ordinal_output_trains_a_classifier_over_its_ordered_levels(structured_run, shared_data, tmp_path,
                                                                         capsys):
    emodb = shared_data / "emodb"
    out = tmp_path / "loudness"
    assert train.main([*common(structured_run, emodb, out, structured_run["work"] / "features"),
                       "--output", "loudness"]) == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(printed["test"]) == {"ua", "wa", "macro_f1", "mae"} and "val_ua" in printed
    results = json.loads((out / "results.json").read_text())
    assert results["output"] == "loudness" and results["kind"] == "ordinal" and results["loss"] == "soft"
    assert (results["train_clips"], results["val_clips"], results["test_clips"]) == (12, 6, 6)
    for part in ("val", "test"):
        assert results[part]["labels"] == LEVELS  # the output's order, low to high
        for metric in ("ua", "wa", "macro_f1", "mae", "kl"):
            assert math.isfinite(results[part][metric]), (part, metric)
        assert 0 <= results[part]["mae"] <= 2
    # the soft labels the trainer used are the annotators' shares, weighted equally
    used = pd.read_csv(out / "targets.csv")
    assert sorted(used["file"]) == sorted(str(emodb / f) for f in structured_run["files"])
    for row in used.itertuples():
        expected = hand_loudness(str(Path(row.file).relative_to(emodb)))
        assert [row.p_low, row.p_medium, row.p_high] == pytest.approx(expected)
    assert (used["p_high"] == 0.75).any() and (used["p_medium"] == 0.25).any()  # 08 and 09 are soft
    head = torch.load(out / "best.pt", weights_only=False)["state"]["head.out.weight"]
    assert head.shape[0] == 3


def test_a_numeric_output_trains_a_regressor_on_the_mean_ratings(structured_run, shared_data, tmp_path, capsys):
    emodb = shared_data / "emodb"
    out = tmp_path / "arousal"
    assert train.main([*common(structured_run, emodb, out, structured_run["work"] / "features"),
                       "--output", "arousal"]) == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(printed["test"]) == {"ccc", "mae", "pearson"} and "val_ccc" in printed
    results = json.loads((out / "results.json").read_text())
    assert results["kind"] == "numeric" and results["loss"] == "mse" and results["selected_by"] == "val_ccc"
    for part in ("val", "test"):
        for metric in ("ccc", "mae", "rmse", "pearson"):
            assert math.isfinite(results[part][metric]), (part, metric)
        assert -1 <= results[part]["ccc"] <= 1 and results[part]["n"] == 6
    # the targets the trainer used: per annotator the mean of its valid values, then the mean
    # over annotators (speaker 03's clips: other's 9 is out of range, so other counts once)
    used = pd.read_csv(out / "targets.csv")
    expected = {str(emodb / f): hand_arousal(f) for f in structured_run["files"]}
    assert len(used) == 24
    for row in used.itertuples():
        assert row.target == pytest.approx(expected[row.file]), row.file
    speaker03 = [f for f in structured_run["files"] if Path(f).name.startswith("03")]
    pooled = {f: np.mean([x["arousal"] for m in ("fake", "other") for x in answers(m, f) if x["arousal"] <= 5])
              for f in speaker03}
    assert any(hand_arousal(f) != pytest.approx(pooled[f]) for f in speaker03)  # equal weights, not pooled
    # the test scores are those of the kept model's predictions against these targets
    test_targets = used[used["split"] == "test"]["target"].to_numpy()
    assert results["test"]["target_mean"] == pytest.approx(test_targets.mean())
    state = torch.load(out / "best.pt", weights_only=False)
    assert state["state"]["head.out.weight"].shape[0] == 1 and state["range"] == (1.0, 5.0)


def test_a_regressor_learns_the_ratings_of_the_clips_it_trains_on(structured_run, shared_data, tmp_path):
    """Forty epochs from the feature cache: the kept model's predictions on the 24 clips (12
    of them its training clips) agree with the targets (CCC 0.83 on this machine)."""
    emodb = shared_data / "emodb"
    out = tmp_path / "arousal"
    args = train.parser().parse_args([*common(structured_run, emodb, out, structured_run["work"] / "features"),
                                      "--output", "arousal", "--epochs", "40"])
    train.fit(args)
    table = table_from_arguments(args)
    objective = objective_for(table)
    state = torch.load(out / "best.pt", weights_only=False)
    model = SERModel(load_backbone(state["backbone"]), state["n_outputs"], width=state["head_width"])
    model.load_state_dict(state["state"])
    predictions = train.run_epoch(model, train.Feed(table, dev=torch.device("cpu")), mode="probe", train=False,
                                  predict=objective.predict)
    assert predictions.shape == (24, 1) and ccc(table.targets, predictions) > 0.5
    assert np.corrcoef(table.targets[:, 0], predictions[:, 0])[0, 1] > 0.5


def test_the_primary_output_is_the_default_and_other_outputs_are_refused_with_the_fix(structured_run,
                                                                                        shared_data, tmp_path):
    emodb = shared_data / "emodb"
    args = common(structured_run, emodb, tmp_path / "x", tmp_path / "features")
    with pytest.raises(SystemExit) as unknown:
        train.main([*args, "--output", "valence"])
    assert str(unknown.value) == (f"{structured_run['run']}: the run has no output 'valence'; its outputs are "
                                  "emotion, loudness, arousal, cues (choose one with --output)")
    with pytest.raises(SystemExit) as multi:
        train.main([*args, "--output", "cues"])
    assert str(multi.value) == (f"{structured_run['run']}: output 'cues' is multi_label, which train does not learn "
                                "(one answer per clip); fix: choose a categorical, ordinal or numeric output with "
                                "--output (emotion, loudness, arousal)")
    with pytest.raises(SystemExit) as loss:
        train.main([*args, "--output", "arousal", "--loss", "hard"])
    assert str(loss.value) == ("--loss hard: output 'arousal' is numeric, which trains with --loss mse; "
                               "fix: give one of those or leave --loss out")
    with pytest.raises(SystemExit) as mixed:
        train.main([*args, "--label-column", "emotion"])
    assert "--label-column: for --table only" in str(mixed.value)
    # no --output: the primary output, emotion, over its seven categories
    args = train.parser().parse_args(args)
    table = table_from_arguments(args)
    assert table.output == "emotion" and table.kind == "categorical" and len(table.labels) == 7
    assert table.targets.shape == (24, 7) and np.allclose(table.targets.max(axis=1), 1)  # both agree on emotion
    assert [table.labels[k] for k in table.hard] == [emotion_of(str(f)) for f in table.files]
    # --file-template: each clip's file from its item's columns
    args.file_template = "wav/{clip}.wav"
    assert table_from_arguments(args).files == table.files
    args.file_template = "wav/{clip}.{format}"
    with pytest.raises(SystemExit) as template:
        table_from_arguments(args)
    assert str(template.value) == ("--file-template 'wav/{clip}.{format}': no column 'format'; the run's items "
                                   "have file, speaker, part, clip")
    args.file_template = None
    # --split-column: the parts a run's items (or a table's rows) name, aligned with the kept clips
    args.split_column = "part"
    parts = train.split(table_from_arguments(args), args)
    assert [len(p.files) for p in parts] == [12, 6, 6]
    assert {f.name[:2] for f in parts[1].files} == {"09"} and {f.name[:2] for f in parts[2].files} == {"10"}
    csv = tmp_path / "parts.csv"
    rows = pd.DataFrame({"file": structured_run["files"], "part": ["train", "val", "test", "train"] * 6})
    rows.assign(emotion=[emotion_of(f) if k % 5 else "unknown" for k, f in enumerate(rows["file"])]).to_csv(csv)
    table_args = train.parser().parse_args(["--table", str(csv), "--audio-dir", str(emodb), "--label-column",
                                            "emotion", "--labels", ",".join(EMOTION.values()), "--split-column",
                                            "part", "--backbone", "b", "--out", "o"])
    kept = train.split(table_from_arguments(table_args), table_args)  # rows of label "unknown" left out
    expected = rows[[k % 5 != 0 for k in range(24)]]
    for name, got in zip(("train", "val", "test"), kept, strict=True):
        assert [str(f) for f in got.files] == [str(emodb / f) for f in expected[expected["part"] == name]["file"]]


def test_ccc_pearson_and_the_regression_objective():
    rng = np.random.default_rng(0)
    x = rng.normal(3, 1, 200)
    y = 0.8 * x + rng.normal(0.5, 0.4, 200)
    r = np.corrcoef(x, y)[0, 1]
    # Lin (1989): rho_c = r * C_b, C_b = 2 / (v + 1/v + u^2), v = s_x / s_y, u = (mean_x - mean_y) / sqrt(s_x s_y)
    v, u = x.std() / y.std(), (x.mean() - y.mean()) / np.sqrt(x.std() * y.std())
    assert ccc(x, y) == pytest.approx(r * 2 / (v + 1 / v + u ** 2))
    assert pearson(x, y) == pytest.approx(r)
    centred = x - x.mean()
    assert ccc(x, x) == pytest.approx(1.0) and ccc(x, x + 1) < 1 and ccc(centred, -centred) == pytest.approx(-1.0)
    assert pearson(x, np.full(200, 2.0)) == 0.0 and ccc(np.ones(3), np.ones(3)) == 1.0
    scores = regression_scores(x[:, None], y[:, None])
    assert scores["mae"] == pytest.approx(np.abs(x - y).mean())
    assert scores["rmse"] == pytest.approx(np.sqrt(((x - y) ** 2).mean()))
    # MSE against targets scaled to [0, 1] by the range; predictions mapped back to the scale
    table = Table([Path("a.wav")] * 3, np.array([[1.0], [3.0], [5.0]]), ["arousal"], None, kind="numeric",
                  range=(1.0, 5.0), output="arousal")
    objective = objective_for(table)
    assert isinstance(objective, Regression) and objective.n_outputs == 1
    outputs = torch.tensor([[0.0], [0.5], [1.0]])
    assert objective.loss(outputs, torch.tensor(table.targets, dtype=torch.float32)).item() == 0.0
    assert objective.predict(outputs).squeeze(1).tolist() == [1.0, 3.0, 5.0]
    assert objective.loss(torch.zeros(3, 1), torch.tensor(table.targets, dtype=torch.float32)).item() == \
        pytest.approx((0 + 0.25 + 1) / 3)
    ordinal = objective_for(Table([Path("a.wav")] * 2, np.eye(3)[[0, 2]], LEVELS, None, kind="ordinal"))
    assert isinstance(ordinal, Ordinal)
    assert ordinal.scores(np.eye(3)[[0, 2]], np.eye(3)[[2, 2]])["mae"] == 1.0  # |0-2| and |2-2|

"""The SER example on real EmoDB audio, with tiny random backbones of the four classes."""

import json

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import f1_score, recall_score

from examples.ser import baseline, emodb, evaluate, melt_experiment, train
from examples.ser.data import load_audio, read_table, speaker_folds
from examples.ser.metrics import scores
from examples.ser.model import TINY, load_backbone, save_tiny_backbone


@pytest.fixture(scope="module")
def emodb_dir(shared_data):
    return shared_data / "emodb"


@pytest.fixture(scope="module")
def small_table(emodb_dir, tmp_path_factory):
    labels = pd.read_csv(emodb_dir / "labels.csv")
    subset = labels[labels["speaker"].isin([3, 8, 9, 10])].groupby("speaker").head(6)
    path = tmp_path_factory.mktemp("ser") / "small.csv"
    subset.to_csv(path, index=False)
    return path


@pytest.mark.parametrize("kind", sorted(TINY))
@pytest.mark.parametrize("mode", ["probe", "finetune"])
def test_every_backbone_class_trains_in_both_modes(kind, mode, small_table, emodb_dir, tmp_path):
    backbone = save_tiny_backbone(kind, tmp_path / "backbone")
    out = tmp_path / "out"
    before = load_backbone(backbone)
    assert before.config.layerdrop == 0.0
    assert not any(p.requires_grad for p in before.feature_extractor.parameters())
    train.main(["--table", str(small_table), "--audio-dir", str(emodb_dir), "--label-column", "emotion",
                "--speaker-column", "speaker", "--backbone", str(backbone), "--mode", mode, "--epochs", "2",
                "--batch-size", "4", "--out", str(out), "--feature-cache", str(tmp_path / "cache"), "-q"])
    results = json.loads((out / "results.json").read_text())
    assert results["test_clips"] == 6 and results["val_clips"] == 6 and results["train_clips"] == 12
    assert {"ua", "wa", "macro_f1", "weighted_f1", "kl", "confusion"} <= set(results["test"])
    state = torch.load(out / "best.pt", weights_only=False)["state"]
    cnn = [k for k in state if k.startswith("backbone.feature_extractor.")]
    encoder = [k for k in state if k.startswith("backbone.encoder.") and k.endswith("weight")]
    original = before.state_dict()
    assert all(torch.equal(state[k], original[k.removeprefix("backbone.")]) for k in cnn)  # CNN frozen
    changed = any(not torch.equal(state[k], original[k.removeprefix("backbone.")]) for k in encoder)
    assert changed == (mode == "finetune")  # probe leaves the backbone as it was
    scored = evaluate.main(["--checkpoint", str(out / "best.pt"), "--table", str(small_table), "--audio-dir",
                            str(emodb_dir), "--label-column", "emotion", "--out", str(tmp_path / "s.json")])
    assert scored == 0 and json.loads((tmp_path / "s.json").read_text())["n"] == 24


def test_soft_and_hard_losses_and_the_feature_cache(small_table, emodb_dir, tmp_path):
    soft = tmp_path / "soft.csv"
    table = emodb.soft_table(emodb_dir)
    table[table["file"].isin(pd.read_csv(small_table)["file"])].to_csv(soft, index=False)
    backbone = save_tiny_backbone("wav2vec2", tmp_path / "bb")
    common = ["--table", str(soft), "--audio-dir", str(emodb_dir), "--speaker-column", "speaker",
              "--backbone", str(backbone), "--epochs", "2", "--feature-cache", str(tmp_path / "cache"), "-q"]
    labels = ",".join(emodb.EMODB_LABELS)
    for loss in ("soft", "hard"):
        args = train.parser().parse_args([*common, "--soft-label-column", "soft_label", "--labels", labels,
                                          "--loss", loss, "--out", str(tmp_path / loss)])
        results = train.fit(args)
        assert 0 <= results["test"]["ua"] <= 1 and np.isfinite(results["test"]["kl"])
    # a second run reads every clip's hidden states from the disk cache
    dev = torch.device("cpu")
    model = load_backbone(backbone)
    cache = train.FeatureCache(model, str(backbone.resolve()), tmp_path / "cache", dev)
    for path in read_table(soft, emodb_dir, soft_label_column="soft_label", labels=emodb.EMODB_LABELS).files:
        cache.get(path)
    assert cache.computed == 0


def test_audio_is_resampled_and_normalised(emodb_dir):
    wave = load_audio(emodb_dir / "wav" / "03a01Fa.wav")
    assert len(wave) == 32000  # 2.0 s at 22,050 Hz → 16 kHz
    assert abs(float(wave.mean())) < 1e-4 and abs(float(wave.std()) - 1) < 1e-3


def test_speaker_folds_never_share_a_speaker():
    speakers = [s for s in "abcde" for _ in range(3)]
    for train_idx, val_idx, test_idx in speaker_folds(speakers):
        parts = [{speakers[i] for i in idx} for idx in (train_idx, val_idx, test_idx)]
        assert not (parts[0] & parts[1] or parts[0] & parts[2] or parts[1] & parts[2])
        assert len(parts[2]) == 1 and len(train_idx) + len(val_idx) + len(test_idx) == 15


def test_metrics_equal_scikit_learn():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, 200)
    probs = rng.dirichlet(np.ones(4), 200)
    targets = np.eye(4)[y]
    out = scores(targets, probs, list("abcd"))
    pred = probs.argmax(1)
    assert out["ua"] == pytest.approx(recall_score(y, pred, average="macro"))
    assert out["wa"] == pytest.approx(np.mean(y == pred))
    assert out["macro_f1"] == pytest.approx(f1_score(y, pred, average="macro"))
    assert out["weighted_f1"] == pytest.approx(f1_score(y, pred, average="weighted"))


def test_offline_baseline_learns_leave_one_speaker_out(emodb_dir, tmp_path):
    assert baseline.main(["--table", str(emodb_dir / "labels.csv"), "--audio-dir", str(emodb_dir),
                          "--label-column", "emotion", "--speaker-column", "speaker", "--features", "logmel",
                          "--out", str(tmp_path), "--feature-cache", str(tmp_path / "cache")]) == 0
    result = json.loads((tmp_path / "results.json").read_text())
    assert len(result["ua_per_speaker"]) == 10 and result["pooled"]["n"] == 535
    assert result["pooled"]["ua"] > 0.4  # chance is 1/7 = 0.143


def test_melt_experiment_runs_its_three_trainings(emodb_dir, tmp_path):
    labels = ["neutral", "joy", "surprise", "anger", "sadness", "disgust", "fear"]
    source = pd.read_csv(emodb_dir / "labels.csv")
    mapping = {"happiness": "joy", "anger": "anger", "neutral": "neutral", "sadness": "sadness", "fear": "fear"}
    source = source[source["emotion"].isin(mapping)].head(50)
    rows = []
    for i, row in enumerate(source.itertuples()):
        human = mapping[row.emotion]
        llm = human if i % 3 else "neutral"  # a stand-in annotator that drifts towards neutral
        soft = np.full(7, 0.05)
        soft[labels.index(llm)] = 0.7
        rows.append({"file": row.file, "human_label": human, "label": llm,
                     **{f"p_{x}": soft[k] / soft.sum() for k, x in enumerate(labels)}})
    table = tmp_path / "soft_labels.csv"
    pd.DataFrame(rows).to_csv(table, index=False)
    assert melt_experiment.main(["--table", str(table), "--audio-dir", str(emodb_dir), "--features", "logmel",
                                 "--cross-table", str(emodb_dir / "labels.csv"), "--cross-audio-dir", str(emodb_dir),
                                 "--cross-map", "happiness=joy", "--out", str(tmp_path / "exp"),
                                 "--feature-cache", str(tmp_path / "cache")]) == 0
    results = json.loads((tmp_path / "exp" / "results.json").read_text())
    assert set(results) == {"human hard", "llm hard", "llm soft"}
    for r in results.values():
        assert {"in-domain human", "in-domain llm", "cross-corpus"} <= set(r)
    assert "| llm soft |" in (tmp_path / "exp" / "results.md").read_text()

"""The SER example on real EmoDB audio, with tiny random backbones of the four classes."""

import itertools
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import f1_score, recall_score

from examples.ser import baseline, emodb, evaluate, melt_experiment, train
from examples.ser.cache import FeatureCache
from examples.ser.data import Table, load_audio, read_table, speaker_folds
from examples.ser.loader import Endless, LengthBuckets, audio_lengths, audio_loader
from examples.ser.metrics import scores, soft_cross_entropy
from examples.ser.model import TINY, SERModel, load_backbone, save_tiny_backbone
from examples.ser.train import Feed


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
    cache = FeatureCache(model, str(backbone.resolve()), tmp_path / "cache", dev)
    files = read_table(soft, emodb_dir, soft_label_column="soft_label", labels=emodb.EMODB_LABELS).files
    cache.fill(files)
    assert cache.computed == 0 and len(cache.slot) == len(files) == 24
    assert not list((tmp_path / "cache").rglob("*.tmp"))  # every .npy written whole


@pytest.fixture(scope="module")
def uneven_clips(emodb_dir, tmp_path_factory):
    """Ten real EmoDB clips cut to 0.4–2.0 s (their first samples, 22,050 Hz PCM16 as stored)."""
    import soundfile

    labels = pd.read_csv(emodb_dir / "labels.csv").groupby("speaker").head(1).reset_index(drop=True)
    folder = tmp_path_factory.mktemp("uneven")
    clips = [folder / Path(name).name for name in labels["file"]]
    for seconds, name, clip in zip(np.linspace(0.4, 2.0, len(labels)), labels["file"], clips, strict=True):
        wave, rate = soundfile.read(str(emodb_dir / name), dtype="int16")
        soundfile.write(str(clip), wave[:int(seconds * rate)], rate, subtype="PCM_16")
    return clips


def test_length_buckets_batch_similar_lengths_and_every_clip_once():
    lengths = np.random.default_rng(1).integers(8_000, 160_000, 203)
    sampler = LengthBuckets(lengths, 8, rng=np.random.default_rng(0), crop=80_000, pool=50)
    epochs = [list(sampler) for _ in range(3)]
    for batches in epochs:
        rows = [row for batch in batches for row, _, _ in batch]
        assert sorted(rows) == list(range(203))  # each clip exactly once
        assert len(batches) == len(sampler) == 26 and all(len(b) <= 8 for b in batches)
        for batch in batches:
            assert all(0 <= start < stop <= lengths[row] and stop - start == min(lengths[row], 80_000)
                       for row, start, stop in batch)
        # one pool holds the epoch: the batches cut its length order, so no two overlap
        spans = sorted((min(b - a for _, a, b in batch), max(b - a for _, a, b in batch)) for batch in batches)
        assert all(hi <= next_lo for (_, hi), (next_lo, _) in itertools.pairwise(spans))
        padded = sum(len(batch) * max(b - a for _, a, b in batch) for batch in batches)
        assert padded / sum(min(n, 80_000) for n in lengths) < 1.02
    assert [b[0] for b in epochs[0]] != [b[0] for b in epochs[1]]  # a new shuffle and new crops per epoch
    # evaluation: all clips whole, sorted by length, the same every time
    ordered = [entry for batch in LengthBuckets(lengths, 8) for entry in batch]
    assert [stop for _, _, stop in ordered] == sorted(lengths) and [s for _, s, _ in ordered] == [0] * 203
    # pools smaller than the epoch still keep every batch's lengths close
    pooled = list(LengthBuckets(lengths, 8, rng=np.random.default_rng(0), pool=4))
    assert sorted(r for batch in pooled for r, _, _ in batch) == list(range(203))
    waste = sum(len(b) * max(s for _, _, s in b) for b in pooled) / lengths.sum()
    random_waste = np.mean([sum(len(c) * lengths[c].max() for c in np.array_split(np.random.default_rng(k).permutation(203), 26))
                            for k in range(20)]) / lengths.sum()
    assert waste < 1.35 and random_waste > 1.5  # padded samples per real sample


@pytest.mark.parametrize("kind", sorted(TINY))
def test_batched_extraction_equals_one_clip_at_a_time(kind, uneven_clips, tmp_path):
    """Hidden states extracted in padded batches equal those of each clip alone (real audio, 0.4–2 s).

    In float64 the two agree to rounding (about 1e-14); in float32, the cache's precision on
    a CPU, to 1e-5 (wav2vec2 below).
    """
    backbone = load_backbone(save_tiny_backbone(kind, tmp_path / "bb")).eval()

    def check(dtype, tolerance):
        backbone.to(dtype)
        cache = FeatureCache(backbone, kind, None, torch.device("cpu"), batch_size=4, dtype=dtype)
        slots = cache.fill(uneven_clips)
        assert cache.computed == 10 and len(set(cache.length)) == 10  # ten lengths: batches are padded
        with torch.no_grad():
            for path, slot in zip(uneven_clips, slots, strict=True):
                wave = torch.from_numpy(load_audio(path))[None].to(dtype)
                alone = torch.stack(backbone(wave, output_hidden_states=True).hidden_states)[:, 0]
                held = cache.frames[:, cache.offset[slot]:cache.offset[slot] + cache.length[slot]]
                torch.testing.assert_close(held, alone, rtol=tolerance, atol=tolerance)

    check(torch.float64, 1e-10)
    if kind == "wav2vec2":
        check(torch.float32, 1e-5)
        # without the masking, padding shifts the first convolution's GroupNorm
        waves = [torch.from_numpy(load_audio(p)) for p in uneven_clips[:2]]
        batch = torch.nn.utils.rnn.pad_sequence(waves, batch_first=True)
        mask = torch.nn.utils.rnn.pad_sequence([torch.ones_like(w, dtype=torch.bool) for w in waves], batch_first=True)
        with torch.no_grad():
            plain = torch.stack(backbone(batch, attention_mask=mask.long(), output_hidden_states=True).hidden_states)
            alone = torch.stack(backbone(waves[0][None], output_hidden_states=True).hidden_states)[:, 0]
        assert (plain[:, 0, :alone.shape[1]] - alone).abs().max() > 1e-2


def test_cached_epochs_index_tensors_and_never_pad_on_the_host(uneven_clips, tmp_path, monkeypatch):
    backbone = load_backbone(save_tiny_backbone("wav2vec2", tmp_path / "bb"))
    model = SERModel(backbone, 7)
    cache = FeatureCache(backbone, "tiny", None, torch.device("cpu"))
    table = Table(uneven_clips, np.eye(7)[np.arange(10) % 7], [str(k) for k in range(7)], None)
    feed = Feed(table, dev=torch.device("cpu"), batch_size=4, cache=cache, rng=np.random.default_rng(0), crop_s=0.5)
    optimizer = torch.optim.AdamW(model.head.parameters())
    train.run_epoch(model, feed, mode="probe", train=True, optimizer=optimizer, loss_fn=soft_cross_entropy)
    assert isinstance(cache.frames, torch.Tensor) and cache.frames.dtype == torch.float16
    assert cache.frames.shape[1] == cache.length.sum() and cache.computed == 10
    held = cache.frames.clone()
    converted = []
    real_from_numpy = torch.from_numpy
    monkeypatch.setattr(torch, "from_numpy", lambda a: converted.append(a.dtype) or real_from_numpy(a))
    monkeypatch.setattr(cache, "_extract", lambda files: pytest.fail(f"extracted {files} again"))
    for _ in range(2):  # epochs from the cache
        probs = train.run_epoch(model, feed, mode="probe", train=True, optimizer=optimizer, loss_fn=soft_cross_entropy)
        assert probs.shape == (10, 7) and np.allclose(probs.sum(axis=1), 1)
    assert converted and not any(np.issubdtype(d, np.floating) for d in converted)  # only indices cross from numpy
    assert torch.equal(cache.frames, held)
    # a batch is the held frames of its clips: crops of at most 0.5 s, padding masked
    fps = cache.frames_per_second
    entries = [(0, 3, 3 + int(0.5 * fps)), (9, 0, int(cache.length[9]))]
    states, mask = cache.batch(feed._slots, entries)
    assert states.shape == (backbone.config.num_hidden_layers + 1, 2, cache.length[9], 32) and states.dtype == torch.float32
    assert mask.sum(dim=1).tolist() == [int(0.5 * fps), cache.length[9]]
    first = cache.frames[:, cache.offset[feed._slots[0]] + 3:][:, :int(0.5 * fps)]
    assert torch.equal(states[:, 0, :int(0.5 * fps)], first.float())


def test_loader_workers_give_the_batches_of_the_main_process(uneven_clips, small_table, emodb_dir, tmp_path):
    lengths = audio_lengths(uneven_clips)
    assert lengths.tolist() == [len(load_audio(p)) for p in uneven_clips]

    def epochs(workers):
        sampler = LengthBuckets(lengths, 3, rng=np.random.default_rng(5), crop=16_000)
        batches = iter(audio_loader(uneven_clips, Endless(sampler), workers=workers))
        return [[(rows.tolist(), waves, mask) for rows, waves, mask in itertools.islice(batches, len(sampler))]
                for _ in range(2)]

    alone, parallel = epochs(0), epochs(2)
    for epoch in alone:  # one endless loader, cut into epochs: each holds every clip once
        assert sorted(r for rows, _, _ in epoch for r in rows) == list(range(len(uneven_clips)))
    assert [r for r, _, _ in alone[0]] != [r for r, _, _ in alone[1]]  # and the second is shuffled anew
    assert [[r for r, _, _ in e] for e in alone] == [[r for r, _, _ in e] for e in parallel]
    for a, b in zip(alone, parallel, strict=True):
        for (_, wa, ma), (_, wb, mb) in zip(a, b, strict=True):
            assert torch.equal(wa, wb) and (ma is mb is None or torch.equal(ma, mb))
    # and fit gives the same model with loader workers as without
    backbone = save_tiny_backbone("wav2vec2", tmp_path / "bb")
    results = []
    for workers in ("0", "2"):
        out = tmp_path / f"w{workers}"
        train.main(["--table", str(small_table), "--audio-dir", str(emodb_dir), "--label-column", "emotion",
                    "--speaker-column", "speaker", "--backbone", str(backbone), "--mode", "finetune", "--epochs", "2",
                    "--batch-size", "4", "--workers", workers, "--out", str(out), "-q"])
        results.append(json.loads((out / "results.json").read_text()))
    assert results[0]["test"] == results[1]["test"] and results[0]["val"] == results[1]["val"]


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

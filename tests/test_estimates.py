"""Corpus estimates (analysis.estimates): ppi_py agreement, coverage, weights, input checks."""

from __future__ import annotations

import doctest
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from llm_annotator.analysis import estimates, selection
from llm_annotator.analysis.estimates import accuracy, label_shares
from llm_annotator.core.errors import ConfigError

with warnings.catch_warnings():  # ppi_py's import silences every warning of the process
    import ppi_py  # the trust extra, which make test installs
LABELS = ["a", "b", "c"]


def corpus(seed: int, n_items: int = 1500, n_human: int = 120) -> tuple[np.ndarray, list[object], np.ndarray]:
    """Soft labels, gold labels where a person labelled (None elsewhere), and the labelled positions."""
    rng = np.random.default_rng(seed)
    probs = rng.dirichlet([0.6, 0.6, 0.6], size=n_items)
    gold = np.array([rng.choice(3, p=0.7 * p + 0.1) for p in probs])
    picked = np.sort(rng.choice(n_items, n_human, replace=False))
    human: list[object] = [None] * n_items
    for i in picked:
        human[i] = LABELS[gold[i]]
    return probs, human, picked


def onehot(human: list[object], picked: np.ndarray) -> np.ndarray:
    return np.array([[float(human[i] == label) for label in LABELS] for i in picked])


def test_doctests() -> None:
    for module in (estimates, selection):
        assert doctest.testmod(module).failed == 0


@pytest.mark.parametrize("weighted", [False, True])
def test_estimates_and_normal_intervals_equal_ppi_py(weighted: bool) -> None:
    probs, human, picked = corpus(1)
    inclusion = None
    w = None
    if weighted:
        pi = np.random.default_rng(2).uniform(0.02, 0.3, size=len(probs))
        inclusion = list(pi)
        w = 1.0 / pi[picked]
    rows = label_shares(probs, human, LABELS, level=0.8, inclusion=inclusion)
    y = onehot(human, picked)
    for k, row in enumerate(rows):
        args = (y[:, k], probs[picked, k], probs[:, k])
        for key, lam in (("ppi", 1.0), ("ppi_power", None)):
            estimate = ppi_py.ppi_mean_pointestimate(*args, lam=lam, w=w)
            low, high = ppi_py.ppi_mean_ci(*args, alpha=0.2, lam=lam, w=w)
            assert row[key]["estimate"] == pytest.approx(float(np.ravel(estimate)[0]), abs=1e-9)
            assert row[key]["normal_low"] == pytest.approx(max(0.0, float(np.ravel(low)[0])), abs=1e-9)
            assert row[key]["normal_high"] == pytest.approx(min(1.0, float(np.ravel(high)[0])), abs=1e-9)
        assert 0.0 <= row["ppi_power"]["lambda"] <= 1.0
        assert row["ppi"]["lambda"] == 1.0
        assert row["llm_share"] == pytest.approx(probs[:, k].mean())
        for key in ("human_only", "ppi", "ppi_power"):
            assert 0.0 <= row[key]["low"] <= row[key]["high"] <= 1.0


def test_human_only_is_wilson_and_lambda_zero_reduces_to_it() -> None:
    from statsmodels.stats.proportion import proportion_confint

    probs, human, picked = corpus(3)
    rows = label_shares(probs, human, LABELS, level=0.9)
    y = onehot(human, picked)
    for k, row in enumerate(rows):
        low, high = proportion_confint(int(y[:, k].sum()), len(picked), alpha=0.1, method="wilson")
        assert (row["human_only"]["low"], row["human_only"]["high"]) == pytest.approx((low, high), abs=1e-9)
    # a predictor that carries nothing (constant) gives λ = 0 and the human-only interval
    flat = accuracy([1, 0, None, 1, None, 1], [0.8] * 6)
    assert flat["ppi_power"]["lambda"] == 0.0
    assert flat["ppi_power"]["estimate"] == pytest.approx(flat["human_only"]["estimate"], abs=1e-12)
    assert flat["ppi_power"]["low"] == pytest.approx(flat["human_only"]["low"], abs=1e-9)


def test_small_share_interval_covers_where_the_normal_one_does_not() -> None:
    """A 3% class, an LLM that finds half of it and adds 3% false alarms, 100 human labels:
    PPI++'s normal interval under-covers; the score interval reported as low/high holds."""
    rng = np.random.default_rng(7)
    n_items = 4000
    truth = rng.random(n_items) < 0.03
    said = np.where(truth, rng.random(n_items) < 0.5, rng.random(n_items) < 0.03).astype(float)
    probs = np.stack([said, 1 - said], axis=1)
    gold = np.where(truth, "rare", "other")
    share = truth.mean()
    score = normal = 0
    draws = 300
    for _ in range(draws):
        human = np.full(n_items, None, dtype=object)
        idx = rng.choice(n_items, 100, replace=False)
        human[idx] = gold[idx]
        power = label_shares(probs, list(human), ["rare", "other"])[0]["ppi_power"]
        score += power["low"] <= share <= power["high"]
        normal += power["normal_low"] <= share <= power["normal_high"]
    assert score / draws >= 0.85
    assert normal / draws <= score / draws - 0.08


def test_power_tuning_is_never_much_wider_than_human_only_on_a_useless_predictor() -> None:
    rng = np.random.default_rng(11)
    ratios = []
    for _ in range(150):
        right = rng.random(2000) < 0.3
        hit: list[int | None] = [None] * 2000
        for i in rng.choice(2000, 80, replace=False):
            hit[i] = int(right[i])
        out = accuracy(hit, rng.random(2000))  # pure noise
        human, power = out["human_only"], out["ppi_power"]
        ratios.append((power["high"] - power["low"]) / (human["high"] - human["low"]))
    assert max(ratios) <= 1.05
    assert np.median(ratios) <= 1.01


def test_inverse_probability_weights_remove_the_bias_of_the_interval_strategy() -> None:
    """Uncertain items are drawn more often by ``interval``; their labels differ from the
    sure items', so the unweighted share is biased and the weighted ones are not."""
    rng = np.random.default_rng(3)
    n_items = 3000
    sure = rng.random(n_items) < 0.5
    probs = np.where(sure[:, None], [0.9, 0.05, 0.05], [0.2, 0.4, 0.4])
    gold = np.array(LABELS)[[rng.choice(3, p=p) for p in probs]]
    share = float(np.mean(gold == "a"))
    weighted, power, plain, covered = [], [], [], 0
    draws = 150
    for seed in range(draws):
        chosen = selection.choose("interval", 150, probs=probs, seed=seed)
        assert chosen.inclusion is not None
        human: list[object] = [None] * n_items
        inclusion: list[float | None] = [None] * n_items
        for i, pi in zip(chosen.indices, chosen.inclusion, strict=True):
            human[i], inclusion[i] = str(gold[i]), pi
        row = label_shares(probs, human, LABELS, inclusion=inclusion)[0]
        weighted.append(row["human_only"]["estimate"])
        power.append(row["ppi_power"]["estimate"])
        covered += row["ppi_power"]["low"] <= share <= row["ppi_power"]["high"]
        plain.append(label_shares(probs, human, LABELS)[0]["human_only"]["estimate"])
    assert np.mean(weighted) == pytest.approx(share, abs=0.012)
    assert np.mean(power) == pytest.approx(share, abs=0.008)
    assert np.mean(plain) < share - 0.05
    assert covered / draws >= 0.85


def test_missing_llm_answers_take_the_llm_share_of_the_rest_and_other_labels_count_zero() -> None:
    probs = np.array([[0.8, 0.2], [np.nan, np.nan], [0.4, 0.6], [0.6, 0.4]])
    rows = label_shares(probs, ["x", "other", None, "y"], ["x", "y"])
    assert rows[0]["n_llm"] == 3 and rows[0]["n_human"] == 3
    assert rows[0]["llm_share"] == pytest.approx(0.6)
    assert rows[0]["human_only"]["estimate"] == pytest.approx(1 / 3)  # "other" is 0 for x and y
    assert rows[1]["human_only"]["estimate"] == pytest.approx(1 / 3)
    # PPI: the corpus mean of the filled predictions plus the labelled items' errors
    filled = np.array([0.8, 0.6, 0.4, 0.6])
    expected = filled.mean() + np.mean([1 - 0.8, 0 - 0.6, 0 - 0.6])
    assert rows[0]["ppi"]["estimate"] == pytest.approx(expected)


def test_importing_ppi_py_leaves_the_warning_filters_alone() -> None:
    """ppi_py calls warnings.simplefilter("ignore") when imported, which would hide every
    RunWarning of the process; the first estimate (in a fresh interpreter) must undo it."""
    code = ("import warnings, numpy as np\n"
            "from llm_annotator.analysis.estimates import label_shares\n"
            "label_shares(np.array([[0.7, 0.3], [0.2, 0.8]]), ['a', None], ['a', 'b'])\n"
            "import ppi_py\n"
            "with warnings.catch_warnings(record=True) as seen:\n"
            "    warnings.warn('still shown', UserWarning)\n"
            "assert len(seen) == 1, warnings.filters[:3]\n")
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, timeout=120,
                   env={**os.environ, "PYTHONWARNINGS": ""})


def test_without_the_trust_extra_the_error_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ppi_py", None)
    with pytest.raises(ConfigError, match="need ppi-python, which is not installed") as caught:
        label_shares(np.array([[0.7, 0.3], [0.2, 0.8]]), ["a", None], ["a", "b"])
    assert caught.value.fix == "pip install 'llm-annotator-kit[trust]'"


@pytest.mark.parametrize(("call", "message"), [
    (lambda: label_shares(np.ones((2, 2)) / 2, [None, None], ["a", "b"]), "no item has a human label"),
    (lambda: label_shares(np.ones((2, 2)) / 2, ["a"], ["a", "b"]), "human has 1 entries but the corpus has 2"),
    (lambda: label_shares(np.ones((2, 3)) / 3, ["a", None], ["a", "b"]), r"probs has shape \(2, 3\)"),
    (lambda: label_shares(np.array([[2.0, -1.0], [0.5, 0.5]]), ["a", None], ["a", "b"]),
     r"probs row 0 holds a value outside \[0, 1\]"),
    (lambda: label_shares(np.full((2, 2), np.nan), ["a", None], ["a", "b"]), "no row with a valid LLM answer"),
    (lambda: label_shares(np.ones((2, 2)) / 2, ["a", None], ["a", "a"]), "distinct labels"),
    (lambda: label_shares(np.ones((2, 2)) / 2, ["a", None], ["a", "b"], level=90), "level must lie strictly"),
    (lambda: label_shares(np.ones((2, 2)) / 2, ["a", None], ["a", "b"], inclusion=[0.0, None]),
     r"inclusion\[0\] is 0.0 for a labelled item"),
    (lambda: accuracy([1, "yes", None], [0.5, 0.5, 0.5]), r"hit\[1\] is 'yes', not 1, 0 or None"),
    (lambda: accuracy([1, 0], [0.5, 0.5, 0.5]), "hit has 2 entries but the corpus has 3"),
])
def test_input_errors_name_the_field_and_the_fix(call: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        call()  # type: ignore[operator]
    assert caught.value.fix


@pytest.mark.shared_data
def test_reported_intervals_cover_every_melt_emotion_from_100_labels(shared_data: Path) -> None:
    frame = pd.read_csv(shared_data / "melt" / "meld_train.csv")
    labels = ["neutral", "joy", "surprise", "anger", "sadness", "disgust", "fear"]
    probs = np.stack([(frame["llm_label"] == label).to_numpy(float) for label in labels], axis=1)
    gold = frame["Emotion"].to_numpy(dtype=object)
    truth = np.array([np.mean(gold == label) for label in labels])
    rng = np.random.default_rng(0)
    covered = np.zeros(len(labels))
    draws = 200
    for _ in range(draws):
        human = np.full(len(frame), None, dtype=object)
        idx = rng.choice(len(frame), 100, replace=False)
        human[idx] = gold[idx]
        rows = label_shares(probs, list(human), labels)
        covered += [r["ppi_power"]["low"] <= t <= r["ppi_power"]["high"] for r, t in zip(rows, truth, strict=True)]
    assert (covered / draws >= 0.85).all(), dict(zip(labels, covered / draws, strict=True))

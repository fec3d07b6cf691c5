"""Calibration fitted on gold (issue 17): temperature scaling, isotonic regression and
histogram binning, item weights, and cross-fitted before/after figures."""

import dataclasses
import re
import sys

import numpy as np
import pytest

from llm_annotator.analysis import recalibrate
from llm_annotator.analysis.calibration import calibration
from llm_annotator.analysis.recalibrate import MIN_GOLD, cross_fitted, fit_calibrator
from llm_annotator.core.errors import ConfigError

LABELS = ["a", "b", "c", "d"]


def softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def overconfident(n=3000, temperature=2.0, seed=0, spread=1.0):
    """Gold drawn from softmax(z); the annotator reports softmax(T z): T times too sure."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0, spread, (n, len(LABELS)))
    truth = softmax(z)
    gold = [LABELS[rng.choice(len(LABELS), p=row)] for row in truth]
    return softmax(temperature * z), gold


def one_hot(n=1000, accuracy=0.7, seed=1):
    """A one-sample annotator: one-hot rows, right on ``accuracy`` of the items."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, len(LABELS), n)
    right = rng.random(n) < accuracy
    pred = np.where(right, y, (y + rng.integers(1, len(LABELS), n)) % len(LABELS))
    return np.eye(len(LABELS))[pred], [LABELS[k] for k in y], float(right.mean())


def assert_distributions(q, nan_rows=()):
    ok = ~np.isnan(q).any(axis=1)
    assert set(np.flatnonzero(~ok)) == set(nan_rows)
    assert np.isnan(q[~ok]).all()
    assert (q[ok] >= 0).all() and np.allclose(q[ok].sum(axis=1), 1.0)


# -- temperature scaling ------------------------------------------------------------------
def test_temperature_scaling_recovers_the_temperature_of_overconfident_softmax_outputs():
    probs, gold = overconfident(temperature=2.0)
    exact = fit_calibrator(probs, gold, LABELS, smoothing=1e-9)
    assert exact.method == "temperature" and exact.n == 3000
    assert exact.temperature == pytest.approx(2.0, rel=0.06)
    default = fit_calibrator(probs, gold, LABELS)  # the floor of 0.001 biases T down a little
    assert default.temperature == pytest.approx(2.0, rel=0.1)
    # apply divides the log-probabilities by T: the truth comes back
    z = np.log(probs[:5])
    assert exact.apply(probs[:5]) == pytest.approx(softmax(z / exact.temperature), abs=1e-6)


def test_temperature_scaling_lowers_held_out_ece_and_brier_without_moving_the_top_label():
    probs, gold = overconfident(n=1500, temperature=3.0, seed=2)
    out = cross_fitted(probs, gold, LABELS)
    assert out["method"] == "temperature" and out["n"] == 1500 and out["folds"] == 5
    assert out["before"]["ece"] > 0.15
    assert out["after"]["ece"] < out["before"]["ece"] / 3
    assert out["after"]["brier"] < out["before"]["brier"]
    fitted = fit_calibrator(probs, gold, LABELS)
    assert (fitted.apply(probs).argmax(axis=1) == probs.argmax(axis=1)).all()


def test_a_one_hot_annotator_gets_its_accuracy_as_top_probability_and_the_rest_spread():
    probs, gold, accuracy = one_hot(accuracy=0.7)
    fitted = fit_calibrator(probs, gold, LABELS)
    assert fitted.temperature > 1  # softer: mass moves from the chosen label to the others
    q = fitted.apply(probs)
    assert q.max(axis=1) == pytest.approx(np.full(len(q), accuracy), abs=1e-4)
    others = np.sort(q, axis=1)[:, :-1]
    assert others == pytest.approx(np.full_like(others, (1 - accuracy) / 3), abs=1e-4)
    out = cross_fitted(probs, gold, LABELS)
    assert out["before"]["ece"] == pytest.approx(1 - accuracy)  # always sure, right 70% of the time
    assert out["after"]["ece"] < 0.05


def test_an_annotator_at_chance_is_made_nearly_uniform():
    probs, gold, _ = one_hot(accuracy=0.25, seed=3)
    q = fit_calibrator(probs, gold, LABELS).apply(probs)
    assert q.max() < 0.3


def test_gold_outside_the_labels_is_left_out_of_the_temperature_fit_but_is_a_miss_for_isotonic():
    probs, gold, _ = one_hot(n=200, accuracy=0.8, seed=4)
    extra = [*gold, *["frustration"] * 50]
    probs_extra = np.vstack([probs, np.tile(np.eye(4)[0], (50, 1))])
    assert fit_calibrator(probs_extra, extra, LABELS).n == 200
    assert fit_calibrator(probs_extra, extra, LABELS).temperature == pytest.approx(
        fit_calibrator(probs, gold, LABELS).temperature)
    iso = fit_calibrator(probs_extra, extra, LABELS, method="isotonic")
    assert iso.n == 250
    # a chosen "a" is right less often once the 50 out-of-set misses count
    assert iso.apply(np.eye(4)[:1])[0, 0] < fit_calibrator(probs, gold, LABELS, method="isotonic").apply(
        np.eye(4)[:1])[0, 0]


# -- isotonic regression and histogram binning ----------------------------------------------
@pytest.mark.parametrize("method", ["isotonic", "histogram"])
def test_isotonic_and_histogram_maps_give_distributions_and_lower_held_out_ece(method):
    probs, gold = overconfident(n=1500, temperature=3.0, seed=5)
    probs[[3, 10]] = np.nan  # no answer: left out of the fit, NaN after
    fitted = fit_calibrator(probs, gold, LABELS, method=method)
    assert fitted.method == method and fitted.n == 1498 and np.isnan(fitted.temperature)
    assert len(fitted.knots) == len(LABELS)
    assert_distributions(fitted.apply(probs), nan_rows=(3, 10))
    fresh = np.vstack([np.eye(4), np.full((1, 4), 0.25), np.full((1, 4), np.nan)])  # the extremes and the middle
    assert_distributions(fitted.apply(fresh), nan_rows=(5,))
    out = cross_fitted(probs, gold, LABELS, method=method)
    assert out["n"] == 1498
    assert out["after"]["ece"] < out["before"]["ece"] / 3
    assert out["after"]["brier"] < out["before"]["brier"]


def test_isotonic_on_one_hot_rows_estimates_how_often_a_chosen_label_is_right():
    probs, gold, accuracy = one_hot(accuracy=0.6, seed=6)
    q = fit_calibrator(probs, gold, LABELS, method="isotonic").apply(probs)
    assert_distributions(q)
    assert np.average(q.max(axis=1)) == pytest.approx(accuracy, abs=0.03)


def test_histogram_bins_split_at_weighted_quantiles():
    x = np.linspace(0.05, 0.95, 20)
    probs = np.column_stack([x, 1 - x])
    gold = ["a" if v > 0.5 else "b" for v in x]
    fitted = fit_calibrator(probs, gold, ["a", "b"], method="histogram", bins=4)
    cuts, values = fitted.knots[0]
    assert len(cuts) == 3 and len(values) == 4
    assert values == pytest.approx((0.0, 0.0, 1.0, 1.0))
    assert fitted.apply(np.array([[0.9, 0.1], [0.1, 0.9]])) == pytest.approx(np.array([[1.0, 0.0], [0.0, 1.0]]))


# -- cross-fitting --------------------------------------------------------------------------
def test_cross_fitting_calibrates_each_item_with_a_map_fitted_without_it(monkeypatch):
    probs, gold = overconfident(n=100, seed=7)
    fitted_on, applied_to = [], []
    real = recalibrate.fit_calibrator

    class Spy:
        def __init__(self, inner, rows):
            self.inner, self.rows = inner, rows

        def apply(self, p):
            rows = {tuple(r) for r in p}
            assert not rows & self.rows, "a held-out item was in the training folds"
            applied_to.extend(rows)
            return self.inner.apply(p)

    def spy(p, g, labels, **kwargs):
        rows = {tuple(r) for r in p}
        fitted_on.append(rows)
        return Spy(real(p, g, labels, **kwargs), rows)

    monkeypatch.setattr(recalibrate, "fit_calibrator", spy)
    out = cross_fitted(probs, gold, LABELS, folds=4)
    assert len(fitted_on) == 4 and all(len(rows) == 75 for rows in fitted_on)
    assert sorted(applied_to) == sorted(tuple(r) for r in probs)  # each item held out exactly once
    assert out["folds"] == 4


def test_a_memorising_calibrator_shows_its_gain_only_on_the_items_it_was_fitted_on():
    rng = np.random.default_rng(8)
    probs = rng.dirichlet(np.ones(4), 400)  # confidence says nothing about gold
    gold = rng.choice(LABELS, 400).tolist()
    memoriser = fit_calibrator(probs, gold, LABELS, method="histogram", bins=10_000)  # one item per bin
    in_sample = calibration(memoriser.apply(probs), gold, LABELS)
    assert in_sample["ece"] == pytest.approx(0.0, abs=1e-9) and in_sample["brier"] == pytest.approx(0.0, abs=1e-9)
    out = cross_fitted(probs, gold, LABELS, method="histogram", bins=10_000)
    assert out["after"]["ece"] > 0.3 and out["after"]["brier"] > out["before"]["brier"]


def test_cross_fitting_is_seeded():
    probs, gold = overconfident(n=300, seed=9)
    first = cross_fitted(probs, gold, LABELS, method="isotonic", seed=3)
    assert first == cross_fitted(probs, gold, LABELS, method="isotonic", seed=3)
    assert first["before"] == cross_fitted(probs, gold, LABELS, method="isotonic", seed=4)["before"]


# -- weights --------------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["temperature", "isotonic", "histogram"])
def test_weight_zero_ignores_an_item_and_weight_two_counts_it_twice(method):
    probs, gold = overconfident(n=200, seed=10)
    weights = np.ones(200)
    weights[:50] = 0.0
    weights[50:80] = 2.0
    weighted = fit_calibrator(probs, gold, LABELS, method=method, weights=weights)
    rows = [*range(50, 80), *range(50, 200)]
    copied = fit_calibrator(probs[rows], [gold[i] for i in rows], LABELS, method=method)
    assert weighted.n == 150
    assert weighted.apply(probs) == pytest.approx(copied.apply(probs), abs=1e-5)


def test_weights_pull_the_temperature_towards_the_heavier_items():
    sure, gold_sure = overconfident(n=600, temperature=3.0, seed=11)
    honest, gold_honest = overconfident(n=600, temperature=1.0, seed=12)
    probs, gold = np.vstack([sure, honest]), gold_sure + gold_honest
    even = fit_calibrator(probs, gold, LABELS).temperature
    heavy_sure = fit_calibrator(probs, gold, LABELS, weights=[10.0] * 600 + [1.0] * 600).temperature
    heavy_honest = fit_calibrator(probs, gold, LABELS, weights=[1.0] * 600 + [10.0] * 600).temperature
    assert heavy_honest < even < heavy_sure


def test_weighted_ece_and_brier_equal_those_of_repeated_items():
    probs = np.array([[0.9, 0.1], [0.8, 0.2], [0.6, 0.4], [0.3, 0.7], [0.5, 0.5]])
    gold = ["a", "b", "a", "b", "a"]
    weighted = calibration(probs, gold, ["a", "b"], weights=[2, 1, 3, 1, 0])
    repeated = calibration(probs[[0, 0, 1, 2, 2, 2, 3]], ["a", "a", "b", "a", "a", "a", "b"], ["a", "b"])
    assert weighted["n"] == 4  # the item of weight 0 is left out
    assert weighted["ece"] == pytest.approx(repeated["ece"])
    assert weighted["brier"] == pytest.approx(repeated["brier"])
    out = cross_fitted(*overconfident(n=200, seed=13), LABELS, weights=np.r_[np.zeros(20), np.ones(180)])
    assert out["n"] == 180


# -- errors that say what to do -------------------------------------------------------------
def test_too_few_gold_items_says_how_many_are_needed():
    probs, gold = overconfident(n=30, seed=14)
    few = [g if i < MIN_GOLD - 1 else None for i, g in enumerate(gold)]
    with pytest.raises(ConfigError, match=r"needs at least 10 items with a gold label.*got 9") as error:
        fit_calibrator(probs, few, LABELS, method="isotonic")
    assert "label at least 10 items" in error.value.fix
    with pytest.raises(ConfigError, match="whose gold label is one of the labels; got 0"):
        fit_calibrator(probs, ["z"] * 30, LABELS)
    with pytest.raises(ConfigError, match=r"5-fold cross-fitting needs at least 13 items .* got 12") as error:
        cross_fitted(probs[:12], gold[:12], LABELS)
    assert "folds=2 needs 20" in error.value.fix


def test_bad_arguments_name_the_field_and_the_fix():
    probs, gold = overconfident(n=40, seed=15)
    cases = [
        (dict(method="platt"), "unknown calibration method 'platt'", "temperature, isotonic, histogram"),
        (dict(weights=[1.0] * 3), r"weights must hold one number per item: got shape \(3,\)", "aligned"),
        (dict(weights=[-1.0] * 40), "finite and non-negative", "inclusion probability"),
        (dict(bins=0), "bins must be a whole number", "bins=10"),
        (dict(smoothing=0.0), "smoothing must lie strictly between 0 and 1", "smoothing=0.001"),
    ]
    for kwargs, message, fix in cases:
        with pytest.raises(ConfigError, match=message) as error:
            fit_calibrator(probs, gold, LABELS, **kwargs)
        assert fix in error.value.fix
    with pytest.raises(ConfigError, match=r"one column per label: got shape \(40, 4\), expected \(items, 3\)"):
        fit_calibrator(probs, gold, LABELS[:3])
    counts = probs.copy()
    counts[7] *= 5
    with pytest.raises(ConfigError, match="probs row 7 is not a probability distribution") as error:
        fit_calibrator(counts, gold, LABELS)
    assert "divide counts by their row total" in error.value.fix
    with pytest.raises(ConfigError, match="gold has 39 values but probs has 40 rows"):
        fit_calibrator(probs, gold[:-1], LABELS)
    with pytest.raises(ConfigError, match="folds must be a whole number of at least 2, got 1"):
        cross_fitted(probs, gold, LABELS, folds=1)


def test_a_missing_trust_extra_is_a_config_error_with_the_install_command(monkeypatch):
    probs, gold = overconfident(n=40, seed=16)
    monkeypatch.setitem(sys.modules, "sklearn.isotonic", None)
    with pytest.raises(ConfigError, match="needs scikit-learn, which is not installed") as error:
        fit_calibrator(probs, gold, LABELS, method="isotonic")
    assert error.value.fix == "pip install 'llm-annotator-kit[trust]'"
    monkeypatch.setitem(sys.modules, "scipy.optimize", None)
    with pytest.raises(ConfigError, match=re.escape("needs scipy")):
        fit_calibrator(probs, gold, LABELS)


def test_a_calibrator_is_frozen():
    probs, gold = overconfident(n=40, seed=17)
    fitted = fit_calibrator(probs, gold, LABELS)
    with pytest.raises(dataclasses.FrozenInstanceError):
        fitted.temperature = 1.0  # type: ignore[misc]

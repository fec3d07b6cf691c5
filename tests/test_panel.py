"""Annotators that fail together (issue 17): correlated errors against gold, the effective
number of independent annotators, and distances to human label distributions."""

import numpy as np
import pandas as pd
import pytest
from scipy.stats import entropy

from llm_annotator.analysis.panel import distribution_distance, error_correlation
from llm_annotator.core.errors import ConfigError

LABELS = ["a", "b", "c"]


def panel(n=3000, m=5, error=0.3, seed=0, copies=False):
    """Gold and m annotators who err with probability ``error`` each, independently (or all
    copies of the first when ``copies``); a wrong answer is one of the other labels."""
    rng = np.random.default_rng(seed)
    gold = rng.choice(LABELS, n)
    columns = {}
    for j in range(m):
        if copies and j:
            columns[f"m{j}"] = columns["m0"]
            continue
        wrong = rng.random(n) < error
        shift = rng.integers(1, len(LABELS), n)
        codes = np.array([LABELS.index(g) for g in gold])
        columns[f"m{j}"] = np.where(wrong, np.array(LABELS)[(codes + shift) % len(LABELS)], gold)
    return pd.DataFrame(columns), gold.tolist()


# -- error correlation and the effective number of annotators ------------------------------
def test_identical_annotators_fail_together_and_count_as_one():
    table, gold = panel(n=500, copies=True)
    out = error_correlation(table, gold, labels=LABELS)
    assert out["annotators"] == ["m0", "m1", "m2", "m3", "m4"]
    assert len(out["pairs"]) == 10 and all(p["phi"] == pytest.approx(1.0) for p in out["pairs"])
    assert out["mean_phi"] == pytest.approx(1.0) and out["pairs_used"] == 10
    assert out["design_effect"] == pytest.approx(5.0)
    assert out["effective_number"] == pytest.approx(1.0)
    assert out["effective_number_eigen"] == pytest.approx(1.0)


def test_independent_annotators_count_as_nearly_m():
    table, gold = panel(n=3000, m=5)
    out = error_correlation(table, gold, labels=LABELS)
    assert abs(out["mean_phi"]) < 0.03
    assert 4.5 < out["effective_number"] <= 5.0
    assert 4.9 < out["effective_number_eigen"] <= 5.0
    for rate in out["error_rate"].values():
        assert rate["n"] == 3000 and rate["rate"] == pytest.approx(0.3, abs=0.03)


def test_two_clusters_of_look_alikes_are_about_two_annotators():
    rng = np.random.default_rng(1)
    gold = rng.choice(LABELS, 2000).tolist()
    other = ["b" if g == "a" else "a" for g in gold]
    columns = {}
    for cluster in ("p", "q"):  # three copies of one pattern of errors per cluster
        wrong = rng.random(2000) < 0.3
        for j in range(3):
            columns[f"{cluster}{j}"] = np.where(wrong, other, gold)
    out = error_correlation(pd.DataFrame(columns), gold, labels=LABELS)
    rho = out["mean_phi"]
    assert rho == pytest.approx(6 / 15, abs=0.03)  # 6 of 15 pairs share their errors, 9 are independent
    assert out["effective_number"] == pytest.approx(6 / (1 + 5 * rho))
    assert out["effective_number_eigen"] == pytest.approx(2.0, abs=0.05)  # the structure the mean hides


def test_phi_by_hand_with_missing_labels_gold_and_a_gold_label_outside_the_set():
    table = pd.DataFrame({"x": ["a", "b", "a", None, "a", "c", "b", "a"],
                          "y": ["a", "a", "a", "b", np.nan, "c", "c", "b"]})
    gold = ["a", "b", "z", "b", "a", "c", None, "a"]
    out = error_correlation(table, gold, labels=LABELS)
    # rows where both answered and gold exists: 0, 1, 2, 5, 7; errors x: 0 0 1 0 0, y: 0 1 1 0 1
    ex, ey = np.array([0, 0, 1, 0, 0]), np.array([0, 1, 1, 0, 1])
    n11, n00 = np.sum(ex & ey), np.sum((1 - ex) & (1 - ey))
    n10, n01 = np.sum(ex & (1 - ey)), np.sum((1 - ex) & ey)
    phi = (n11 * n00 - n10 * n01) / np.sqrt((n11 + n10) * (n01 + n00) * (n11 + n01) * (n10 + n00))
    assert out["pairs"] == [{"a": "x", "b": "y", "phi": pytest.approx(phi), "n": 5, "both_wrong": 1}]
    assert out["error_rate"] == {"x": {"rate": pytest.approx(1 / 6), "n": 6},
                                 "y": {"rate": pytest.approx(3 / 6), "n": 6}}
    assert out["effective_number"] == pytest.approx(2 / (1 + phi))


def test_errors_that_cancel_do_not_make_a_panel_worth_more_than_its_members():
    gold = ["a"] * 20
    table = pd.DataFrame({"x": ["a", "b"] * 10, "y": ["b", "a"] * 10})
    out = error_correlation(table, gold, labels=LABELS)
    assert out["mean_phi"] == pytest.approx(-1.0)
    assert out["design_effect"] == 1.0 and out["effective_number"] == 2.0
    assert out["effective_number_eigen"] == pytest.approx(1.0)  # |φ| = 1: one pattern of errors


def test_an_annotator_never_wrong_leaves_the_correlation_undefined():
    gold = ["a", "b", "c", "a"] * 5
    table = pd.DataFrame({"right": gold, "other": ["a", "a", "a", "a"] * 5})
    out = error_correlation(table, gold, labels=LABELS)
    assert np.isnan(out["pairs"][0]["phi"]) and out["pairs_used"] == 0
    assert np.isnan(out["effective_number"]) and np.isnan(out["effective_number_eigen"])
    single = error_correlation(table[["other"]], gold, labels=LABELS)
    assert single["pairs"] == [] and single["effective_number"] == 1.0


def test_error_correlation_explains_bad_input():
    table = pd.DataFrame({"gpt": ["a", "frustration"], "llama": ["a", "b"]})
    with pytest.raises(ConfigError, match="annotator 'gpt' has label 'frustration' on row 1") as error:
        error_correlation(table, ["a", "b"], labels=LABELS)
    assert "missing (None)" in error.value.fix
    with pytest.raises(ConfigError, match="gold has 3 values but table has 2 rows"):
        error_correlation(table, ["a", "b", "c"], labels=[*LABELS, "frustration"])
    with pytest.raises(ConfigError, match="table must be a pandas DataFrame of items x annotators, got list"):
        error_correlation([["a"]], ["a"], labels=LABELS)


# -- distances to human label distributions ------------------------------------------------
def test_distances_match_independent_computations():
    p = np.array([[0.7, 0.3, 0.0], [0.2, 0.5, 0.3], [1.0, 0.0, 0.0], [np.nan] * 3, [0.5, 0.5, 0.0]])
    q = np.array([[0.5, 0.25, 0.25], [0.2, 0.5, 0.3], [0.0, 1.0, 0.0], [0.4, 0.6, 0.0], [np.nan] * 3])
    out = distribution_distance(p, q)
    assert out["n"] == 3 and out["skipped"] == 2 and out["base"] == 2 and out["smoothing"] == 0.001
    p, q = p[:3], q[:3]
    mid = (p + q) / 2

    def kl2(a, b):  # Σ a log2(a / b) over a > 0
        return sum(x * np.log2(x / y) for x, y in zip(a, b, strict=True) if x > 0)

    js = [0.5 * kl2(a, m) + 0.5 * kl2(b, m) for a, b, m in zip(p, q, mid, strict=True)]
    assert out["jensen_shannon"] == pytest.approx(np.mean(js))
    assert js[1] == 0 and js[2] == pytest.approx(1.0)  # equal rows, then disjoint one-hots
    smoothed = 0.999 * p + 0.001 / 3
    assert out["kl_human_llm"] == pytest.approx(np.mean(entropy(q, smoothed, base=2, axis=1)))
    assert out["total_variation"] == pytest.approx(np.mean([0.25, 0.0, 1.0]))


def test_kl_is_capped_by_the_smoothing_and_js_lies_in_zero_one():
    p, q = np.eye(3), np.roll(np.eye(3), 1, axis=0)
    out = distribution_distance(p, q, smoothing=0.01)
    assert out["jensen_shannon"] == pytest.approx(1.0) and out["total_variation"] == pytest.approx(1.0)
    assert out["kl_human_llm"] == pytest.approx(np.log2(3 / 0.01))
    empty = distribution_distance(np.full((2, 3), np.nan), np.eye(3)[:2])
    assert empty["n"] == 0 and np.isnan(empty["jensen_shannon"])


def test_distribution_distance_explains_bad_input():
    with pytest.raises(ConfigError, match=r"q must be a 2-D array of shape \(2, 3\), the shape of p, got \(2, 2\)"):
        distribution_distance(np.eye(3)[:2], np.eye(2))
    counts = np.array([[3.0, 1.0, 0.0], [1.0, 1.0, 2.0]])
    with pytest.raises(ConfigError, match=r"q row 0 is not a probability distribution") as error:
        distribution_distance(np.eye(3)[:2], counts)
    assert "divide counts by their row total" in error.value.fix
    with pytest.raises(ConfigError, match="p row 1 is not a probability distribution"):
        distribution_distance(np.array([[1.0, 0.0, 0.0], [1.5, -0.5, 0.0]]), np.eye(3)[:2])
    with pytest.raises(ConfigError, match="smoothing must lie strictly between 0 and 1"):
        distribution_distance(np.eye(3), np.eye(3), smoothing=1.0)

import json
import subprocess
import sys

import krippendorff
import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn.metrics import cohen_kappa_score, f1_score, recall_score

from llm_annotator.analysis import agreement as A
from llm_annotator.analysis.calibration import accuracy_coverage, bootstrap, calibration
from llm_annotator.core.errors import DataError
from llm_annotator.outputs.columns import result_from_columns

LABELS = ["a", "b", "c", "d"]


def test_melt_published_labels_reproduce_the_measured_figures(shared_data):
    result = result_from_columns(shared_data / "melt" / "meld_train.csv", ["Emotion", "llm_label"])
    figures = result.agreement(gold="Emotion", bootstrap=0)
    assert figures["n_items"] == 7024
    assert round(figures["percent_agreement"], 4) == 0.5357
    assert round(figures["pairwise_cohen_kappa"]["Emotion"]["llm_label"], 3) == 0.392
    assert round(figures["krippendorff_alpha"], 3) == 0.388
    gpt = figures["vs_gold"]["llm_label"]
    assert round(gpt["accuracy"], 4) == 0.5357 and round(gpt["cohen_kappa"], 3) == 0.392
    # GPT-4o moves sadness towards neutral and anger towards surprise (MELT's finding)
    m = np.array(gpt["confusion"])
    c = gpt["classes"]
    assert m[c.index("sadness"), c.index("neutral")] > m[c.index("sadness"), c.index("joy")]
    assert m[c.index("anger"), c.index("surprise")] > m[c.index("anger"), c.index("joy")]


def test_vs_gold_equals_scikit_learn():
    rng = np.random.default_rng(3)
    gold = rng.choice(LABELS, 500, p=[0.5, 0.3, 0.15, 0.05]).tolist()
    pred = [g if rng.random() < 0.6 else rng.choice(LABELS) for g in gold]
    m = A.vs_gold(gold, pred, LABELS)
    assert m["accuracy"] == pytest.approx(np.mean(np.array(gold) == np.array(pred)))
    assert m["macro_f1"] == pytest.approx(f1_score(gold, pred, average="macro"))
    assert m["uar"] == pytest.approx(recall_score(gold, pred, average="macro"))
    assert m["cohen_kappa"] == pytest.approx(cohen_kappa_score(gold, pred))
    with_missing = A.vs_gold([*gold, None, "a"], [*pred, "a", None], LABELS)
    assert with_missing["n"] == 500 and with_missing["accuracy"] == pytest.approx(m["accuracy"])


def test_alpha_with_missing_data_equals_the_krippendorff_package():
    rng = np.random.default_rng(5)
    matrix = rng.integers(0, 4, size=(4, 300)).astype(float)
    matrix[rng.random(matrix.shape) < 0.25] = np.nan
    expected = krippendorff.alpha(reliability_data=matrix, level_of_measurement="nominal")
    assert A.krippendorff_alpha(matrix) == pytest.approx(expected)
    parts = A.item_coincidences(matrix, 4).sum(axis=0).reshape(4, 4)
    assert A.alpha_from_coincidence(parts) == pytest.approx(expected)
    ordinal = krippendorff.alpha(reliability_data=matrix, level_of_measurement="ordinal")
    assert A.krippendorff_alpha(matrix, "ordinal") == pytest.approx(ordinal)


def test_fleiss_kappa_textbook_example():
    # Fleiss (1971)-style example: 10 items, 14 raters, 5 categories; kappa = 0.210
    counts = [[0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0], [2, 2, 8, 1, 1],
              [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2], [6, 5, 2, 1, 0], [0, 2, 2, 3, 7]]
    matrix = np.full((14, 10), np.nan)
    for item, row in enumerate(counts):
        codes = [k for k, n in enumerate(row) for _ in range(n)]
        matrix[:, item] = codes
    assert A.fleiss_kappa(matrix, 5) == pytest.approx(0.20993, abs=1e-5)


def test_percent_agreement_and_missing_votes():
    table = pd.DataFrame({"x": ["a", "a", "b", None], "y": ["a", "b", "b", "c"], "z": ["a", None, "b", None]})
    matrix = A.reliability_matrix(table, LABELS)
    # item 1: 3/3 pairs agree; item 2: 0/1; item 3: 3/3; item 4: one label only (not counted)
    assert A.percent_agreement(matrix, 4) == pytest.approx((1 + 0 + 1) / 3)


def test_bootstrap_is_seeded_and_brackets_the_estimate():
    rng = np.random.default_rng(1)
    table = pd.DataFrame({"x": rng.choice(LABELS, 400), "y": rng.choice(LABELS, 400)})
    table["y"] = np.where(rng.random(400) < 0.5, table["x"], table["y"])
    first = A.bootstrap_intervals(table, LABELS, gold=table["x"].tolist(), rounds=300, seed=4)
    again = A.bootstrap_intervals(table, LABELS, gold=table["x"].tolist(), rounds=300, seed=4)
    assert first == again
    alpha = A.krippendorff_alpha(A.reliability_matrix(table, LABELS))
    assert first["krippendorff_alpha"]["low"] < alpha < first["krippendorff_alpha"]["high"]
    accuracy = np.mean(table["x"] == table["y"])
    assert first["vs_gold"]["y"]["accuracy"]["low"] < accuracy < first["vs_gold"]["y"]["accuracy"]["high"]
    generic = bootstrap(lambda idx: float(np.mean((table["x"] == table["y"]).to_numpy()[idx])), 400, rounds=300)
    assert generic["estimate"] == pytest.approx(accuracy)


def test_calibration_by_hand():
    probs = np.array([[0.9, 0.1], [0.8, 0.2], [0.6, 0.4], [0.3, 0.7]])
    gold = ["a", "b", "a", "b"]
    out = calibration(probs, gold, ["a", "b"], bins=2)
    # bin (0.5, 1]: all four items, confidence mean 0.75, accuracy 3/4
    assert out["ece"] == pytest.approx(abs(0.75 - 0.75))
    brier = np.mean([(0.9 - 1) ** 2 + 0.1 ** 2, 0.8 ** 2 + (0.2 - 1) ** 2, 0.4 ** 2 * 2, 0.3 ** 2 + 0.3 ** 2])
    assert out["brier"] == pytest.approx(brier)
    out = calibration(probs, gold, ["a", "b"], bins=10)
    expected = (abs(1 - 0.9) + abs(0 - 0.8) + abs(1 - 0.6) + abs(1 - 0.7)) / 4
    assert out["ece"] == pytest.approx(expected)
    assert [p["n"] for p in out["reliability"]] == [1, 1, 1, 1]


def test_accuracy_coverage_keeps_the_most_confident_first():
    curve = accuracy_coverage(np.array([0.9, 0.8, 0.7, 0.6]), np.array([1, 1, 0, 0]), points=4)
    assert [round(p["accuracy"], 3) for p in curve] == [1.0, 1.0, 0.667, 0.5]


def test_agree_cli_on_a_csv_writes_agreement_json(tmp_path):
    path = tmp_path / "labels.csv"
    pd.DataFrame({"id": range(6), "human": list("aabbcc"), "model": list("abbbcc"),
                  "other": ["a", "a", "b", "frustration", "c", ""]}).to_csv(path, index=False)
    out = tmp_path / "agreement.json"
    proc = subprocess.run([sys.executable, "-m", "llm_annotator", "agree", str(path), "--columns", "human", "model",
                           "other", "--gold", "human", "--labels", "a,b,c", "--out", str(out), "--bootstrap", "50"],
                          capture_output=True, text=True, check=True)
    assert "Krippendorff's alpha" in proc.stdout and "against gold (human)" in proc.stdout
    figures = json.loads(out.read_text())
    for key in ("krippendorff_alpha", "fleiss_kappa", "percent_agreement", "pairwise_cohen_kappa"):
        assert key in figures
    model = figures["vs_gold"]["model"]
    assert model["n"] == 6 and model["accuracy"] == pytest.approx(5 / 6)
    assert {"accuracy", "macro_f1", "uar", "cohen_kappa", "n"} <= set(model)
    assert figures["vs_gold"]["other"]["n"] == 4  # 'frustration' is invalid, '' is missing: neither counts


# -- one item set and one label set for an estimate, its interval and its calibration --------
def gold_outside_the_columns(n=40):
    """Gold uses four labels, the annotator columns only two of them."""
    rng = np.random.default_rng(0)
    gold = rng.choice(list("abcd"), n).tolist()
    return [{"gold": g, "model": g if g in "ab" else "a", "const": "a"} for g in gold]


def test_gold_labels_no_annotator_uses_count_alike_in_estimate_interval_and_calibration():
    rows = gold_outside_the_columns()
    result = result_from_columns(rows, ["model", "const"])
    assert result.labels_order == ["a", "b"]  # inferred from the annotator columns only
    figures = result.agreement(gold="gold", bootstrap=300)
    gold = [r["gold"] for r in rows]
    for name in ("model", "const"):
        pred = [r[name] for r in rows]
        point = figures["vs_gold"][name]
        assert point["n"] == figures["calibration"][name]["n"] == len(rows)
        assert point["accuracy"] == pytest.approx(np.mean(np.array(gold) == np.array(pred)))
        assert point["cohen_kappa"] == pytest.approx(cohen_kappa_score(gold, pred))
        for key in ("accuracy", "macro_f1", "uar", "cohen_kappa"):
            interval = figures["ci"]["vs_gold"][name][key]
            assert interval["low"] <= point[key] <= interval["high"], (name, key, point[key], interval)
    accuracy = figures["vs_gold"]["const"]["accuracy"]
    assert figures["calibration"]["const"]["ece"] == pytest.approx(1 - accuracy)  # always sure, often wrong
    assert figures["calibration"]["const"]["brier"] == pytest.approx(2 * (1 - accuracy))


def test_a_constant_predictor_is_miscalibrated_by_its_error_rate():
    gold = ["a", "a", "b", "c", "z", None]  # 'z' is outside the label set, None is missing
    probs = np.tile([1.0, 0.0, 0.0], (len(gold), 1))
    out = calibration(probs, gold, ["a", "b", "c"], bins=10)
    assert out["n"] == 5
    assert out["ece"] == pytest.approx(1 - 2 / 5)
    assert out["brier"] == pytest.approx(2 * 3 / 5)
    assert out["reliability"] == [{"bin": [pytest.approx(0.9), 1.0], "confidence": 1.0, "accuracy": pytest.approx(0.4),
                                   "n": 5}]


def assert_within(point, interval, what):
    """A figure and its interval: both undefined, or the interval holds the figure (up to
    rounding: the estimate comes from the krippendorff package, the resamples from numpy)."""
    if np.isnan(point):
        assert np.isnan(interval["low"]) and np.isnan(interval["high"]), (what, point, interval)
    else:
        assert interval["low"] - 1e-12 <= point <= interval["high"] + 1e-12, (what, point, interval)


label_cells = st.sampled_from(["a", "b", "c", None])
tables = st.integers(min_value=1, max_value=30).flatmap(lambda n: st.fixed_dictionaries({
    "x": st.lists(label_cells, min_size=n, max_size=n),
    "y": st.lists(label_cells, min_size=n, max_size=n),
    "z": st.lists(label_cells, min_size=n, max_size=n),
    "gold": st.lists(st.sampled_from(["a", "b", "c", "d", None]), min_size=n, max_size=n),
}))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(columns=tables, labels=st.sampled_from([None, ["a", "b", "c"]]))
def test_every_interval_holds_its_point_estimate(columns, labels):
    rows = [dict(zip(columns, values, strict=True)) for values in zip(*columns.values(), strict=True)]
    for i, row in enumerate(rows):
        row["id"] = f"i{i}"
    if labels is None and not any(any(columns[c]) for c in ("x", "y", "z")):
        with pytest.raises(DataError, match="hold no label"):  # nothing to agree on, and no label set
            result_from_columns(rows, ["x", "y", "z"], labels=labels, id_column="id")
        return
    result = result_from_columns(rows, ["x", "y", "z"], labels=labels, id_column="id")
    figures = result.agreement(gold="gold", bootstrap=200, seed=1)
    ci = figures["ci"]
    assert_within(figures["krippendorff_alpha"], ci["krippendorff_alpha"], "alpha")
    assert_within(figures["percent_agreement"], ci["percent_agreement"], "percent agreement")
    for name in ("x", "y", "z"):
        point = figures["vs_gold"][name]
        assert figures["calibration"][name]["n"] == point["n"]
        for key in ("accuracy", "macro_f1", "uar", "cohen_kappa"):
            assert_within(point[key], ci["vs_gold"][name][key], f"{name} {key}")


@pytest.mark.parametrize("level", ["nominal", "ordinal", "interval"])
def test_alpha_interval_is_of_the_same_level_as_the_estimate(level):
    rng = np.random.default_rng(7)
    matrix = rng.integers(0, 4, size=(3, 200)).astype(float)
    matrix[1] = np.where(rng.random(200) < 0.6, matrix[0], matrix[1])
    matrix[rng.random(matrix.shape) < 0.2] = np.nan
    expected = krippendorff.alpha(reliability_data=matrix, level_of_measurement=level)
    parts = A.item_coincidences(matrix, 4).sum(axis=0).reshape(4, 4)
    assert A.alpha_from_coincidence(parts, level) == pytest.approx(expected)
    assert A.krippendorff_alpha(matrix, level) == pytest.approx(expected)
    table = pd.DataFrame({f"c{i}": [None if np.isnan(v) else LABELS[int(v)] for v in row]
                          for i, row in enumerate(matrix)})
    ci = A.bootstrap_intervals(table, LABELS, rounds=300, measure=level)
    assert ci["measure"] == level
    assert ci["krippendorff_alpha"]["low"] < expected < ci["krippendorff_alpha"]["high"]


def test_alpha_of_one_value_everywhere_is_undefined_not_an_error():
    assert np.isnan(A.krippendorff_alpha(np.zeros((2, 5))))


def test_an_annotator_column_without_any_label_has_no_figures_but_no_crash():
    rows = [{"id": f"i{i}", "x": "a", "y": "b" if i % 2 else "a", "z": None, "gold": "a"} for i in range(6)]
    figures = result_from_columns(rows, ["x", "y", "z"], id_column="id").agreement(gold="gold", bootstrap=50)
    assert figures["calibration"]["z"]["n"] == 0 and figures["vs_gold"]["x"]["accuracy"] == 1.0


def test_an_ordinal_alpha_gets_an_ordinal_interval():
    rng = np.random.default_rng(2)
    x = rng.choice(LABELS, 120).tolist()
    rows = [{"id": str(i), "x": v, "y": v if rng.random() < 0.5 else LABELS[(LABELS.index(v) + 1) % 4]}
            for i, v in enumerate(x)]
    figures = result_from_columns(rows, ["x", "y"], labels=LABELS, id_column="id").agreement(
        level="ordinal", bootstrap=300)
    assert figures["ci"]["measure"] == "ordinal"
    assert_within(figures["krippendorff_alpha"], figures["ci"]["krippendorff_alpha"], "ordinal alpha")


def test_annotator_labels_keep_the_given_annotators_in_their_order():
    result = result_from_columns([{"id": str(i), "x": "a", "y": "b", "z": None} for i in range(3)], ["x", "y", "z"],
                                 id_column="id")
    votes = result.votes.iloc[::-1]  # votes arrive in any order
    assert list(A.annotator_labels(votes, ["a", "b"], ["0", "1", "2"]).columns) == ["y", "x"]
    table = A.annotator_labels(votes, ["a", "b"], ["0", "1", "2"], annotators=["x", "y", "z"])
    assert list(table.columns) == ["x", "y", "z"] and table["z"].isna().all() and (table["x"] == "a").all()
    figures = A.agreement_table(table, ["a", "b"], gold=["a", "a", "b"])
    assert figures["vs_gold"]["z"]["n"] == 0 and figures["vs_gold"]["x"]["accuracy"] == pytest.approx(2 / 3)
    assert np.isnan(figures["pairwise_cohen_kappa"]["x"]["z"])

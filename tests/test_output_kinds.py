"""The figures of ordinal, numeric and multi-label outputs: tables, agreement, vs gold, end to end."""

from __future__ import annotations

import json
from typing import Any

import krippendorff
import numpy as np
import pandas as pd
import pytest
from scipy.stats import pearsonr
from sklearn.metrics import (
    f1_score,
    hamming_loss,
    jaccard_score,
    mean_absolute_error,
    mean_squared_error,
)

from llm_annotator.analysis.agreement import to_json
from llm_annotator.analysis.kinds import format_output_report, output_moments, output_table
from llm_annotator.core.errors import ConfigError
from llm_annotator.core.outputs import OutputSpec
from llm_annotator.core.task import Task, parse_task_text
from llm_annotator.core.votes import Vote, votes_frame
from llm_annotator.outputs.kinds import MultiLabelResult, NumericResult, OrdinalResult
from llm_annotator.outputs.result import AnnotationResult
from llm_annotator.outputs.tables import label_table
from llm_annotator.testing.responders import user_text

PROBS = np.array([[0.2, 0.3, 0.5], [0.6, 0.1, 0.3], [0.0, 0.0, 1.0], [np.nan, np.nan, np.nan]])
ITEMS = ["a", "b", "c", "d"]
N_VALID = np.array([3, 2, 6, 0])


def test_categorical_table_is_the_label_table_with_soft_labels() -> None:
    spec = OutputSpec(name="sentiment", labels=["neg", "neu", "pos"])
    table = output_table(spec, ITEMS, PROBS, N_VALID, 6)
    expected = label_table(ITEMS, PROBS, N_VALID, 6, ["neg", "neu", "pos"])
    assert table.columns.tolist() == [*expected.columns, "soft_label"]
    pd.testing.assert_frame_equal(table.drop(columns="soft_label"), expected)
    assert table["soft_label"].iloc[0] == [0.2, 0.3, 0.5]


def test_ordinal_table_adds_median_and_spread() -> None:
    spec = OutputSpec(name="intensity", kind="ordinal", labels=["low", "medium", "high"])
    table = output_table(spec, ITEMS, PROBS, N_VALID, 6)
    assert table.columns.tolist()[-3:] == ["median", "spread", "soft_label"]
    # cumulative 0.2, 0.5 -> medium; 0.6 -> low; all on high -> high
    assert table["median"].tolist()[:3] == ["medium", "low", "high"]
    assert pd.isna(table["median"].iloc[3])
    # spread = 2 sum p_k |k - m| / (K - 1): 1 for halves at the two ends
    assert table["spread"].iloc[0] == pytest.approx(2 * (0.2 + 0.5) / 2)
    assert table["spread"].iloc[1] == pytest.approx(2 * (0.1 + 2 * 0.3) / 2)
    assert table["spread"].iloc[2] == 0.0
    assert np.isnan(table["spread"].iloc[3])
    assert table["label"].tolist()[:3] == ["high", "low", "high"]


def test_numeric_table_takes_the_mixture_moments() -> None:
    spec = OutputSpec(name="arousal", kind="numeric", range=(1, 3), integer=True)
    moments = np.array([[2.0, 4.25], [1.5, 2.5], [3.0, 9.0], [np.nan, np.nan]])
    table = output_table(spec, ITEMS, PROBS, N_VALID, 6, moments)
    assert table.columns.tolist() == ["item_id", "p_1", "p_2", "p_3", "label", "confidence", "margin",
                                      "entropy_confidence", "n_valid", "n_requested", "valid_share", "mean", "sd",
                                      "median", "soft_label"]
    assert table["mean"].tolist()[:3] == [2.0, 1.5, 3.0]
    assert table["sd"].tolist()[:3] == pytest.approx([0.5, 0.5, 0.0])
    assert table["median"].tolist()[:3] == [2.0, 1.0, 3.0]
    assert table[["mean", "sd", "median"]].iloc[3].isna().all()
    # without moments: the histogram's over the bins' midpoints
    hist = output_table(spec, ITEMS, PROBS, N_VALID, 6)
    assert hist["mean"].iloc[0] == pytest.approx(0.2 * 1 + 0.3 * 2 + 0.5 * 3)


def test_multi_label_table() -> None:
    spec = OutputSpec(name="emotions", kind="multi_label", labels=["joy", "anger", "sadness"])
    table = output_table(spec, ITEMS, PROBS, N_VALID, 6)
    assert table.columns.tolist() == ["item_id", "p_joy", "p_anger", "p_sadness", "set", "label", "expected_size",
                                      "confidence", "n_valid", "n_requested", "valid_share"]
    assert table["set"].tolist()[:3] == [["sadness"], ["joy"], ["sadness"]]
    assert table["label"].tolist()[:3] == ["sadness", "joy", "sadness"]
    assert pd.isna(table["label"].iloc[3]) and table["set"].iloc[3] is None
    assert table["expected_size"].iloc[0] == pytest.approx(1.0)
    assert table["confidence"].iloc[1] == pytest.approx((0.6 + 0.9 + 0.7) / 3)
    assert table["confidence"].iloc[2] == 1.0
    assert table["valid_share"].tolist() == [0.5, 2 / 6, 1.0, 0.0]


# -- results built from votes -------------------------------------------------------------------
def _task(outputs: str) -> Task:
    return parse_task_text(f"---\nname: kinds\noutputs:\n{outputs}---\n{{{{ text }}}}\n", "<test>")


def _vote(item: str, annotator: str, sample: int, name: str, label: str | None, value: Any = None,
          error: str | None = None) -> Vote:
    cell = {k: v for k, v in {"label": label, "value": value, "error": error}.items() if v is not None}
    return Vote(item_id=item, annotator=annotator, sample_index=sample, label=label, error=error, raw=None,
                distribution=None, model=annotator, prompt_hash="", template_hash="", outputs={name: cell})


def _result(task: Task, votes: list[Vote], items: list[str], samples: int, annotators: list[str],
            **columns: list[Any]) -> AnnotationResult:
    frame = pd.DataFrame({"item_id": items, "text": items, **columns})
    return AnnotationResult(votes_frame(votes), task, frame, samples=samples, annotators=annotators)


# Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability", section C: 4 observers x 12 units.
RELIABILITY = np.array([[1, 2, 3, 3, 2, 1, 4, 1, 2, np.nan, np.nan, np.nan],
                        [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, np.nan, 3],
                        [np.nan, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, np.nan],
                        [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, np.nan]])
OBSERVERS = ["A", "B", "C", "D"]
UNITS = [f"u{j}" for j in range(12)]


def _reliability_result(kind: str) -> AnnotationResult:
    spec = ("    score: {kind: numeric, range: [1, 5], integer: true}\n" if kind == "numeric"
            else "    score: {kind: ordinal, labels: ['1', '2', '3', '4', '5']}\n")
    votes = [_vote(UNITS[j], name, 0, "score", str(int(x)), int(x) if kind == "numeric" else None)
             for i, name in enumerate(OBSERVERS) for j, x in enumerate(RELIABILITY[i]) if not np.isnan(x)]
    return _result(_task(spec), votes, UNITS, 1, OBSERVERS)


def test_numeric_alpha_is_krippendorffs_published_interval_alpha() -> None:
    result = _reliability_result("numeric")
    assert isinstance(result, NumericResult)
    figures = result.agreement(bootstrap=200)
    expected = krippendorff.alpha(reliability_data=RELIABILITY, level_of_measurement="interval")
    assert figures["krippendorff_alpha"] == pytest.approx(expected, abs=1e-12)
    assert round(figures["krippendorff_alpha"], 3) == 0.849
    assert figures["kind"] == "numeric" and figures["output"] == "score"
    low, high = figures["ci"]["krippendorff_alpha"]["low"], figures["ci"]["krippendorff_alpha"]["high"]
    assert low < figures["krippendorff_alpha"] < high
    assert result.agreement(bootstrap=200)["ci"] == figures["ci"]  # seeded


def test_ordinal_alpha_is_krippendorffs_published_ordinal_and_nominal_alpha() -> None:
    result = _reliability_result("ordinal")
    assert isinstance(result, OrdinalResult)
    figures = result.agreement(bootstrap=0)
    expected = krippendorff.alpha(reliability_data=RELIABILITY, level_of_measurement="ordinal")
    assert figures["level"] == "ordinal" and figures["kind"] == "ordinal"
    assert figures["krippendorff_alpha"] == pytest.approx(expected, abs=1e-12)
    assert round(figures["krippendorff_alpha"], 3) == 0.815
    nominal = result.agreement(level="nominal", bootstrap=0)["krippendorff_alpha"]
    assert round(nominal, 3) == 0.743
    assert nominal == pytest.approx(krippendorff.alpha(reliability_data=RELIABILITY, level_of_measurement="nominal"))


def _numeric_run(rng: np.random.Generator) -> tuple[AnnotationResult, np.ndarray, list[Any]]:
    items = [f"i{j}" for j in range(40)]
    draws = rng.integers(1, 6, size=(2, 3, len(items))).astype(float)
    draws[1] = np.clip(draws[0] + rng.integers(-1, 2, size=draws[0].shape), 1, 5)
    draws[0, 2, :5] = np.nan  # invalid answers: missing values
    votes = []
    for a, name in enumerate(["m1", "m2"]):
        for s in range(3):
            for j, item in enumerate(items):
                x = draws[a, s, j]
                votes.append(_vote(item, name, s, "arousal", None, error="out_of_range:9") if np.isnan(x)
                             else _vote(item, name, s, "arousal", str(int(x)), int(x)))
    gold: list[Any] = [float(v) for v in rng.integers(1, 6, size=len(items))]
    gold[3], gold[7] = "n/a", None
    task = _task("    arousal: {kind: numeric, range: [1, 5], integer: true}\n")
    return _result(task, votes, items, 3, ["m1", "m2"], gold=gold), draws, gold


def test_numeric_vs_gold_matches_scikit_learn_and_scipy() -> None:
    result, draws, gold = _numeric_run(np.random.default_rng(1))
    figures = result.agreement(gold="gold", bootstrap=100)
    keep = np.array([isinstance(g, float) for g in gold])
    truth = np.array([g if isinstance(g, float) else np.nan for g in gold])[keep]
    means = np.nanmean(draws, axis=1)  # each annotator's value: the mean of its valid samples
    for a, name in enumerate(["m1", "m2"]):
        scores, pred = figures["vs_gold"][name], means[a][keep]
        assert scores["n"] == 38
        assert scores["mae"] == pytest.approx(mean_absolute_error(truth, pred))
        assert scores["rmse"] == pytest.approx(np.sqrt(mean_squared_error(truth, pred)))
        assert scores["pearson"] == pytest.approx(pearsonr(truth, pred).statistic)
        ccc = 2 * np.cov(truth, pred, bias=True)[0, 1] / (truth.var() + pred.var() + (truth.mean() - pred.mean()) ** 2)
        assert scores["ccc"] == pytest.approx(ccc)
        bounds = figures["ci"]["vs_gold"][name]["mae"]
        assert bounds["low"] <= scores["mae"] <= bounds["high"]
    consensus = means.mean(axis=0)  # equal weight over the two models
    assert figures["vs_gold"]["consensus"]["mae"] == pytest.approx(mean_absolute_error(truth, consensus[keep]))
    assert figures["krippendorff_alpha"] == pytest.approx(krippendorff.alpha(means, level_of_measurement="interval"))
    for a, name in enumerate(["m1", "m2"]):
        consistency = figures["self_consistency"][name]
        assert consistency["alpha"] == pytest.approx(krippendorff.alpha(draws[a], level_of_measurement="interval"))
        assert consistency["mean_sd"] == pytest.approx(np.nanstd(draws[a], axis=0).mean())
    assert json.loads(to_json(figures))["vs_gold"]["m1"]["n"] == 38
    report = format_output_report(figures)
    assert "Krippendorff's alpha (interval): " in report and "against gold (gold):" in report


def test_numeric_labels_are_the_reducers_table() -> None:
    result, draws, _ = _numeric_run(np.random.default_rng(2))
    table = result.labels()
    spec = result.task.primary
    order = result.items["item_id"].tolist()
    probs = result.soft_labels().to_numpy()
    moments = output_moments(result.votes, spec, order)
    same = output_table(spec, order, probs, table["n_valid"].to_numpy(), 6, moments).drop(columns="soft_label")
    pd.testing.assert_frame_equal(table, same)
    per = np.stack([np.nanmean(draws, axis=1), np.nanmean(draws ** 2, axis=1)])  # moment x annotator x item
    mean, mean_sq = per[0].mean(axis=0), per[1].mean(axis=0)
    assert table["mean"].to_numpy() == pytest.approx(mean)
    assert table["sd"].to_numpy() == pytest.approx(np.sqrt(mean_sq - mean ** 2))
    assert table["n_valid"].tolist()[:5] == [5] * 5 and table["n_valid"].iloc[5] == 6


LABELS = ["joy", "anger", "sadness"]


def _multi_run(rng: np.random.Generator) -> tuple[AnnotationResult, np.ndarray, np.ndarray]:
    items = [f"i{j}" for j in range(30)]
    chosen = rng.random((3, 3, len(items), 3)) < 0.4  # annotator x sample x item x label
    chosen[1] = chosen[0] ^ (rng.random(chosen[0].shape) < 0.2)
    votes = []
    for a, name in enumerate(["m1", "m2", "m3"]):
        for s in range(3):
            for j, item in enumerate(items):
                members = [x for k, x in enumerate(LABELS) if chosen[a, s, j, k]]
                votes.append(_vote(item, name, s, "emotions", "|".join(members), members))
    gold = rng.random((len(items), 3)) < 0.4
    cells = [", ".join(x.upper() if j % 2 else x for k, x in enumerate(LABELS) if gold[j, k]) or "[]"
             for j in range(len(items))]
    task = _task("    emotions: {kind: multi_label, labels: [joy, anger, sadness]}\n")
    return _result(task, votes, items, 3, ["m1", "m2", "m3"], gold=cells), chosen, gold


def test_multi_label_soft_labels_sets_and_alpha() -> None:
    result, chosen, _ = _multi_run(np.random.default_rng(3))
    assert isinstance(result, MultiLabelResult)
    shares = chosen.mean(axis=1)  # annotator x item x label
    assert result.soft_labels().to_numpy() == pytest.approx(shares.mean(axis=0))
    table = result.labels()
    assert table["set"].tolist() == [[x for k, x in enumerate(LABELS) if p[k] >= 0.5] for p in shares.mean(axis=0)]
    assert table["expected_size"].to_numpy() == pytest.approx(shares.mean(axis=0).sum(axis=1))
    figures = result.agreement(bootstrap=50)
    sets = (shares >= 0.5).astype(float)
    for k, label in enumerate(LABELS):
        expected = krippendorff.alpha(reliability_data=sets[:, :, k], level_of_measurement="nominal")
        assert figures["krippendorff_alpha"][label] == pytest.approx(expected)
    pairs = [(0, 1), (0, 2), (1, 2)]
    per_item = [np.mean([jaccard_score(sets[a, j], sets[b, j], zero_division=1.0) for a, b in pairs])
                for j in range(sets.shape[1])]
    assert figures["jaccard"] == pytest.approx(np.mean(per_item))
    assert figures["kind"] == "multi_label"
    assert "mean pairwise Jaccard: " in format_output_report(figures)


def test_multi_label_vs_gold_matches_scikit_learn() -> None:
    result, chosen, gold = _multi_run(np.random.default_rng(4))
    figures = result.agreement(gold="gold", bootstrap=50)
    shares = chosen.mean(axis=1)
    predictions = {name: (shares[a] >= 0.5).astype(int) for a, name in enumerate(["m1", "m2", "m3"])}
    predictions["consensus"] = (shares.mean(axis=0) >= 0.5).astype(int)
    truth = gold.astype(int)
    for name, pred in predictions.items():
        scores = figures["vs_gold"][name]
        assert scores["n"] == 30
        assert scores["example_f1"] == pytest.approx(f1_score(truth, pred, average="samples", zero_division=1.0))
        assert scores["jaccard"] == pytest.approx(jaccard_score(truth, pred, average="samples", zero_division=1.0))
        assert scores["micro_f1"] == pytest.approx(f1_score(truth, pred, average="micro"))
        assert scores["macro_f1"] == pytest.approx(f1_score(truth, pred, average="macro"))
        assert scores["hamming_loss"] == pytest.approx(hamming_loss(truth, pred))
        bounds = figures["ci"]["vs_gold"][name]["micro_f1"]
        assert bounds["low"] <= scores["micro_f1"] <= bounds["high"]


def test_multi_label_refuses_what_needs_one_label() -> None:
    result, _, _ = _multi_run(np.random.default_rng(5))
    with pytest.raises(ConfigError, match=r"Dawid-Skene is for one label per item.*fix: use labels"):
        result.dawid_skene()
    with pytest.raises(ConfigError, match=r"consensus method 'majority' is for one label per item.*fix: use method"):
        result.labels("majority")
    bad = result.derive(result.votes, result.annotators,
                        result.items.assign(gold=["joy"] * 3 + ["joy; fear"] + ["joy"] * 26))
    with pytest.raises(ConfigError, match=r"gold column 'gold', row 4 \(item i3\): 'fear' is not a label of "
                                          r"output 'emotions'; fix: use labels among joy, anger, sadness"):
        bad.agreement(gold="gold", bootstrap=0)


def test_ordinal_vs_gold_over_category_codes() -> None:
    rng = np.random.default_rng(6)
    items = [f"i{j}" for j in range(30)]
    codes = rng.integers(0, 3, size=(2, len(items)))
    names = ["low", "medium", "high"]
    votes = [_vote(item, name, 0, "intensity", names[codes[a, j]])
             for a, name in enumerate(["m1", "m2"]) for j, item in enumerate(items)]
    gold = rng.integers(0, 3, size=len(items))
    task = _task("    intensity: {kind: ordinal, labels: [low, medium, high]}\n")
    result = _result(task, votes, items, 1, ["m1", "m2"], gold=[names[g] for g in gold])
    figures = result.agreement(gold="gold", bootstrap=20)
    assert figures["vs_gold"]["m1"]["mae"] == pytest.approx(mean_absolute_error(gold, codes[0]))
    assert figures["vs_gold"]["m2"]["pearson"] == pytest.approx(pearsonr(gold, codes[1]).statistic)
    assert figures["vs_gold"]["m1"]["accuracy"] == pytest.approx(np.mean(gold == codes[0]))
    assert "mae" in figures["ci"]["vs_gold"]["m1"]
    table = result.labels()
    assert table.columns.tolist()[-2:] == ["median", "spread"]
    both = codes.min(axis=0)  # two equal-weight one-hot votes: the median is the lower one
    assert table["median"].tolist() == [names[c] for c in both]
    assert table["spread"].to_numpy() == pytest.approx(2 * np.abs(codes[0] - codes[1]) / 2 / 2)
    assert "over category codes, against gold (gold):" in format_output_report(figures)


# -- end to end, against the loopback server ------------------------------------------------------
RATE = """---
name: rate
labels: [neg, neu, pos]
outputs:
  sentiment: {kind: categorical}
  intensity: {kind: ordinal, labels: [low, medium, high]}
  arousal: {kind: numeric, range: [1, 5], integer: true}
  emotions: {kind: multi_label, labels: [joy, anger, sadness]}
explanations: [reason]
---
{{ text }}
"""


def _answer(model: str, item: int, sample: int) -> dict[str, Any]:
    """The scripted answer: model b differs from a on odd items; b leaves arousal out of item 2's second sample."""
    shift = 1 if model == "b" and item % 2 else 0
    answer: dict[str, Any] = {"sentiment": ["neg", "neu", "pos"][(item + shift) % 3],
                              "intensity": ["low", "medium", "high"][(item + sample) % 3],
                              "arousal": 1 + (item + sample + shift) % 5,
                              "emotions": [x for k, x in enumerate(LABELS) if (item + k + shift + (sample == 2)) % 3 != 0],
                              "reason": "scripted"}
    if model == "b" and item == 2 and sample == 1:
        del answer["arousal"]
    return answer


def test_structured_answers_end_to_end(tmp_path: Any) -> None:
    from llm_annotator import annotate
    from llm_annotator.testing.server import FakeOpenAI

    def respond(request: dict[str, Any]) -> list[str]:
        item = int(user_text(request).split()[-1])
        model = request["model"].split("/")[-1]
        return [json.dumps(_answer(model, item, k)) for k in range(request.get("n") or 1)]

    path = tmp_path / "rate.jinja"
    path.write_text(RATE, encoding="utf-8")
    rows = [{"text": f"item {j}"} for j in range(6)]
    with FakeOpenAI(respond) as server:
        result = annotate(rows, task=path, models=["openai/a", "openai/b"], api_base=server.url, samples=3,
                          temperature=1.0, cache=False, progress=False)
    order = result.items["item_id"].tolist()
    texts = dict(zip(order, result.items["text"], strict=True))
    index = [int(texts[i].split()[-1]) for i in order]

    arousal = result.output("arousal")
    assert isinstance(arousal, NumericResult) and isinstance(result.output("intensity"), OrdinalResult)
    table = arousal.labels()
    for row, item in enumerate(index):
        per_model = [[_answer(m, item, k).get("arousal") for k in range(3)] for m in ("a", "b")]
        per_model = [[x for x in xs if x is not None] for xs in per_model]
        mean = np.mean([np.mean(xs) for xs in per_model])
        mean_sq = np.mean([np.mean(np.square(xs)) for xs in per_model])
        assert table["mean"].iloc[row] == pytest.approx(mean)
        assert table["sd"].iloc[row] == pytest.approx(np.sqrt(mean_sq - mean ** 2))
        assert table["n_valid"].iloc[row] == (5 if item == 2 else 6)

    # the answer without arousal leaves its other outputs valid
    votes = arousal.votes
    missing = votes[votes["error"].notna()]
    assert len(missing) == 1 and missing["error"].iloc[0] == "missing_field:arousal"
    assert missing["annotator"].iloc[0] == "openai/b" and missing["sample_index"].iloc[0] == 1
    for name in ("sentiment", "intensity", "emotions"):
        assert result.output(name).votes["error"].isna().all()

    emotions = result.output("emotions")
    probs = emotions.soft_labels()
    for row, item in enumerate(index):
        shares = [[np.mean([x in _answer(m, item, k)["emotions"] for k in range(3)]) for x in LABELS]
                  for m in ("a", "b")]
        assert probs.iloc[row].to_numpy() == pytest.approx(np.mean(shares, axis=0))
        assert sorted(set(probs.iloc[row].round(4))) != [0.3333]  # the script is not uniform
    frame = emotions.to_frame()
    assert {"set", "expected_size", "soft_label", "text"} <= set(frame.columns)
    figures = emotions.agreement(bootstrap=0)
    assert figures["output"] == "emotions" and set(figures["krippendorff_alpha"]) == set(LABELS)
    assert json.loads(to_json(figures))["kind"] == "multi_label"


def test_reviewers_stay_out_of_the_numeric_consensus() -> None:
    task = _task("    arousal: {kind: numeric, range: [1, 5], integer: true}\n")
    votes = [_vote("i0", "m1", 0, "arousal", "2", 2), _vote("i0", "m1", 1, "arousal", "4", 4),
             _vote("i1", "m1", 0, "arousal", "5", 5), _vote("i0", "human:ann", 0, "arousal", "1", 1)]
    result = _result(task, votes, ["i0", "i1"], 2, ["m1", "human:ann"])
    table = result.labels()
    assert table["mean"].tolist() == [3.0, 5.0] and table["sd"].tolist() == [1.0, 0.0]
    assert result.values().loc["i0"].tolist() == [3.0, 1.0]
    empty = result.derive(result.votes.iloc[:0], ["m1"])
    assert empty.labels()[["mean", "sd", "median"]].isna().all().all()

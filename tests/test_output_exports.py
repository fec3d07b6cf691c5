"""The labels files of a task of several outputs: one column group per output, the same
streamed as in memory, and the votes' explanations in explanations.csv."""

from __future__ import annotations

import csv
import json
import math

import pandas as pd
import pytest

from llm_annotator import annotate, annotate_stream
from llm_annotator.core.task import load_task
from llm_annotator.core.votes import Vote, votes_frame
from llm_annotator.outputs.result import AnnotationResult
from llm_annotator.outputs.tables import LABEL_COLUMNS, group_columns, items_frame, output_columns
from llm_annotator.testing.server import FakeOpenAI

TASK = """---
name: dimensions
outputs:
  emotion: {kind: categorical, labels: [joy, anger, neutral]}
  loudness: {kind: ordinal, labels: [low, medium, high]}
  arousal: {kind: numeric, range: [1, 5], integer: true}
  emotions: {kind: multi_label, labels: [joy, sadness, anger]}
  valence: {kind: numeric, range: [0, 1], bins: 4}
explanations: [reason]
---
Text: {{ text }}
"""

# What each annotator (told apart by its temperature) answers to each item, one answer per sample.
A = {"temperature": 1.0}
B = {"temperature": 0.3}
SCRIPT = {
    ("item a", 1.0): [{"emotion": "joy", "loudness": "low", "arousal": 2, "emotions": ["joy"], "valence": 0.1,
                       "reason": "=calm"},
                      {"emotion": "joy", "loudness": "medium", "arousal": 4, "emotions": ["joy", "sadness"],
                       "valence": 0.3, "reason": "fine"}],
    ("item a", 0.3): [{"emotion": "anger", "loudness": "high", "arousal": 5, "emotions": ["anger"], "valence": 0.9,
                       "reason": "loud"},
                      # the primary out of its label set, arousal out of its range: the rest still counts
                      {"emotion": "blah", "loudness": "high", "arousal": 9, "emotions": ["anger", "joy"],
                       "valence": 0.95, "reason": "x"}],
    ("item b", 1.0): [{"emotion": "neutral", "loudness": "low", "arousal": 1, "emotions": [], "valence": 0.5,
                       "reason": "quiet"}] * 2,
    ("item b", 0.3): ["no idea", "no idea"],  # not JSON: no output of it is valid
    ("item c", 1.0): [{"emotion": "anger", "loudness": "medium", "arousal": 3, "emotions": ["sadness"],
                       "valence": 0.4}] * 2,
    ("item c", 0.3): [{"emotion": "anger", "loudness": "medium", "arousal": 3, "emotions": ["sadness"],
                       "valence": 0.6, "reason": "=SUM(A1)"}] * 2,
}
MODELS = [{"model": "openai/fake", "name": "a", **A}, {"model": "openai/fake", "name": "b", **B}]
ROWS = [{"id": x, "text": f"item {x}", "arousal_mean": f"mine {x}", "loudness_label": 7} for x in "abc"]


def respond(request):
    text = request["messages"][-1]["content"].removeprefix("Text: ").strip()
    answers = SCRIPT[(text, request["temperature"])]
    assert int(request.get("n") or 1) == len(answers), "both samples are asked in one request"
    return [a if isinstance(a, str) else json.dumps(a) for a in answers]


@pytest.fixture
def task_path(tmp_path):
    path = tmp_path / "dimensions.jinja"
    path.write_text(TASK, encoding="utf-8")
    return path


def run(tmp_path, task_path, *, stream=False, name="run", rows=ROWS):
    with FakeOpenAI(respond) as server:
        options = {"task": task_path, "models": MODELS, "api_base": server.url, "samples": 2, "id_column": "id",
                   "progress": False, "out": tmp_path / name}
        if stream:
            annotate_stream(rows, chunk_rows=2, **options)
        else:
            annotate(rows, **options)
    return tmp_path / name


def records(path):
    return {r["item_id"]: r for r in map(json.loads, (path / "labels.jsonl").read_text(encoding="utf-8").splitlines())}


# The hand computation: per output, the equal-weight mean over annotators with a valid
# vote of each annotator's vote shares (multi-label: the share of its valid votes whose
# set holds the label); numeric moments the same mean of each annotator's mean x and x².
EXPECTED = {
    "a": {"p_joy": 0.5, "p_anger": 0.5, "p_neutral": 0.0, "label": "joy", "n_valid": 3, "n_requested": 4,
          "valid_share": 0.75,
          "loudness_p_low": 0.25, "loudness_p_medium": 0.25, "loudness_p_high": 0.5, "loudness_label": "high",
          "loudness_median": "medium", "loudness_spread": 0.75, "loudness_n_valid": 4,
          "arousal_p_1": 0.0, "arousal_p_2": 0.25, "arousal_p_3": 0.0, "arousal_p_4": 0.25, "arousal_p_5": 0.5,
          "arousal_label": "5", "arousal_mean": 4.0, "arousal_sd": math.sqrt(17.5 - 16.0), "arousal_median": 4.0,
          "arousal_n_valid": 3, "arousal_valid_share": 0.75,
          "emotions_p_joy": 0.75, "emotions_p_sadness": 0.25, "emotions_p_anger": 0.5,
          "emotions_set": ["joy", "anger"], "emotions_label": "joy|anger", "emotions_expected_size": 1.5,
          "emotions_confidence": 2 / 3, "emotions_n_valid": 4, "emotions_n_requested": 4,
          # a continuous scale: the mean and sd are the numbers', not the bins' midpoints'
          "valence_p_0..0.25": 0.25, "valence_p_0.25..0.5": 0.25, "valence_p_0.5..0.75": 0.0,
          "valence_p_0.75..1": 0.5, "valence_label": "0.75..1", "valence_mean": (0.2 + 0.925) / 2,
          "valence_sd": math.sqrt((0.05 + 0.85625) / 2 - 0.5625 ** 2), "valence_median": 0.375,
          "valence_n_valid": 4},
    "b": {"p_joy": 0.0, "p_anger": 0.0, "p_neutral": 1.0, "label": "neutral", "n_valid": 2,
          "loudness_p_low": 1.0, "loudness_median": "low", "loudness_spread": 0.0, "loudness_n_valid": 2,
          "arousal_p_1": 1.0, "arousal_label": "1", "arousal_mean": 1.0, "arousal_sd": 0.0, "arousal_n_valid": 2,
          "emotions_p_joy": 0.0, "emotions_p_sadness": 0.0, "emotions_p_anger": 0.0, "emotions_set": [],
          "emotions_label": "", "emotions_expected_size": 0.0, "emotions_confidence": 1.0, "emotions_n_valid": 2,
          "valence_p_0.5..0.75": 1.0, "valence_mean": 0.5, "valence_sd": 0.0, "valence_median": 0.625},
    "c": {"p_anger": 1.0, "label": "anger", "n_valid": 4, "loudness_label": "medium", "arousal_mean": 3.0,
          "arousal_sd": 0.0, "arousal_median": 3.0, "emotions_set": ["sadness"], "emotions_n_valid": 4,
          "valence_mean": 0.5, "valence_sd": 0.1, "valence_p_0.25..0.5": 0.5, "valence_p_0.5..0.75": 0.5},
}


def check(record, expected):
    for column, value in expected.items():
        got = record[column]
        assert got == (pytest.approx(value) if isinstance(value, float) else value), (record["item_id"], column)


def test_labels_jsonl_holds_every_output_in_its_column_group_with_hand_computed_values(tmp_path, task_path):
    out = run(tmp_path, task_path)
    written = records(out)
    for item, expected in EXPECTED.items():
        check(written[item], expected)
    first = written["a"]
    primary = ["p_joy", "p_anger", "p_neutral", "label", "confidence", "margin", "entropy_confidence", "n_valid",
               "n_requested", "valid_share", "soft_label"]
    task = load_task(task_path)
    groups = group_columns(task)[len(output_columns(task.primary)):]
    assert groups[:3] == ("loudness_p_low", "loudness_p_medium", "loudness_p_high")
    assert list(first) == ["item_id", "id", "text", "input_arousal_mean", "input_loudness_label", *primary, *groups]
    assert first["soft_label"] == pytest.approx([0.5, 0.5, 0.0])
    assert first["arousal_soft_label"] == pytest.approx([0.0, 0.25, 0.0, 0.25, 0.5])
    assert first["emotions_soft_label"] == pytest.approx([0.75, 0.25, 0.5])
    assert first["loudness_soft_label"] == pytest.approx([0.25, 0.25, 0.5])


def test_labels_csv_and_parquet_hold_the_same_groups_and_csv_leaves_the_lists_out(tmp_path, task_path):
    out = run(tmp_path, task_path)
    table = pd.read_csv(out / "labels.csv", keep_default_na=False, na_values=[""])
    jsonl = records(out)
    assert not [c for c in table.columns if c.endswith("soft_label")]
    assert list(table.columns) == [c for c in jsonl["a"] if not c.endswith("soft_label")]
    row = table.set_index("item_id").loc["a"]
    assert row["loudness_median"] == "medium" and row["arousal_mean"] == pytest.approx(4.0)
    assert json.loads(row["emotions_set"]) == ["joy", "anger"] and row["emotions_label"] == "joy|anger"
    assert row["input_arousal_mean"] == "mine a" and row["input_loudness_label"] == 7
    with (out / "labels.csv").open(encoding="utf-8", newline="") as handle:
        header = next(csv.reader(handle))
    assert header.count("arousal_mean") == 1 and header.count("loudness_label") == 1

    result = AnnotationResult.load(out)
    parquet = pd.read_parquet(result.to_parquet(tmp_path / "labels.parquet"))
    assert list(parquet.columns) == list(jsonl["a"])
    first = parquet.set_index("item_id").loc["a"]
    assert list(first["emotions_set"]) == ["joy", "anger"] and first["arousal_sd"] == pytest.approx(math.sqrt(1.5))
    assert list(first["emotions_soft_label"]) == pytest.approx([0.75, 0.25, 0.5])
    hf = result.to_hf_dataset()
    assert hf.column_names == list(jsonl["a"]) and hf[0]["loudness_median"] == "medium"


def test_the_streamed_labels_files_equal_the_in_memory_ones(tmp_path, task_path):
    memory = run(tmp_path, task_path, name="memory")
    streamed = run(tmp_path, task_path, stream=True, name="streamed")
    a, b = pd.read_csv(memory / "labels.csv"), pd.read_csv(streamed / "labels.csv")
    assert a.shape[1] > 40
    pd.testing.assert_frame_equal(a, b, check_exact=False, rtol=1e-12)
    ja, jb = records(memory), records(streamed)
    assert list(ja) == list(jb) == ["a", "b", "c"]
    for item in ja:
        assert list(ja[item]) == list(jb[item])
        for column, value in ja[item].items():
            assert close(jb[item][column], value), (item, column)

    def explained(run):
        with (run / "explanations.csv").open(encoding="utf-8", newline="") as handle:
            return sorted(csv.reader(handle))

    assert explained(memory) == explained(streamed) and len(explained(memory)) == 9


def close(a, b):
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(close(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-15)
    return a == b and type(a) is type(b)


def test_explanations_csv_holds_one_row_per_explained_vote(tmp_path, task_path):
    out = run(tmp_path, task_path)
    with (out / "explanations.csv").open(encoding="utf-8", newline="") as handle:
        table = list(csv.reader(handle))
    assert table[0] == ["item_id", "annotator", "sample_index", "reason"]
    assert sorted(table[1:]) == sorted([
        ["a", "a", "0", "'=calm"], ["a", "a", "1", "fine"], ["a", "b", "0", "loud"], ["a", "b", "1", "x"],
        ["b", "a", "0", "quiet"], ["b", "a", "1", "quiet"], ["c", "b", "0", "'=SUM(A1)"], ["c", "b", "1", "'=SUM(A1)"]])
    explained = AnnotationResult.load(out).explanations()
    assert list(explained.columns) == ["item_id", "annotator", "sample_index", "reason"]
    assert len(explained) == 8 and set(explained["reason"]) == {"=calm", "fine", "loud", "x", "quiet", "=SUM(A1)"}
    assert "reason" not in records(out)["a"]  # never a label


def test_an_input_column_named_like_a_group_column_is_renamed_and_read_back(tmp_path, task_path):
    rows = [{**r, "emotions_set": "given", "input_arousal_mean": "taken too"} for r in ROWS]
    out = run(tmp_path, task_path, rows=rows)
    first = records(out)["a"]
    assert first["input_input_arousal_mean"] == "mine a" and first["input_arousal_mean"] == "taken too"
    assert first["input_emotions_set"] == "given" and first["emotions_set"] == ["joy", "anger"]
    assert first["arousal_mean"] == pytest.approx(4.0)
    loaded = AnnotationResult.load(out)
    assert loaded.items["arousal_mean"].tolist() == ["mine a", "mine b", "mine c"]
    assert loaded.items["emotions_set"].tolist() == ["given"] * 3


def test_a_plain_task_has_no_groups_and_no_explanations_file(tmp_path):
    def plain(request):
        return "positive"

    with FakeOpenAI(plain) as server:
        annotate([{"text": "x", "arousal_mean": 1}], "sentiment", ["openai/fake"], api_base=server.url,
                 progress=False, out=tmp_path / "plain")
    record = records(tmp_path / "plain")
    (only,) = record.values()
    assert list(only)[-11:] == ["p_positive", "p_negative", "p_neutral", "label", "confidence", "margin",
                                "entropy_confidence", "n_valid", "n_requested", "valid_share", "soft_label"]
    assert only["arousal_mean"] == 1
    assert not (tmp_path / "plain" / "explanations.csv").exists()


def test_the_declared_columns_are_those_each_kind_writes(tmp_path, task_path):
    out = run(tmp_path, task_path)
    columns = list(records(out)["a"])
    inputs = ["item_id", "id", "text", "input_arousal_mean", "input_loudness_label"]
    declared = [c for c in group_columns(load_task(task_path)) if c not in LABEL_COLUMNS]
    assert [c for c in columns if c not in inputs and c not in LABEL_COLUMNS] == declared
    assert {"loudness_spread", "arousal_sd", "emotions_expected_size", "emotions_soft_label"} <= set(declared)


def test_explanations_of_votes_with_reasoning_get_a_reasoning_column(task_path):
    task = load_task(task_path)

    def vote(item, sample, explanation):
        return Vote(item_id=item, annotator="m", sample_index=sample, label="joy", error=None, raw="{}",
                    distribution=None, model="m", prompt_hash="h", template_hash="t", explanation=explanation)

    votes = votes_frame([vote("i", 0, {"reason": "r", "reasoning": "thought"}), vote("i", 1, None),
                         vote("j", 0, {"reasoning": "only"})])
    result = AnnotationResult(votes, task, items_frame([{}, {}], ["i", "j"], []), samples=2, annotators=["m"])
    table = result.explanations()
    assert list(table.columns) == ["item_id", "annotator", "sample_index", "reason", "reasoning"]
    assert table.values.tolist() == [["i", "m", 0, "r", "thought"], ["j", "m", 0, None, "only"]]
    without = AnnotationResult(votes_frame([vote("i", 0, {"reason": "r"})]), task, items_frame([{}], ["i"], []),
                               samples=1, annotators=["m"])
    assert list(without.explanations().columns) == ["item_id", "annotator", "sample_index", "reason"]

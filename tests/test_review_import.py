"""The way back from review: reviewers' answers become human votes of the run."""

import json
import subprocess
import sys

import pandas as pd
import pytest

from llm_annotator import annotate
from llm_annotator.core.errors import ConfigError, DataError
from llm_annotator.outputs.result import AnnotationResult
from llm_annotator.outputs.review import import_reviews
from llm_annotator.store.reviews import HUMAN_VOTES
from llm_annotator.testing import sampling_responder

LABELS = ["positive", "negative", "neutral"]


@pytest.fixture
def run_dir(fake_server, tmp_path):
    server = fake_server(sampling_responder(LABELS, "sentiment"))
    rows = [{"id": f"r{i}", "text": f"review {i}", "gold": LABELS[i % 3]} for i in range(12)]
    out = tmp_path / "run"
    annotate(rows, "sentiment", [{"model": "openai/fake", "name": "model-a"}], samples=2, api_base=server.url,
             id_column="id", out=out, progress=False)
    return out


def label_studio_export(answers):
    """A Label Studio JSON export: ``answers`` maps item id to [(user, label, updated_at), ...]."""
    tasks = []
    for number, (item, given) in enumerate(answers.items(), 1):
        annotations = [{"id": 100 * number + k, "completed_by": user, "was_cancelled": False,
                        "updated_at": when, "lead_time": 3.1,
                        "result": [{"from_name": "label", "to_name": "text", "type": "choices",
                                    "value": {"choices": [label]}}]}
                       for k, (user, label, when) in enumerate(given)]
        tasks.append({"id": number, "data": {"text": "…", "item_id": item}, "annotations": annotations,
                      "predictions": []})
    return tasks


def test_label_studio_export_becomes_one_annotator_per_reviewer(run_dir, tmp_path):
    export = tmp_path / "export.json"
    export.write_text(json.dumps(label_studio_export({
        "r0": [(1, "positive", "2026-11-29T10:00:00Z"), (2, "negative", "2026-11-29T10:00:00Z")],
        "r1": [(1, "Negative", "2026-11-29T10:00:00Z")],          # a label's other case is that label
        "r2": [(1, "angry", "2026-11-29T10:00:00Z")],             # not a label: an invalid vote, kept
    })))
    counts = import_reviews(run_dir, export)
    assert {k: v for k, v in counts.items() if k != "labels"} == {
        "added": 4, "updated": 0, "unchanged": 0, "invalid": 1,
        "reviewers": ["human:label-studio-1", "human:label-studio-2"]}
    # labels.* carry the reviewers' label beside the models' consensus; three items cannot calibrate
    assert counts["labels"] == {"reviewed": 2, "calibrated_on": 0, "method": "temperature", "not_calibrated":
                                "0 reviewed items drawn at random have a soft label; calibration needs 20 "
                                "(review --strategy random, then import the answers)"}
    written = pd.read_csv(run_dir / "labels.csv").set_index("item_id")
    assert written.loc["r1", "review_label"] == "negative" and pd.isna(written.loc["r2", "review_label"])
    assert "cal_label" not in written.columns
    result = AnnotationResult.load(run_dir)
    assert result.annotators == ["model-a", "human:label-studio-1", "human:label-studio-2"]
    human = result.votes[result.votes["annotator"].str.startswith("human:")].set_index(["item_id", "annotator"])
    assert human.loc[("r0", "human:label-studio-1"), "label"] == "positive"
    assert human.loc[("r0", "human:label-studio-2"), "label"] == "negative"
    assert human.loc[("r1", "human:label-studio-1"), "label"] == "negative"
    assert pd.isna(human.loc[("r2", "human:label-studio-1"), "label"])
    assert human.loc[("r2", "human:label-studio-1"), "error"] == "out_of_label_set:angry"
    # the consensus stays the models': the reviewers' votes are held against it, not mixed in
    labels = result.labels().set_index("item_id")
    models = result.models_only().labels().set_index("item_id")
    assert labels.equals(models) and (labels["n_requested"] == 2).all()
    assert result.soft_labels().equals(result.models_only().soft_labels())
    # agreement and Dawid-Skene take the reviewers like any annotator
    assert "human:label-studio-1" in result.agreement(bootstrap=0)["annotators"]
    assert "human:label-studio-1" in result.dawid_skene().annotators


def test_second_import_adds_nothing_and_a_changed_answer_replaces(run_dir, tmp_path):
    export = tmp_path / "export.json"
    answers = {"r0": [(1, "positive", "2026-11-29T10:00:00Z")], "r3": [(1, "neutral", "2026-11-29T10:00:00Z")]}
    export.write_text(json.dumps(label_studio_export(answers)))
    assert import_reviews(run_dir, export)["added"] == 2
    before = (run_dir / HUMAN_VOTES).read_bytes()
    again = import_reviews(run_dir, export)
    assert (again["added"], again["updated"], again["unchanged"]) == (0, 0, 2)
    assert (run_dir / HUMAN_VOTES).read_bytes() == before
    answers["r0"] = [(1, "negative", "2026-11-30T09:00:00Z")]
    export.write_text(json.dumps(label_studio_export(answers)))
    changed = import_reviews(run_dir, export)
    assert (changed["added"], changed["updated"], changed["unchanged"]) == (0, 1, 1)
    votes = AnnotationResult.load(run_dir).votes
    assert votes[votes["annotator"] == "human:label-studio-1"].set_index("item_id").loc["r0", "label"] == "negative"


def test_of_two_annotations_by_one_person_the_later_counts_and_cancelled_ones_none(run_dir, tmp_path):
    tasks = label_studio_export({"r0": [(7, "positive", "2026-11-29T10:00:00Z"), (7, "neutral", "2026-11-29T11:00:00Z")],
                                 "r1": [(7, "negative", "2026-11-29T10:00:00Z")]})
    tasks[1]["annotations"][0]["was_cancelled"] = True
    export = tmp_path / "export.json"
    export.write_text(json.dumps(tasks))
    assert import_reviews(run_dir, export)["added"] == 1
    votes = AnnotationResult.load(run_dir).votes
    assert votes[votes["annotator"] == "human:label-studio-7"]["label"].tolist() == ["neutral"]


def test_json_min_export_and_named_users(run_dir, tmp_path):
    export = tmp_path / "min.json"
    export.write_text(json.dumps([{"item_id": "r4", "text": "…", "label": "neutral", "annotator": "ana@lab.org",
                                   "annotation_id": 3, "id": 4}]))
    assert import_reviews(run_dir, export)["reviewers"] == ["human:ana@lab.org"]


def test_review_csv_round_trip_through_the_cli(run_dir):
    cli = [sys.executable, "-m", "llm_annotator", "review", str(run_dir)]
    subprocess.run([*cli, "-n", "5"], check=True, capture_output=True, text=True, timeout=120)
    sheet = pd.read_csv(run_dir / "review.csv", dtype=str, keep_default_na=False)
    assert "review_label" in sheet.columns and (sheet["review_label"] == "").all()
    sheet.loc[0, "review_label"] = "positive"
    sheet.loc[1, "review_label"] = "neutral"
    sheet.to_csv(run_dir / "review.csv", index=False)
    proc = subprocess.run([*cli, "--import", str(run_dir / "review.csv"), "--reviewer", "ana"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "2 answers added, 0 changed, 0 already recorded (human:ana)" in proc.stdout
    votes = AnnotationResult.load(run_dir).votes
    mine = votes[votes["annotator"] == "human:ana"].set_index("item_id")["label"]
    assert mine.to_dict() == {sheet.loc[0, "item_id"]: "positive", sheet.loc[1, "item_id"]: "neutral"}
    again = subprocess.run([*cli, "--import", str(run_dir / "review.csv"), "--reviewer", "ana"],
                           capture_output=True, text=True, timeout=120)
    assert "0 answers added, 0 changed, 2 already recorded" in again.stdout


def test_bad_imports_say_what_and_record_nothing(run_dir, tmp_path):
    stray = tmp_path / "stray.json"
    stray.write_text(json.dumps(label_studio_export({"r0": [(1, "positive", "t")], "zz9": [(1, "neutral", "t")]})))
    with pytest.raises(DataError, match=r"stray.json, task 2: item 'zz9' is not an item of the run"):
        import_reviews(run_dir, stray)
    assert not (run_dir / HUMAN_VOTES).exists()  # all or nothing
    two = tmp_path / "two.json"
    two.write_text(json.dumps(label_studio_export({"r0": [(1, "positive", "t"), (2, "neutral", "t")]})))
    with pytest.raises(ConfigError, match="holds the answers of 2 people"):
        import_reviews(run_dir, two, reviewer="ana")
    sheet = tmp_path / "sheet.csv"
    sheet.write_text("item_id,review_label\nr0,positive\n")
    with pytest.raises(DataError, match="who reviewed is not said"):
        import_reviews(run_dir, sheet)
    untagged = tmp_path / "untagged.json"
    untagged.write_text(json.dumps([{"id": 9, "data": {"text": "x"}, "annotations": []}]))
    with pytest.raises(DataError, match=r"untagged.json, task 9: no item_id"):
        import_reviews(run_dir, untagged)
    proc = subprocess.run([sys.executable, "-m", "llm_annotator", "review", str(run_dir), "--import", str(sheet)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "who reviewed is not said" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_one_label_studio_user_has_one_name_in_every_export(run_dir, tmp_path):
    """The Export button writes completed_by as the id, a snapshot export as an object with
    the e-mail, Label Studio's CSV the id as text: all three are one reviewer."""
    button = label_studio_export({"r0": [(2, "positive", "2026-11-29T10:00:00Z")]})
    snapshot = label_studio_export({"r0": [({"id": 2, "email": "bob@example.com", "first_name": ""}, "positive",
                                            "2026-11-29T10:00:00Z")]})
    (tmp_path / "button.json").write_text(json.dumps(button))
    (tmp_path / "snapshot.json").write_text(json.dumps(snapshot))
    (tmp_path / "export.csv").write_text("annotation_id,annotator,created_at,id,item_id,label,lead_time,text\n"
                                         "4,2,2026-11-29,1,r0,positive,3.2,x\n5,3,2026-11-29,2,r1,neutral,1.0,y\n")
    assert import_reviews(run_dir, tmp_path / "button.json")["reviewers"] == ["human:label-studio-2"]
    again = import_reviews(run_dir, tmp_path / "snapshot.json")
    assert (again["added"], again["unchanged"], again["reviewers"]) == (0, 1, ["human:label-studio-2"])
    csv = import_reviews(run_dir, tmp_path / "export.csv")
    assert (csv["added"], csv["unchanged"]) == (1, 1)
    assert csv["reviewers"] == ["human:label-studio-2", "human:label-studio-3"]

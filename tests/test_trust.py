"""Trust from a few human labels, end to end: annotate → review → import → trust, labels.*, report."""

import json
import random
import re
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from llm_annotator import annotate
from llm_annotator.core.errors import ConfigError
from llm_annotator.outputs.result import AnnotationResult
from llm_annotator.outputs.review import export_review, import_reviews, review_queue
from llm_annotator.outputs.trust import reviewed, trust
from llm_annotator.store.reviews import read_rounds
from llm_annotator.testing.responders import user_text

LABELS = ["positive", "negative", "neutral"]
N_ITEMS = 120


def truth(i: int) -> str:
    return LABELS[(i * 7) % 5 % 3]


def noisy(accuracy: float, salt: str):
    """A model right with probability ``accuracy`` per sample, else a label at random; the
    same item gets the same samples whatever the order of the requests."""

    def respond(request):
        i = int(re.search(r"item (\d+)", user_text(request)).group(1))
        rng = random.Random(f"{salt}-{i}")
        out = []
        for _ in range(int(request.get("n") or 1)):
            label = truth(i) if rng.random() < accuracy else rng.choice(LABELS)
            out.append(json.dumps({"sentiment": label}))
        return out

    return respond


@pytest.fixture
def run_dir(fake_server, tmp_path):
    good, poor = fake_server(noisy(0.6, "good")), fake_server(noisy(0.3, "poor"))
    rows = [{"id": f"r{i}", "text": f"item {i}", "gold": truth(i)} for i in range(N_ITEMS)]
    out = tmp_path / "run"
    annotate(rows, "sentiment", [{"model": "openai/good", "name": "good", "api_base": good.url},
                                 {"model": "openai/poor", "name": "poor", "api_base": poor.url}],
             samples=3, temperature=1.0, id_column="id", out=out, progress=False)
    return out


def answer_as_truth(run_dir, csv_path, reviewer):
    """A reviewer who gives the true label of every item in the review CSV."""
    sheet = pd.read_csv(csv_path, dtype=str, keep_default_na=False)
    sheet["review_label"] = [truth(int(item[1:])) for item in sheet["item_id"]]
    sheet.to_csv(csv_path, index=False)
    return import_reviews(run_dir, csv_path, reviewer=reviewer)


def test_review_rounds_record_the_design_and_never_choose_an_item_twice(run_dir):
    result = AnnotationResult.load(run_dir)
    first = export_review(result, run_dir / "round1", n=30, strategy="interval")
    answer_as_truth(run_dir, first[0], "ana")
    second = export_review(AnnotationResult.load(run_dir), run_dir / "round2", n=30, strategy="random")
    rounds = read_rounds(run_dir)
    assert [r["strategy"] for r in rounds] == ["interval", "random"] and [r["seed"] for r in rounds] == [0, 1]
    assert rounds[1]["eligible"] == N_ITEMS - 30
    assert not set(rounds[0]["items"]) & set(rounds[1]["items"])
    assert all(0 < p <= 1 for p in rounds[0]["items"].values())
    assert all(p == pytest.approx(30 / 90) for p in rounds[1]["items"].values())
    sheet = pd.read_csv(second[0])
    assert set(sheet["item_id"]) == set(rounds[1]["items"]) and "inclusion_probability" in sheet.columns
    tasks = json.loads(second[1].read_text())
    assert {t["data"]["item_id"] for t in tasks} == set(rounds[1]["items"])


def test_confidence_chosen_reviews_count_for_agreement_only(run_dir):
    result = AnnotationResult.load(run_dir)
    paths = export_review(result, run_dir / "review", n=25, strategy="confidence")
    answer_as_truth(run_dir, paths[0], "ana")
    figures = trust(AnnotationResult.load(run_dir))
    assert figures["reviewed"] == {"n": 25, "source": "reviewers human:ana", "design": "chosen",
                                   "n_for_corpus": 0, "level": 0.9}
    assert figures["agreement"]["vs_human"]["good"]["n"] == 25
    assert "shares" not in figures and not figures["calibration"]  # a biased sample estimates nothing


def test_trust_figures_from_random_reviews(run_dir, tmp_path):
    result = AnnotationResult.load(run_dir)
    paths = export_review(result, run_dir / "review", n=60, strategy="random")
    counts = answer_as_truth(run_dir, paths[0], "ana")
    assert counts["added"] == 60 and counts["labels"]["calibrated_on"] == 60
    loaded = AnnotationResult.load(run_dir)
    people = reviewed(loaded)
    assert people.n == 60 and people.design == "random" and people.inclusion is None
    figures = trust(loaded, next_items=5)
    # agreement with people: the better model agrees more
    vs = figures["agreement"]["vs_human"]
    assert vs["good"]["accuracy"] > vs["poor"]["accuracy"]
    # corpus shares: intervals hold the true shares of the corpus
    true = {label: sum(truth(i) == label for i in range(N_ITEMS)) / N_ITEMS for label in LABELS}
    for row in figures["shares"]:
        assert row["n_human"] == 60
        assert row["ppi_power"]["low"] <= true[row["label"]] <= row["ppi_power"]["high"]
        assert row["human_only"]["low"] <= true[row["label"]] <= row["human_only"]["high"]
    # accuracy of each model over the corpus, people only and with the models' predictions
    assert set(figures["accuracy"]) == {"good", "poor", "consensus"}
    assert figures["accuracy"]["good"]["human_only"]["estimate"] == pytest.approx(vs["good"]["accuracy"])
    # calibration cross-fitted per annotator and for the consensus
    assert set(figures["calibration"]) == {"good", "poor", "consensus"}
    assert all(c["n"] == 60 for c in figures["calibration"].values())
    # the two models err independently here: their panel is worth about two annotators
    assert figures["panel"]["annotators"] == ["good", "poor"] and 1.0 <= figures["panel"]["effective_number"] <= 2.0
    # the next items: not reviewed yet, by the strategy asked for
    done = set(loaded.votes.loc[loaded.votes["annotator"] == "human:ana", "item_id"])
    assert len(figures["next"]["items"]) == 5 and not set(figures["next"]["items"]) & done
    # labels.* hold the reviewers' label and the calibrated consensus beside the raw one
    labels = pd.read_csv(run_dir / "labels.csv").set_index("item_id")
    assert labels["review_label"].notna().sum() == 60
    cal = labels[[f"cal_p_{x}" for x in LABELS]].to_numpy()
    assert np.allclose(cal.sum(axis=1), 1.0) and set(labels["cal_label"]) <= set(LABELS)
    assert (labels["cal_confidence"] == cal.max(axis=1)).all()
    assert labels[[f"p_{x}" for x in LABELS]].notna().all().all()  # raw soft labels kept
    again = AnnotationResult.load(run_dir)  # labels.jsonl still loads, inputs intact
    assert again.items.set_index("item_id").loc["r3", "text"] == "item 3"


def test_two_reviewers_give_a_distribution_and_the_report_shows_trust(run_dir, tmp_path):
    result = AnnotationResult.load(run_dir)
    paths = export_review(result, run_dir / "review", n=40, strategy="interval")
    answer_as_truth(run_dir, paths[0], "ana")
    sheet = pd.read_csv(paths[0], dtype=str, keep_default_na=False)
    sheet["review_label"] = [LABELS[(LABELS.index(truth(int(i[1:]))) + (k % 2)) % 3]
                             for k, i in enumerate(sheet["item_id"])]
    sheet.to_csv(tmp_path / "bo.csv", index=False)
    import_reviews(run_dir, tmp_path / "bo.csv", reviewer="bo")
    figures = trust(AnnotationResult.load(run_dir))
    assert figures["reviewed"]["design"] == "interval" and figures["reviewed"]["n_for_corpus"] == 40
    assert figures["distance"]["n"] == 40 and 0 < figures["distance"]["jensen_shannon"] < 1
    proc = subprocess.run([sys.executable, "-m", "llm_annotator", "report", str(run_dir)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    page = (run_dir / "report.html").read_text()
    for heading in ("Trust from human labels", "Agreement with people", "Calibration fitted on the reviewed items",
                    "Label shares of the corpus", "Accuracy over the corpus", "Annotators that fail together",
                    "Distance to the people", "Next items to review"):
        assert heading in page, heading


def test_trust_without_reviews_says_how_to_get_them(run_dir):
    with pytest.raises(ConfigError, match="no item of this run has a human label") as caught:
        trust(AnnotationResult.load(run_dir))
    assert "review RUN --import" in caught.value.fix
    with pytest.raises(ConfigError, match="unknown review strategy 'lowest'"):
        review_queue(AnnotationResult.load(run_dir), 5, strategy="lowest")


def test_trust_command_prints_the_figures_and_writes_json(run_dir):
    cli = [sys.executable, "-m", "llm_annotator"]
    exported = subprocess.run([*cli, "review", str(run_dir), "-n", "40", "--strategy", "random"],
                              capture_output=True, text=True, timeout=120)
    assert "strategy random: a simple random sample (valid for corpus estimates)" in exported.stdout
    imported = answer_as_truth(run_dir, run_dir / "review.csv", "ana")
    assert imported["labels"]["calibrated_on"] == 40
    proc = subprocess.run([*cli, "trust", str(run_dir), "-n", "3", "--method", "isotonic"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "reviewed: 40 items (reviewers human:ana; design random; 40 stand for the corpus)" in proc.stdout
    assert re.search(r"label shares of the corpus \(90% intervals\)", proc.stdout)
    saved = json.loads((run_dir / "trust.json").read_text())
    assert saved["reviewed"]["n"] == 40 and len(saved["next"]["items"]) == 3
    assert {c["method"] for c in saved["calibration"].values()} == {"isotonic"}
    assert [row["label"] for row in saved["shares"]] == LABELS
    none = subprocess.run([*cli, "trust", str(run_dir), "--gold", "nothing"], capture_output=True, text=True,
                          timeout=120)
    assert none.returncode == 2 and "gold column 'nothing' is not an input column" in none.stderr

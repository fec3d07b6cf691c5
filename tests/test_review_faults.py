"""The review round trip under ordinary misuse: each test is a fault a fault-finding pass met."""

import json

import pandas as pd
import pytest

from llm_annotator import annotate
from llm_annotator.core.errors import ConfigError, DataError, RunDirError
from llm_annotator.outputs.report import write_report
from llm_annotator.outputs.result import AnnotationResult
from llm_annotator.outputs.review import export_review, import_reviews, next_items
from llm_annotator.outputs.trust import trust
from llm_annotator.store.reviews import REVIEW_ROUNDS
from llm_annotator.store.rundir import RunDir
from llm_annotator.testing import sampling_responder

LABELS = ["positive", "negative", "neutral"]


def make_run(fake_server, out, rows, models=None, **options):
    server = fake_server(sampling_responder(LABELS, "sentiment"))
    annotate(rows, "sentiment", models or [{"model": "openai/fake", "name": "model-a"}], samples=2,
             api_base=server.url, id_column="id", out=out, progress=False, **options)
    return out


def rows(n, **extra):
    return [{"id": f"r{i}", "text": f"item {i}", "gold": LABELS[i % 3], **extra} for i in range(n)]


def fill(csv_path, answer=lambda item: "positive"):
    sheet = pd.read_csv(csv_path, dtype=str, keep_default_na=False)
    sheet["review_label"] = [answer(item) for item in sheet["item_id"]]
    sheet.to_csv(csv_path, index=False)


def test_input_columns_named_like_the_queue_are_kept_under_input_names(fake_server, tmp_path):
    run = make_run(fake_server, tmp_path / "run",
                   [{"id": f"r{i}", "text": f"item {i}", "label": "old", "confidence": "high"} for i in range(10)])
    csv_path, json_path = export_review(AnnotationResult.load(run), run / "review", n=4)
    sheet = pd.read_csv(csv_path)
    assert {"input_label", "input_confidence", "label", "confidence"} <= set(sheet.columns)
    assert (sheet["input_label"] == "old").all() and sheet["label"].isin(LABELS).all()
    assert len(json.loads(json_path.read_text())) == 4


def test_item_ids_a_spreadsheet_would_read_as_formulas_come_back(fake_server, tmp_path):
    run = make_run(fake_server, tmp_path / "run", [{"id": f"@user{i}", "text": f"item {i}"} for i in range(6)])
    csv_path, _ = export_review(AnnotationResult.load(run), run / "review", n=3)
    assert pd.read_csv(csv_path, dtype=str)["item_id"].str.startswith("'@").all()  # no formula in a spreadsheet
    fill(csv_path)
    assert import_reviews(run, csv_path, reviewer="ana")["added"] == 3


def test_rounds_never_share_an_item_nor_overwrite_answers_not_imported(fake_server, tmp_path):
    run = make_run(fake_server, tmp_path / "run", rows(10))
    csv_path, _ = export_review(AnnotationResult.load(run), run / "review", n=4)
    fill(csv_path)
    with pytest.raises(ConfigError, match=r"review.csv holds 4 answers that are not imported yet") as caught:
        export_review(AnnotationResult.load(run), run / "review", n=4)
    assert "--import" in caught.value.fix
    second, _ = export_review(AnnotationResult.load(run), run / "second", n=4)  # elsewhere: a new round
    first_items = set(pd.read_csv(csv_path, dtype=str)["item_id"])
    assert not first_items & set(pd.read_csv(second, dtype=str)["item_id"])
    import_reviews(run, csv_path, reviewer="ana")
    export_review(AnnotationResult.load(run), run / "review", n=4)  # imported: the file may be replaced
    with pytest.raises(ConfigError, match="every item of the run was reviewed or chosen"):
        export_review(AnnotationResult.load(run), run / "fourth", n=4)
    # trust names the items review would choose next: the same rule, the same seed
    fresh = make_run(fake_server, tmp_path / "fresh", rows(30))
    result = AnnotationResult.load(fresh)
    expected = [result.items["item_id"][i] for i in next_items(result, 5).indices]
    path, _ = export_review(result, fresh / "review", n=8)
    fill(path)
    import_reviews(fresh, path, reviewer="ana")
    after = AnnotationResult.load(fresh)
    assert trust(after, next_items=5)["next"]["items"] == [after.items["item_id"][i]
                                                          for i in next_items(after, 5).indices]
    assert len(expected) == 5


def test_a_model_without_valid_answers_skips_its_calibration_not_the_run(fake_server, tmp_path):
    good = fake_server(sampling_responder(LABELS, "sentiment"))
    refusing = fake_server(lambda request: "I refuse")
    out = tmp_path / "run"
    annotate(rows(40), "sentiment", [{"model": "openai/good", "name": "good", "api_base": good.url},
                                     {"model": "openai/bad", "name": "bad", "api_base": refusing.url}],
             samples=2, id_column="id", out=out, progress=False)
    csv_path, _ = export_review(AnnotationResult.load(out), out / "review", n=30)
    fill(csv_path, lambda item: LABELS[int(item[1:]) % 3])
    counts = import_reviews(out, csv_path, reviewer="ana")
    assert counts["labels"]["calibrated_on"] == 30
    figures = trust(AnnotationResult.load(out))
    assert "skipped" in figures["calibration"]["bad"] and "after" in figures["calibration"]["good"]
    assert write_report(AnnotationResult.load(out), tmp_path / "report.html").exists()


def test_gold_columns_are_read_as_answers_and_a_useless_one_leaves_the_report_standing(fake_server, tmp_path):
    data = [{"id": f"r{i}", "text": f"item {i}", "gold": LABELS[i % 3].upper() if i % 4 else "",
             "mixed": "mixed"} for i in range(30)]
    run = make_run(fake_server, tmp_path / "run", data)
    result = AnnotationResult.load(run)
    figures = trust(result, "gold")  # upper case is the label; blanks are no label
    assert figures["reviewed"]["n"] == 22 and figures["reviewed"]["n_for_corpus"] == 22
    page = write_report(result, tmp_path / "report.html", gold="mixed").read_text()
    assert "Trust from human labels" in page and "gold column &#x27;mixed&#x27; holds no label of the task" in page


def test_a_new_label_set_turns_old_answers_outside_it_into_invalid_votes(fake_server, tmp_path):
    run = make_run(fake_server, tmp_path / "run", rows(8))
    csv_path, _ = export_review(AnnotationResult.load(run), run / "review", n=8)
    fill(csv_path, lambda item: "neutral" if item in ("r0", "r1") else "positive")
    import_reviews(run, csv_path, reviewer="ana")
    server = fake_server(sampling_responder(["positive", "negative"], "label"))
    annotate(rows(8), "classification", [{"model": "openai/fake", "name": "model-a"}], labels=["positive", "negative"],
             api_base=server.url, id_column="id", out=run, overwrite=True, progress=False)
    result = AnnotationResult.load(run)
    people = result.votes[result.votes["annotator"] == "human:ana"].set_index("item_id")
    assert people.loc["r0", "error"] == "out_of_label_set:neutral" and pd.isna(people.loc["r0", "label"])
    assert people.loc["r2", "label"] == "positive"
    assert len(result.labels()) == 8 and result.agreement(bootstrap=0)["annotators"]


def test_label_studio_json_min_edge_cases(fake_server, tmp_path):
    run = make_run(fake_server, tmp_path / "run", rows(4))
    later_first = tmp_path / "min.json"
    later_first.write_text(json.dumps([
        {"item_id": "r0", "sentiment": "negative", "annotator": 1, "annotation_id": 2, "updated_at": "2026-11-29T11:00"},
        {"item_id": "r0", "sentiment": "positive", "annotator": 1, "annotation_id": 1, "updated_at": "2026-11-29T10:00"},
    ]))
    import_reviews(run, later_first)  # the control need not be called label; the last updated counts
    votes = AnnotationResult.load(run).votes
    assert votes[votes["annotator"] == "human:label-studio-1"]["label"].tolist() == ["negative"]
    anonymous = tmp_path / "anonymous.json"
    anonymous.write_text(json.dumps([{"id": 1, "data": {"item_id": "r1"}, "annotations": [
        {"id": 5, "result": [{"type": "choices", "from_name": "label", "value": {"choices": ["neutral"]}}]}]}]))
    with pytest.raises(DataError, match=r"anonymous.json, task 1: the reviewer has no name"):
        import_reviews(run, anonymous)
    assert import_reviews(run, anonymous, reviewer="ana")["reviewers"] == ["human:ana"]


def test_clear_errors_instead_of_tracebacks(fake_server, tmp_path):
    run = make_run(fake_server, tmp_path / "run", rows(6))
    with pytest.raises(ConfigError, match="seed -1 is negative"):
        export_review(AnnotationResult.load(run), run / "review", n=2, seed=-1)
    (run / REVIEW_ROUNDS).write_text("[1, 2]\n")
    with pytest.raises(RunDirError, match="round 1: not a review round"):
        export_review(AnnotationResult.load(run), run / "review", n=2)
    (run / REVIEW_ROUNDS).unlink()
    with RunDir(run).open(), pytest.raises(RunDirError, match="another process"):  # one writer at a time
        export_review(AnnotationResult.load(run), run / "review", n=2)
    (run / "labels.jsonl").unlink()
    with pytest.raises(RunDirError, match=r"no labels\.jsonl: the run has not ended"):
        AnnotationResult.load(run)
    with pytest.raises(ConfigError, match="names starting with 'human:' are kept for the consensus and reviewers"):
        make_run(fake_server, tmp_path / "named", rows(2), models=[{"model": "openai/fake", "name": "human:gpt"}])


def truthful(request):
    """A model that is always right: 'item i' is LABELS[i % 3]."""
    import re

    from llm_annotator.testing import user_text

    i = int(re.search(r"item (\d+)", user_text(request)).group(1))
    return [json.dumps({"sentiment": LABELS[i % 3]})] * int(request.get("n") or 1)


def test_a_chosen_round_is_a_stratum_and_never_biases_later_random_rounds(fake_server, tmp_path):
    run = make_run(fake_server, tmp_path / "run", rows(40))
    export_review(AnnotationResult.load(run), run / "peek", n=10, strategy="confidence")
    random_csv, _ = export_review(AnnotationResult.load(run), run / "review", n=40)  # unanswered peek items too
    assert len(pd.read_csv(random_csv)) == 40
    fresh = make_run(fake_server, tmp_path / "fresh", rows(40))
    chosen, _ = export_review(AnnotationResult.load(fresh), fresh / "chosen", n=8, strategy="confidence")
    fill(chosen, lambda item: LABELS[int(item[1:]) % 3])
    import_reviews(fresh, chosen, reviewer="ana")
    drawn, _ = export_review(AnnotationResult.load(fresh), fresh / "review", n=12)
    assert not set(pd.read_csv(drawn)["item_id"]) & set(pd.read_csv(chosen)["item_id"])
    fill(drawn, lambda item: LABELS[int(item[1:]) % 3])
    import_reviews(fresh, drawn, reviewer="ana")
    from llm_annotator.outputs.trust import reviewed

    people = reviewed(AnnotationResult.load(fresh))
    assert people.design == "random + chosen stratum" and people.usable.sum() == 20
    order = AnnotationResult.load(fresh).items["item_id"].tolist()
    chosen_ids = set(pd.read_csv(chosen)["item_id"])
    assert all(people.inclusion[order.index(i)] == 1.0 for i in chosen_ids)
    assert all(people.inclusion[order.index(i)] == pytest.approx(12 / 32) for i in pd.read_csv(drawn)["item_id"])


def test_a_calibration_that_would_not_help_is_not_written(fake_server, tmp_path):
    server = fake_server(truthful)
    out = tmp_path / "run"
    annotate(rows(40), "sentiment", [{"model": "openai/fake", "name": "model-a"}], samples=2, api_base=server.url,
             id_column="id", out=out, progress=False)
    sheet, _ = export_review(AnnotationResult.load(out), out / "review", n=30)
    fill(sheet, lambda item: LABELS[int(item[1:]) % 3])
    written = import_reviews(out, sheet, reviewer="ana")["labels"]
    assert written["calibrated_on"] == 0 and "calibration would not help: cross-fitted Brier" in written["not_calibrated"]
    assert "cal_label" not in pd.read_csv(out / "labels.csv").columns


def test_review_csvs_that_would_merge_or_drop_answers_are_refused(fake_server, tmp_path):
    run = make_run(fake_server, tmp_path / "run", rows(6))
    two = tmp_path / "two.csv"
    two.write_text("item_id,review_label,reviewer\nr0,positive,ana\nr1,negative,bo\n")
    with pytest.raises(ConfigError, match="holds the answers of 2 people"):
        import_reviews(run, two, reviewer="ana")
    twice = tmp_path / "twice.csv"
    twice.write_text("item_id,review_label\nr0,positive\nr1,neutral\nr0,negative\n")
    with pytest.raises(DataError, match=r"twice.csv, rows 2 and 4: two answers of one reviewer for item 'r0'"):
        import_reviews(run, twice, reviewer="ana")
    (run / "review.csv").write_bytes("item_id;review_label\nr0;caf\xe9\n".encode("cp1252"))  # a spreadsheet's save
    with pytest.raises(ConfigError, match="exists and cannot be read to see whether it holds answers"):
        export_review(AnnotationResult.load(run), run / "review", n=2)
    with pytest.raises(ConfigError, match="are kept for the consensus and reviewers"):
        make_run(fake_server, tmp_path / "named", rows(2), models=[{"model": "openai/fake", "name": "consensus"}])


def test_running_the_job_again_keeps_the_reviewers_columns_in_labels(fake_server, tmp_path):
    run = make_run(fake_server, tmp_path / "run", rows(30))
    sheet, _ = export_review(AnnotationResult.load(run), run / "review", n=25)
    fill(sheet, lambda item: LABELS[int(item[1:]) % 3])
    import_reviews(run, sheet, reviewer="ana")
    before = pd.read_csv(run / "labels.csv")
    make_run(fake_server, run, rows(30))  # the same job again: it resumes, and writes labels.* anew
    after = pd.read_csv(run / "labels.csv")
    assert after["review_label"].notna().sum() == 25
    assert [c for c in before.columns if c.startswith("cal_")] == [c for c in after.columns if c.startswith("cal_")]

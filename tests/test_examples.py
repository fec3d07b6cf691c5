import json

import pandas as pd

from examples.melt.run_melt import label_changes, main


def test_melt_example_runs_offline_end_to_end(shared_data, tmp_path):
    out = tmp_path / "melt"
    assert main(["--split", "train", "--melt-filter", "--limit", "8", "--samples", "2", "--out", str(out),
                 "--meld-dir", str(shared_data / "meld"), "--melt-csv", str(shared_data / "melt" / "meld_train.csv")]) == 0
    for name in ("votes.jsonl", "labels.csv", "run.json", "agreement.json", "label_changes.csv",
                 "label_changes_published.csv", "report.html", "soft_labels.jsonl", "soft_labels.csv"):
        assert (out / name).is_file(), name
    rows = [json.loads(line) for line in (out / "soft_labels.jsonl").read_text().splitlines()]
    assert len(rows) == 8 and rows[0]["file"] == "dia0_utt0.wav"
    assert len(rows[0]["soft_label"]) == 7 and abs(sum(rows[0]["soft_label"]) - 1) < 1e-9
    for element in ("loudness", "pitch", "rhythm_speed", "emotional_impact"):  # MELT's other four elements
        assert all(len(row[f"{element}_soft_label"]) == 3 for row in rows)
    figures = json.loads((out / "agreement.json").read_text())
    assert figures["annotators"] == ["local/smollm2-135m", "Emotion", "llm_label"]
    changes = pd.read_csv(out / "label_changes_published.csv", index_col=0)
    assert changes.to_numpy().sum() == 8


def test_label_change_table_counts_invalid_answers():
    table = label_changes(["joy", "joy", "anger"], ["joy", None, "surprise"])
    assert table.loc["joy", "joy"] == 1 and table.loc["joy", "invalid"] == 1
    assert table.loc["anger", "surprise"] == 1


def test_melt_example_through_batch_jobs(shared_data, tmp_path, fake_server, capsys):
    from llm_annotator.testing import sampling_responder

    server = fake_server(sampling_responder(["neutral", "joy", "surprise", "anger", "sadness", "disgust", "fear"],
                                            "elements.emotion"))
    server.hold_batches = True
    out = tmp_path / "melt"
    argv = ["--split", "dev", "--limit", "6", "--samples", "2", "--out", str(out), "-m", "openai/fake",
            "--api-base", server.url, "--batch", "--meld-dir", str(shared_data / "meld")]
    assert main(argv) == 0
    assert "12 votes wait in batch jobs" in capsys.readouterr().out and not (out / "report.html").exists()
    assert main(argv) == 0  # still running: nothing asked twice
    assert len(server.batches) == 1 and not (out / "report.html").exists()
    server.hold_batches = False
    server.retrieve_batch(next(iter(server.batches)))  # the provider finishes
    assert main(argv) == 0
    assert (out / "report.html").is_file() and (out / "soft_labels.jsonl").is_file()
    assert json.loads((out / "run.json").read_text())["counts"]["valid"] == 12
    rows = [json.loads(line) for line in (out / "soft_labels.jsonl").read_text().splitlines()]
    # the scripted answers hold the emotion only: the other elements are invalid, each NaN soft label
    assert rows[0]["label"] is not None and rows[0]["loudness_label"] is None
    assert len(server.batches) == 1 and server.calls == 6

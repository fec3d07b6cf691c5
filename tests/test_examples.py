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
    figures = json.loads((out / "agreement.json").read_text())
    assert figures["annotators"] == ["local/smollm2-135m", "Emotion", "llm_label"]
    changes = pd.read_csv(out / "label_changes_published.csv", index_col=0)
    assert changes.to_numpy().sum() == 8


def test_label_change_table_counts_invalid_answers():
    table = label_changes(["joy", "joy", "anger"], ["joy", None, "surprise"])
    assert table.loc["joy", "joy"] == 1 and table.loc["joy", "invalid"] == 1
    assert table.loc["anger", "surprise"] == 1

"""`agree` on any table (a run's own labels.csv too) and on a run directory, with and without
gold and bootstrap: correct figures, or a one-line error that says the fix."""

import json
import subprocess
import sys

import krippendorff
import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import accuracy_score, cohen_kappa_score

from llm_annotator import annotate
from llm_annotator.core.errors import ConfigError, DataError
from llm_annotator.outputs.columns import result_from_columns
from llm_annotator.testing import sampling_responder

LABELS = ["positive", "negative", "neutral"]


@pytest.fixture
def run_dir(fake_server, tmp_path):
    """Two models, one sample each, on 24 reviews with a gold column."""
    server = fake_server(sampling_responder(LABELS, "sentiment"))
    rows = [{"id": f"r{i}", "text": f"review {i}", "gold": LABELS[i % 3]} for i in range(24)]
    out = tmp_path / "run"
    annotate(rows, "sentiment", [{"model": "openai/fake", "name": "model-a"},
                                 {"model": "openai/other", "name": "model-b"}],
             samples=1, api_base=server.url, id_column="id", out=out, progress=False)
    return out


def agree(*args):
    return subprocess.run([sys.executable, "-m", "llm_annotator", "agree", *map(str, args)],
                          capture_output=True, text=True, timeout=120)


def one_line_error(proc):
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    return lines[0]


def labels_frame(run_dir):
    table = pd.read_csv(run_dir / "labels.csv", keep_default_na=False)
    return table[table["label"] != ""]


def test_a_runs_labels_csv_is_a_table_like_any_other(run_dir):
    result = result_from_columns(run_dir / "labels.csv", ["label", "gold"])
    table = pd.read_csv(run_dir / "labels.csv")
    assert result.items["item_id"].tolist() == table["item_id"].tolist()  # the run's own ids
    assert list(result.items.columns).count("item_id") == 1
    figures = result.agreement(gold="gold", bootstrap=0)
    kept = labels_frame(run_dir)
    label = figures["vs_gold"]["label"]
    assert label["n"] == len(kept)
    assert label["accuracy"] == pytest.approx(accuracy_score(kept["gold"], kept["label"]))
    assert label["cohen_kappa"] == pytest.approx(cohen_kappa_score(kept["gold"], kept["label"]))
    assert figures["pairwise_cohen_kappa"]["label"]["gold"] == pytest.approx(label["cohen_kappa"])
    assert "ci" not in figures


def test_agree_cli_on_a_runs_labels_csv(run_dir, tmp_path):
    out = tmp_path / "agreement.json"
    proc = agree(run_dir / "labels.csv", "--columns", "label", "gold", "--gold", "gold", "--bootstrap", "200",
                 "--out", out)
    assert proc.returncode == 0, proc.stderr
    figures = json.loads(out.read_text())
    kept = labels_frame(run_dir)
    assert figures["n_items"] == 24
    assert figures["vs_gold"]["label"]["accuracy"] == pytest.approx(accuracy_score(kept["gold"], kept["label"]))
    interval = figures["ci"]["vs_gold"]["label"]["accuracy"]
    assert interval["low"] <= figures["vs_gold"]["label"]["accuracy"] <= interval["high"]
    assert "against gold (gold)" in proc.stdout


def test_a_table_with_an_item_id_column_and_another_id_column(tmp_path):
    path = tmp_path / "t.csv"
    pd.DataFrame({"item_id": ["x", "x", "y"], "key": ["k1", "k2", "k3"], "a": ["p", "q", "p"],
                  "b": ["p", "q", "q"]}).to_csv(path, index=False)
    result = result_from_columns(path, ["a", "b"], id_column="key")
    assert result.items["item_id"].tolist() == ["k1", "k2", "k3"]
    assert result.agreement(bootstrap=0)["pairwise_cohen_kappa"]["a"]["b"] == pytest.approx(
        cohen_kappa_score(["p", "q", "p"], ["p", "q", "q"]))


def test_a_table_whose_item_id_column_repeats_an_id_says_so(tmp_path):
    path = tmp_path / "t.csv"
    pd.DataFrame({"item_id": ["x", "x"], "a": ["p", "q"], "b": ["p", "q"]}).to_csv(path, index=False)
    with pytest.raises(DataError) as error:
        result_from_columns(path, ["a", "b"])
    assert "duplicate id 'x' in column 'item_id'" in str(error.value)
    assert "--id-column" in error.value.fix and "omit" not in error.value.fix
    proc = agree(path, "--columns", "a", "b", "--out", tmp_path / "agreement.json")
    assert "duplicate id 'x' in column 'item_id'" in one_line_error(proc)


def test_agree_on_a_table_without_columns_says_which_option_is_missing(run_dir):
    line = one_line_error(agree(run_dir / "labels.csv"))
    assert "is a table" in line and "--columns" in line


def test_agree_on_a_run_directory_with_gold_and_no_bootstrap(run_dir, tmp_path):
    out = tmp_path / "agreement.json"
    proc = agree(run_dir, "--gold", "gold", "--bootstrap", "0", "--out", out)
    assert proc.returncode == 0, proc.stderr
    assert "[" not in proc.stdout.split("pairwise")[0]  # no intervals without bootstrap
    figures = json.loads(out.read_text())
    assert "ci" not in figures
    votes = pd.read_json(run_dir / "votes.jsonl", lines=True)
    labels = votes.pivot(index="item_id", columns="annotator", values="label")
    gold = pd.read_csv(run_dir / "labels.csv").set_index("item_id")["gold"].reindex(labels.index)
    for name in ("model-a", "model-b"):
        assert figures["vs_gold"][name]["accuracy"] == pytest.approx(accuracy_score(gold, labels[name]))
        assert figures["vs_gold"][name]["cohen_kappa"] == pytest.approx(cohen_kappa_score(gold, labels[name]))
        assert figures["calibration"][name]["n"] == figures["vs_gold"][name]["n"] == 24
    codes = labels[["model-a", "model-b"]].map(LABELS.index).to_numpy(dtype=float).T
    assert figures["krippendorff_alpha"] == pytest.approx(
        krippendorff.alpha(reliability_data=codes, level_of_measurement="nominal"))
    assert figures["percent_agreement"] == pytest.approx(np.mean(labels["model-a"] == labels["model-b"]))


def test_agree_on_a_run_directory_with_intervals(run_dir, tmp_path):
    out = tmp_path / "agreement.json"
    proc = agree(run_dir, "--gold", "gold", "--bootstrap", "300", "--out", out)
    assert proc.returncode == 0, proc.stderr
    figures = json.loads(out.read_text())
    assert figures["ci"]["rounds"] == 300
    alpha = figures["ci"]["krippendorff_alpha"]
    assert alpha["low"] <= figures["krippendorff_alpha"] <= alpha["high"]
    assert f"Krippendorff's alpha: {figures['krippendorff_alpha']:.4f} [{alpha['low']:.4f}, " in proc.stdout


def test_agree_refuses_a_negative_number_of_bootstrap_rounds(run_dir, tmp_path):
    line = one_line_error(agree(run_dir, "--bootstrap", "-3", "--out", tmp_path / "a.json"))
    assert "bootstrap" in line and "-3" in line and "fix: " in line
    result = result_from_columns(run_dir / "labels.csv", ["label", "gold"])
    with pytest.raises(ConfigError, match="bootstrap rounds"):
        result.agreement(bootstrap=-3)


def test_agree_on_a_run_of_one_annotator_says_what_it_needs(fake_server, tmp_path):
    server = fake_server(lambda request: '{"sentiment": "neutral"}')
    out = tmp_path / "run"
    annotate([{"id": f"r{i}", "text": f"text {i}"} for i in range(4)], "sentiment", ["openai/fake"],
             api_base=server.url, id_column="id", out=out, progress=False)
    proc = subprocess.run([sys.executable, "-m", "llm_annotator", "agree", str(out), "--bootstrap", "0"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "agreement needs two annotators or more" in proc.stdout and "--gold" in proc.stdout

"""The CLI contract, run as a user runs it: a real process, a real server, real files."""

import json
import os
import subprocess
import sys

import pandas as pd
import pytest

from llm_annotator.cli import main
from llm_annotator.testing import sampling_responder

LABELS = ["positive", "negative", "neutral"]


def cli(*args, env=None, check=False):
    proc = subprocess.run([sys.executable, "-m", "llm_annotator", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=300)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


@pytest.fixture
def reviews(tmp_path):
    path = tmp_path / "reviews.csv"
    pd.DataFrame({"id": [f"r{i}" for i in range(8)], "text": [f"text {i}" for i in range(8)]}).to_csv(path, index=False)
    return path


def test_annotate_through_openai_api_base_writes_the_contract(fake_server, reviews, tmp_path):
    server = fake_server(sampling_responder(LABELS, "sentiment"))
    out = tmp_path / "run"
    proc = cli("annotate", str(reviews), "--task", "sentiment", "-m", "openai/fake", "--samples", "3",
               "--temperature", "0.7", "--out", str(out), "--id-column", "id", "--concurrency", "4",
               env={"OPENAI_API_BASE": server.url}, check=True)
    assert "24 valid votes" in proc.stdout and str(out / "labels.csv") in proc.stdout
    votes = [json.loads(line) for line in (out / "votes.jsonl").read_text().splitlines()]
    assert len(votes) == 24 and {v["sample_index"] for v in votes} == {0, 1, 2}
    labels = pd.read_csv(out / "labels.csv")
    assert list(labels["id"]) == [f"r{i}" for i in range(8)]
    assert {"p_positive", "label", "confidence", "n_valid", "n_requested"} <= set(labels.columns)
    assert len((out / "labels.jsonl").read_text().splitlines()) == 8
    run = json.loads((out / "run.json").read_text())
    assert run["task"]["name"] == "sentiment" and run["models"][0]["temperature"] == 0.7
    assert run["parameters"]["samples"] == 3 and run["counts"]["votes"] == 24
    assert {"tokens_in", "tokens_out", "cost_usd", "wall_s"} <= set(run)
    assert all(r["temperature"] == 0.7 for r in server.requests)


def test_plan_makes_no_call_and_prices_gpt4o(reviews):
    proc = cli("plan", str(reviews), "--task", "sentiment", "-m", "gpt-4o", "--samples", "5", "--json", check=True)
    plan = json.loads(proc.stdout)["models"][0]
    assert plan["requests"] == 8 and plan["uses_n"] is True and plan["votes"] == 40
    assert plan["tokens_in"] > 8 * 20 and plan["cost_usd_max"] > plan["cost_usd_expected"] > 0
    table = cli("plan", str(reviews), "--task", "sentiment", "-m", "gpt-4o", check=True).stdout
    assert "USD expected" in table and "total: $" in table
    batch = cli("plan", str(reviews), "--task", "sentiment", "-m", "gpt-4o", "--samples", "5", "--json", "--batch",
                check=True)
    batch_plan = json.loads(batch.stdout)["models"][0]
    assert batch_plan["tokens_in"] == plan["tokens_in"]
    assert batch_plan["cost_usd_expected"] == pytest.approx(plan["cost_usd_expected"] / 2)


def test_cache_stats_and_clear(fake_server, reviews, tmp_path):
    server = fake_server(sampling_responder(LABELS, "sentiment"))
    cache_dir = tmp_path / "c"
    cli("annotate", str(reviews), "-t", "sentiment", "-m", "openai/fake", "--api-base", server.url,
        "--out", str(tmp_path / "r"), "--cache-dir", str(cache_dir), "-q", check=True)
    assert cli("cache", "stats", "--cache-dir", str(cache_dir), check=True).stdout.startswith("8 answers")
    assert "removed 8 answers" in cli("cache", "clear", "--cache-dir", str(cache_dir), check=True).stdout
    assert cli("cache", "stats", "--cache-dir", str(cache_dir), check=True).stdout.startswith("0 answers")


def test_templates_list_and_show():
    listing = cli("templates", "list", check=True).stdout
    assert "emotion_melt" in listing and "sentiment" in listing
    shown = cli("templates", "show", "emotion_melt", check=True).stdout
    assert shown.startswith("---") and "{{ Speaker }} at s{{ Season }}e{{ Episode }}" in shown


@pytest.mark.parametrize(("args", "message"), [
    (["annotate", "{missing}", "-t", "sentiment"], "does not exist; fix: check the path"),
    (["annotate", "{data}", "-t", "nope"], "unknown task 'nope'"),
    (["annotate", "{data}", "-t", "emotion_melt", "-m", "openai/x"], "needs field"),
    (["annotate", "{data}", "-t", "classification"], "has no label set"),
    (["annotate", "{data}", "-t", "sentiment", "--samples", "0"], "samples=0"),
    (["annotate", "{data}", "-t", "sentiment", "--temperature", "-1"], "temperature -1"),
    (["annotate", "{data}", "-t", "sentiment", "-m", "no-such-model-abc"], "unknown model string"),
])
def test_bad_input_gives_one_line_and_exit_2(reviews, tmp_path, args, message):
    args = [a.format(missing=tmp_path / "missing.csv", data=reviews) for a in args]
    proc = cli(*args, "--out", str(tmp_path / "out"))
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("llm-annotator: error: ") and message in lines[0]
    assert not (tmp_path / "out" / "labels.csv").exists()


def test_main_without_command_prints_help(capsys):
    assert main([]) == 2
    assert "annotate" in capsys.readouterr().out


def test_import_stays_light():
    code = ("import sys, llm_annotator; heavy = [m for m in ('litellm', 'torch', 'transformers', 'pandas', "
            "'llama_cpp') if m in sys.modules]; print(heavy)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == "[]"


def test_agree_on_a_missing_path_says_it_does_not_exist(tmp_path):
    proc = cli("agree", str(tmp_path / "runs" / "missing"))
    assert proc.returncode == 2
    assert "does not exist" in proc.stderr and "is a table" not in proc.stderr


def test_templates_show_prints_a_template_file_given_by_path(tmp_path):
    template = tmp_path / "mine.jinja"
    template.write_text("---\nlabels: [a, b]\n---\nLabel {{ text }}\n")
    proc = cli("templates", "show", str(template), check=True)
    assert proc.stdout == template.read_text()
    assert cli("templates", "show", "sentiment", check=True).stdout.startswith("---")

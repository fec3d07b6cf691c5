"""The HTML report, opened in a real headless Chromium; the review export."""

import json
import re
import shutil
import subprocess
import sys

import pandas as pd
import pytest

from llm_annotator import annotate
from llm_annotator.testing import sampling_responder

LABELS = ["positive", "negative", "neutral"]


@pytest.fixture
def run_dir(fake_server, tmp_path):
    server = fake_server(sampling_responder(LABELS, "sentiment"))
    rng_gold = ["positive", "negative", "neutral"]
    rows = [{"id": f"r{i}", "text": f"review {i} <b>bold</b> & more", "gold": rng_gold[i % 3]} for i in range(30)]
    out = tmp_path / "run"
    annotate(rows, "sentiment", [{"model": "openai/fake", "name": "model-a"}, {"model": "openai/other", "name": "model-b"}],
             samples=3, api_base=server.url, id_column="id", out=out, progress=False)
    return out


def chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    assert path, "chromium is required (apt-get install chromium; .ci/run installs it)"
    return path


def test_report_renders_its_plots_and_tables_in_chromium(run_dir, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "llm_annotator", "report", str(run_dir), "--gold", "gold",
                           "--columns", "gold"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    report = run_dir / "report.html"
    text = report.read_text()
    assert not re.search(r'src="https?://', text)  # self-contained: nothing fetched
    assert "<b>bold</b>" not in text and "&lt;b&gt;bold&lt;/b&gt;" in text  # inputs are escaped
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr", "--v=0",
             "--virtual-time-budget=5000"]
    dom = subprocess.run([chromium(), *flags, "--dump-dom", report.as_uri()], capture_output=True, text=True,
                         timeout=120)
    images = int(re.search(r'data-images="(\d+)"', dom.stdout).group(1))
    rendered = int(re.search(r'data-rendered="(\d+)"', dom.stdout).group(1))
    assert images >= 6 and rendered == images  # every plot decoded and laid out
    assert dom.stdout.count("<table") >= 5
    for section in ("Run", "Labels", "Agreement between annotators", "Against gold (gold)", "Most uncertain items"):
        assert f">{section}</h2>" in dom.stdout
    assert ">Outputs</h2>" not in dom.stdout and 'id="output-' not in dom.stdout  # one output: no sections per output
    console_errors = [line for line in dom.stderr.splitlines() if "CONSOLE" in line and "error" in line.lower()]
    assert not console_errors, console_errors
    shot = tmp_path / "report.png"
    subprocess.run([chromium(), *flags, "--window-size=1200,2400", f"--screenshot={shot}", report.as_uri()],
                   capture_output=True, timeout=120)
    assert shot.stat().st_size > 50_000  # a page with plots, not a blank one


def test_report_without_matplotlib_has_its_tables_and_says_how_to_get_the_plots(run_dir, tmp_path):
    out = tmp_path / "report.html"
    code = ("import sys; sys.modules['matplotlib'] = None; from llm_annotator.cli import main; "
            f"sys.exit(main(['report', {str(run_dir)!r}, '--gold', 'gold', '--columns', 'gold', '--out', {str(out)!r}]))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    text = out.read_text()
    assert "<img" not in text
    assert "The plots need matplotlib: pip install &#x27;llm-annotator-kit[report]&#x27;" in text
    dom = subprocess.run([chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                          "--disable-background-networking", f"--user-data-dir={tmp_path / 'profile'}",
                          "--virtual-time-budget=3000", "--dump-dom", out.as_uri()],
                         capture_output=True, text=True, timeout=120).stdout
    assert 'data-images="0"' in dom
    assert dom.count("<table") >= 6
    for section in ("Run", "Labels", "Agreement between annotators", "Against gold (gold)", "Most uncertain items"):
        assert f">{section}</h2>" in dom
    subprocess.run([sys.executable, "-m", "llm_annotator", "agree", str(run_dir), "--columns", "gold", "--gold",
                    "gold", "--bootstrap", "0", "--out", str(tmp_path / "a.json")], capture_output=True, check=True)
    figures = json.loads((tmp_path / "a.json").read_text())
    accuracy = figures["vs_gold"]["model-a"]["accuracy"]
    assert f"<td>model-a</td><td>30</td><td>{accuracy:.4f}</td>" in text  # the figures agree reports


def test_review_export_csv_and_label_studio(run_dir):
    proc = subprocess.run([sys.executable, "-m", "llm_annotator", "review", str(run_dir), "-n", "10", "--strategy", "confidence"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    queue = pd.read_csv(run_dir / "review.csv")
    assert len(queue) == 10
    assert queue["confidence"].is_monotonic_increasing
    assert {"label_model-a", "label_model-b", "annotators_disagree", "text"} <= set(queue.columns)
    tasks = json.loads((run_dir / "review.label_studio.json").read_text())
    assert len(tasks) == 10 and tasks[0]["data"]["text"].startswith("review")
    prediction = tasks[0]["predictions"][0]
    assert prediction["result"][0]["value"]["choices"][0] in LABELS
    assert prediction["score"] == pytest.approx(queue["confidence"].iloc[0])
    assert sum(tasks[0]["data"]["soft_label"].values()) == pytest.approx(1.0)

"""The report of a task with several outputs: one section per output, opened in a real headless Chromium."""

import json
import re
import shutil
import subprocess

import pytest

from llm_annotator import annotate
from llm_annotator.core.errors import TaskError
from llm_annotator.outputs.report import write_report
from llm_annotator.testing.responders import user_text
from llm_annotator.testing.server import FakeOpenAI

TASK = """---
name: rate
labels: [neg, neu, pos]
outputs:
  {first}
  {second}
  intensity: {{kind: ordinal, labels: [low, medium, high]}}
explanations: [reason]
---
{{{{ text }}}}
"""
SENTIMENT = "sentiment: {kind: categorical}"
AROUSAL = "arousal: {kind: numeric, range: [1, 5], integer: true}"
EMOTIONS = "emotions: {kind: multi_label, labels: [joy, anger, sadness]}"
SETS = [["joy"], ["anger", "sadness"], []]


def respond(request):
    """Each item's answer, the same at every sample; model b disagrees with a on some items."""
    i = int(re.search(r"item (\d+)", user_text(request)).group(1))
    b = request["model"] == "b"
    answer = {"sentiment": ["neg", "neu", "pos"][i % 3], "intensity": ["low", "medium", "high"][(i + (b and i % 4 == 0)) % 3],
              "arousal": 1 + (i + (b and i % 2)) % 5, "emotions": SETS[(i + (b and i % 5 == 0)) % 3], "reason": "so"}
    return json.dumps(answer)


def rows():
    return [{"id": f"r{i}", "text": f"item {i}", "gold": ["neg", "neu", "pos"][i % 3],
             "gold_intensity": ["low", "medium", "high"][i % 3], "gold_arousal": 1 + i % 5,
             "gold_emotions": "|".join(SETS[i % 3])} for i in range(24)]


def run(tmp_path, first, second):
    path = tmp_path / "rate.md"
    path.write_text(TASK.format(first=first, second=second))
    with FakeOpenAI(respond) as server:
        return annotate(rows(), task=path, models=["openai/a", "openai/b"], api_base=server.url, samples=2,
                        temperature=1.0, id_column="id", progress=False)


def rendered(report, tmp_path):
    """The DOM Chromium builds from the report, after every image has loaded."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, "chromium is required (apt-get install chromium; .ci/run installs it)"
    dom = subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                          "--disable-background-networking", f"--user-data-dir={tmp_path / 'profile'}",
                          "--virtual-time-budget=5000", "--dump-dom", report.as_uri()],
                         capture_output=True, text=True, timeout=120).stdout
    images = int(re.search(r'data-images="(\d+)"', dom).group(1))
    assert images > 0 and f'data-rendered="{images}"' in dom  # every plot decoded and laid out
    return dom


def sections(dom):
    """Each output's section of the DOM (from its heading to the next output's), by output name."""
    parts = re.split(r'<h2 id="output-([\w-]+)">', dom)
    return {parts[k]: parts[k + 1] for k in range(1, len(parts), 2)}


def row(section, figure, value):
    return f"<td>{figure}</td><td>{value:.4f}</td>" in section


def annotator_row(section, name, value):
    """Whether the section has a table row of ``name`` holding ``value`` (as the report writes it)."""
    return re.search(rf"<tr><td>{re.escape(name)}</td>(<td>[^<]*</td>)*?<td>{value:.4f}</td>", section) is not None


def test_each_output_has_its_section_with_its_kinds_plots_and_figures(tmp_path):
    result = run(tmp_path, SENTIMENT, AROUSAL + "\n  " + EMOTIONS)
    gold = {"sentiment": "gold", "intensity": "gold_intensity", "arousal": "gold_arousal", "emotions": "gold_emotions"}
    dom = rendered(write_report(result, tmp_path / "report.html", gold=gold), tmp_path)
    part = sections(dom)
    assert list(part) == ["sentiment", "arousal", "emotions", "intensity"]  # the task's order, the primary first
    assert ">Output sentiment (categorical, primary)</h2>" in dom and ">Outputs</h2>" in dom
    for heading in ("Labels", "Agreement between annotators", "Against gold (gold)", "Most uncertain items (sentiment)"):
        assert f">{heading}</h2>" in part["sentiment"]  # the primary's part, as a one-output task's

    intensity = part["intensity"]
    assert intensity.startswith("Output intensity (ordinal)</h2>")
    for alt in ("consensus distribution", "median distribution", "confidence histogram"):
        assert f'alt="intensity {alt}"' in intensity
    labels = result.output("intensity").labels()
    counts = labels["median"].value_counts()
    low = counts.get("low", 0)
    assert low > 0 and re.search(rf"<tr><td>low</td><td>\d+</td><td>[\d.]+</td><td>{low}</td></tr>", intensity)
    figures = result.output("intensity").agreement(gold="gold_intensity", bootstrap=0)
    assert row(intensity, "Krippendorff's alpha (ordinal)", figures["krippendorff_alpha"])
    assert ">Against gold (gold_intensity)</h3>" in intensity
    accuracy = figures["vs_gold"]["openai/b"]["accuracy"]
    assert 0 < accuracy < 1 and annotator_row(intensity, "openai/b", accuracy)

    arousal = part["arousal"]
    assert arousal.startswith("Output arousal (numeric)</h2>")
    for alt in ("mean histogram", "sd histogram", "mean and sd"):
        assert f'alt="arousal {alt}"' in arousal
    labels = result.output("arousal").labels()
    assert row(arousal, "mean of the means", labels["mean"].mean())
    assert row(arousal, "mean sd", labels["sd"].mean()) and labels["sd"].mean() > 0
    figures = result.output("arousal").agreement(gold="gold_arousal", bootstrap=0)
    assert row(arousal, "Krippendorff's alpha (interval)", figures["krippendorff_alpha"])
    assert 0 < figures["krippendorff_alpha"] < 1
    assert ">Against gold (gold_arousal)</h3>" in arousal and "<th>MAE</th>" in arousal and "<th>CCC</th>" in arousal
    assert annotator_row(arousal, "openai/b", figures["vs_gold"]["openai/b"]["mae"])

    emotions = part["emotions"]
    assert emotions.startswith("Output emotions (multi-label)</h2>")
    for alt in ("label probabilities", "expected set size"):
        assert f'alt="emotions {alt}"' in emotions
    labels = result.output("emotions").labels()
    assert row(emotions, "joy", labels["p_joy"].mean())
    assert f"Mean expected set size {labels['expected_size'].mean():.4f}" in emotions
    figures = result.output("emotions").agreement(gold="gold_emotions", bootstrap=0)
    assert 0 < figures["jaccard"] < 1 and row(emotions, "mean pairwise Jaccard", figures["jaccard"])
    alpha = figures["krippendorff_alpha"]["joy"]
    assert "<th>Krippendorff's alpha (nominal) per label</th>" in emotions and row(emotions, "joy", alpha)
    assert alpha < 1 and row(emotions, "mean of the labels' alphas", figures["mean_alpha"])
    assert ">Against gold (gold_emotions)</h3>" in emotions and "<th>Hamming loss</th>" in emotions
    example_f1 = figures["vs_gold"]["openai/b"]["example_f1"]
    assert 0 < example_f1 < 1 and annotator_row(emotions, "openai/b", example_f1)


def test_a_primary_output_of_another_kind_is_drawn_as_its_kind(tmp_path):
    result = run(tmp_path, EMOTIONS, AROUSAL)
    report = write_report(result, tmp_path / "report.html", gold="gold_emotions")
    dom = rendered(report, tmp_path)
    part = sections(dom)
    assert list(part) == ["emotions", "arousal", "intensity"]
    assert part["emotions"].startswith("Output emotions (multi-label, primary)</h2>")
    assert 'alt="emotions label probabilities"' in part["emotions"]
    assert ">Against gold (gold_emotions)</h3>" in part["emotions"]  # a plain gold column is the primary's
    assert ">Most uncertain items (emotions)</h2>" in part["emotions"]
    assert ">Against gold" not in part["arousal"] and ">Labels</h2>" not in dom  # no gold named for arousal


def test_a_gold_column_for_an_unknown_output_names_the_outputs(tmp_path):
    result = run(tmp_path, SENTIMENT, AROUSAL)
    with pytest.raises(TaskError) as caught:
        write_report(result, tmp_path / "report.html", gold={"valence": "gold"})
    assert "task 'rate' has no output 'valence'" in caught.value.message
    assert caught.value.fix == "use one of sentiment, arousal, intensity"
    assert not (tmp_path / "report.html").exists()

"""Trust from a few human labels, measured on MELT: how often corpus intervals hold, how wide.

    python benchmarks/trust.py [--draws 1000] [--render]

No model calls. ``../shared/data/melt/meld_train.csv`` holds GPT-4o's label (``llm_label``,
one answer per utterance) and MELD's human label (``Emotion``) for 7,024 utterances. The
7,024 human labels are the truth of the corpus; the benchmark draws human subsets of
n = 100, 200 and 500 items (``--draws`` times each, seeded) and asks
:func:`llm_annotator.analysis.estimates.label_shares` and ``accuracy`` for 90 % intervals
of every emotion's share and of GPT-4o's accuracy, as a user with n human labels would.
Coverage is the share of draws whose interval holds the corpus truth.

1. ``srs``: simple random samples (``selection.choose("random")``): human-only (Wilson),
   PPI (λ = 1) and PPI++ (λ tuned), each with ppi_py's normal interval and the score
   interval the library reports.
2. ``strategies``: the human subset chosen by ``review`` strategies. GPT-4o's soft labels
   are one-hot (one answer per utterance), so every confidence is 1 and every item's
   spread is 0: ``interval`` is a uniform design, ``confidence`` takes the first n items
   in file order, and ``disagreement`` (one annotator: every score 0) equals ``confidence``.
3. ``calibrated``: the same with a soft label that varies: for an utterance GPT-4o called
   ``j``, the corpus share of each human emotion among all utterances it called ``j`` (a
   calibration map fitted on all 7,024 human labels, so an upper bound on what a fitted
   calibration could give; it is a fixed function of GPT-4o's answer, so PPI stays valid).

A GPT-4o label outside the seven emotions would count as no valid LLM label (a NaN row)
in the shares and as a miss in GPT-4o's accuracy; this file has none. Writes
benchmarks/results/trust.json and the section "Measured on MELT" of docs/trust.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
sys.path.insert(0, str(ROOT))
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from llm_annotator.analysis.estimates import accuracy, label_shares  # noqa: E402
from llm_annotator.analysis.selection import choose  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "trust.json"
DOC = ROOT / "docs" / "trust.md"
BEGIN, END = "<!-- trust-benchmark:begin -->", "<!-- trust-benchmark:end -->"
LABELS = ["neutral", "joy", "surprise", "anger", "sadness", "disgust", "fear"]
SIZES = (100, 200, 500)
LEVEL = 0.9
TARGET_WIDTH = 0.06  # the mean PPI++ width over the seven shares each strategy is asked to reach
#: method name -> (block of label_shares' answer, low field, high field)
METHODS = {"human_only": ("human_only", "low", "high"),
           "ppi_normal": ("ppi", "normal_low", "normal_high"), "ppi": ("ppi", "low", "high"),
           "ppi_power_normal": ("ppi_power", "normal_low", "normal_high"), "ppi_power": ("ppi_power", "low", "high")}


class Corpus:
    """MELT as arrays: human truth, GPT-4o's one-hot soft labels, its hits."""

    def __init__(self, frame: pd.DataFrame) -> None:
        self.gold = frame["Emotion"].to_numpy(dtype=object)
        said = frame["llm_label"].to_numpy(dtype=object)
        self.outside = int(sum(s not in LABELS for s in said))
        self.onehot = np.array([[float(s == label) for label in LABELS] if s in LABELS else [np.nan] * len(LABELS)
                                for s in said])
        self.hit = (said == self.gold).astype(float)  # a label outside the set is a miss
        self.truth = np.array([np.mean(self.gold == label) for label in LABELS])
        # the calibrated soft label: P(human = k | GPT-4o said j), over the whole corpus
        known = ~np.isnan(self.onehot).any(axis=1)
        table = pd.crosstab(pd.Series(said[known]), pd.Series(self.gold[known])).reindex(
            index=LABELS, columns=LABELS, fill_value=0)
        rates = (table.to_numpy(float) / table.to_numpy(float).sum(axis=1, keepdims=True))
        self.calibrated = np.where(known[:, None], np.nan_to_num(self.onehot) @ rates, np.nan)
        self.said_index = np.array([LABELS.index(s) if s in LABELS else -1 for s in said])

    def predicted_right(self, probs: np.ndarray) -> np.ndarray:
        """The probability ``probs`` gives GPT-4o's own label (NaN where it has none)."""
        out = np.full(len(probs), np.nan)
        ok = self.said_index >= 0
        out[ok] = probs[ok, self.said_index[ok]]
        return out


def one_draw(corpus: Corpus, probs: np.ndarray, indices: tuple[int, ...], inclusion: tuple[float, ...] | None
             ) -> tuple[np.ndarray, np.ndarray, list[dict[str, Any]], dict[str, Any]]:
    """Covered and width per method × label, label_shares' and accuracy's answers, for one human subset."""
    n_items = len(probs)
    idx = np.asarray(indices)
    human = np.full(n_items, None, dtype=object)
    human[idx] = corpus.gold[idx]
    hit = np.full(n_items, None, dtype=object)
    hit[idx] = corpus.hit[idx]
    inc = None
    if inclusion is not None:
        inc = np.full(n_items, None, dtype=object)
        inc[idx] = inclusion
    rows = label_shares(probs, human, LABELS, level=LEVEL, inclusion=inc)
    low = np.array([[r[b][lo] for r in rows] for b, lo, _ in METHODS.values()])
    high = np.array([[r[b][hi] for r in rows] for b, _, hi in METHODS.values()])
    covered = (low <= corpus.truth) & (corpus.truth <= high)
    acc = accuracy(hit, corpus.predicted_right(probs), level=LEVEL, inclusion=inc)
    return covered, high - low, rows, acc


def measure(corpus: Corpus, probs: np.ndarray, strategy: str, n: int, draws: int) -> dict[str, Any]:
    """Coverage and median width of every method over ``draws`` subsets chosen by ``strategy``."""
    covered, widths, lams, acc_cov, acc_width, acc_lam = [], [], [], [], [], []
    truth_acc = float(corpus.hit.mean())
    for seed in range(draws):
        chosen = choose(strategy, n, probs=probs, seed=seed)
        c, w, rows, acc = one_draw(corpus, probs, chosen.indices, chosen.inclusion)
        covered.append(c)
        widths.append(w)
        lams.append([r["ppi_power"]["lambda"] for r in rows])
        acc_cov.append([acc[k]["low"] <= truth_acc <= acc[k]["high"] for k in ("human_only", "ppi_power")])
        acc_width.append([acc[k]["high"] - acc[k]["low"] for k in ("human_only", "ppi_power")])
        acc_lam.append(acc["ppi_power"]["lambda"])
    cov, width = np.mean(covered, axis=0), np.median(widths, axis=0)
    return {"strategy": strategy, "n": n, "draws": draws,
            "labels": {label: {**{m: {"coverage": float(cov[i, j]), "median_width": float(width[i, j])}
                                  for i, m in enumerate(METHODS)},
                               "lambda_mean": float(np.mean(lams, axis=0)[j])} for j, label in enumerate(LABELS)},
            "accuracy": {m: {"coverage": float(np.mean(acc_cov, axis=0)[i]),
                             "median_width": float(np.median(acc_width, axis=0)[i])}
                         for i, m in enumerate(("human_only", "ppi_power"))} | {"lambda_mean": float(np.mean(acc_lam))}}


def deterministic(corpus: Corpus, probs: np.ndarray, strategy: str, n: int) -> dict[str, Any]:
    """One selection (nothing random to repeat): whether each interval holds the truth, and its error."""
    confidence = np.nan_to_num(np.nanmax(probs, axis=1), nan=0.0)
    chosen = choose(strategy, n, probs=probs, confidence=confidence, disagreement=np.zeros(len(probs)))
    covered, width, rows, acc = one_draw(corpus, probs, chosen.indices, None)
    errors = {label: {m: rows[j][b]["estimate"] - corpus.truth[j] for m, (b, _, _) in METHODS.items()
                      if m in ("human_only", "ppi_power")} for j, label in enumerate(LABELS)}
    return {"strategy": strategy, "n": n, "first_items": list(chosen.indices[:5]),
            "covered": {m: int(covered[i].sum()) for i, m in enumerate(METHODS)},
            "median_width": {m: float(np.median(width[i])) for i, m in enumerate(METHODS)},
            "errors": errors, "largest_error": {m: float(max(abs(e[m]) for e in errors.values()))
                                                for m in ("human_only", "ppi_power")},
            "accuracy_error": acc["ppi_power"]["estimate"] - float(corpus.hit.mean())}


def labels_for_width(runs: list[dict[str, Any]], target: float) -> float | None:
    """The n at which the mean PPI++ width over the labels reaches ``target`` (width ∝ n^-1/2
    between the measured sizes, extrapolated at the ends)."""
    points = sorted((r["n"], float(np.mean([v["ppi_power"]["median_width"] for v in r["labels"].values()])))
                    for r in runs)
    ns, widths = np.log([p[0] for p in points]), np.log([p[1] for p in points])
    slope, intercept = np.polyfit(ns, widths, 1)
    return float(np.exp((np.log(target) - intercept) / slope)) if slope < 0 else None


def run(draws: int, strategy_draws: int) -> dict[str, Any]:
    started = time.perf_counter()
    frame = pd.read_csv(DATA / "melt" / "meld_train.csv")
    corpus = Corpus(frame)
    srs = []
    for n in SIZES:
        srs.append(measure(corpus, corpus.onehot, "random", n, draws))
        print(f"srs n={n} done at {time.perf_counter() - started:.0f} s", flush=True)
    strategies = {"interval": [measure(corpus, corpus.onehot, "interval", n, strategy_draws) for n in SIZES],
                  "confidence": [deterministic(corpus, corpus.onehot, "confidence", n) for n in SIZES],
                  "disagreement": [deterministic(corpus, corpus.onehot, "disagreement", n) for n in SIZES]}
    print(f"strategies done at {time.perf_counter() - started:.0f} s", flush=True)
    calibrated = {"random": [measure(corpus, corpus.calibrated, "random", n, strategy_draws) for n in SIZES],
                  "interval": [measure(corpus, corpus.calibrated, "interval", n, strategy_draws) for n in SIZES],
                  "confidence": [deterministic(corpus, corpus.calibrated, "confidence", n) for n in SIZES]}
    print(f"calibrated done at {time.perf_counter() - started:.0f} s", flush=True)
    calibrated_conf = corpus.calibrated.max(axis=1)
    return {
        "command": "python benchmarks/trust.py", "date": dt.date.today().isoformat(), "commit": _commit(),
        "machine": platform.platform(), "cpus": os.cpu_count(), "level": LEVEL, "draws": draws,
        "strategy_draws": strategy_draws, "target_width": TARGET_WIDTH,
        "corpus": {"items": len(frame), "labels": LABELS, "truth": dict(zip(LABELS, corpus.truth.tolist(), strict=True)),
                   "llm_share": dict(zip(LABELS, np.nanmean(corpus.onehot, axis=0).tolist(), strict=True)),
                   "gpt4o_accuracy": float(corpus.hit.mean()), "llm_labels_outside_the_set": corpus.outside,
                   "calibrated_confidence": {"min": float(np.nanmin(calibrated_conf)),
                                             "max": float(np.nanmax(calibrated_conf)),
                                             "distinct": len(np.unique(calibrated_conf))}},
        "srs": srs, "strategies": strategies, "calibrated": calibrated,
        "labels_for_width": {
            "melt_random": labels_for_width(srs, TARGET_WIDTH),
            "melt_interval": labels_for_width(strategies["interval"], TARGET_WIDTH),
            "calibrated_random": labels_for_width(calibrated["random"], TARGET_WIDTH),
            "calibrated_interval": labels_for_width(calibrated["interval"], TARGET_WIDTH)},
        "wall_s": round(time.perf_counter() - started, 1),
    }


def _commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def cell(block: dict[str, Any]) -> str:
    return f"{block['coverage']:.2f} · {block['median_width']:.3f}"


def share_tables(report: dict[str, Any]) -> list[str]:
    lines = []
    truth = report["corpus"]["truth"]
    for run_ in report["srs"]:
        lines += [f"**n = {run_['n']}** human labels ({run_['draws']:,} random samples):", "",
                  "| emotion | corpus share | human only (Wilson) | PPI λ = 1, normal (ppi_py) | PPI λ = 1, score "
                  "| PPI++, normal (ppi_py) | **PPI++, score (reported)** | mean λ |",
                  "|---|---|---|---|---|---|---|---|"]
        for label, row in run_["labels"].items():
            lines.append(f"| {label} | {truth[label]:.3f} | " + " | ".join(cell(row[m]) for m in METHODS)
                         + f" | {row['lambda_mean']:.2f} |")
        acc = run_["accuracy"]
        lines += [f"| GPT-4o's accuracy | {report['corpus']['gpt4o_accuracy']:.3f} | {cell(acc['human_only'])} "
                  f"| | | | {cell(acc['ppi_power'])} | {acc['lambda_mean']:.2f} |", ""]
    return lines


def _mean(run_: dict[str, Any], method: str, key: str) -> float:
    return float(np.mean([v[method][key] for v in run_["labels"].values()]))


def strategy_table(report: dict[str, Any]) -> list[str]:
    lines = ["| soft labels | strategy | n | draws | PPI++ coverage, lowest of 7 · mean | PPI++ mean width "
             "| human-only mean width | GPT-4o's accuracy, PPI++ |", "|---|---|---|---|---|---|---|---|"]
    groups = (("GPT-4o, one-hot", "random", report["srs"]),
              ("GPT-4o, one-hot", "interval", report["strategies"]["interval"]),
              ("calibrated", "random", report["calibrated"]["random"]),
              ("calibrated", "interval", report["calibrated"]["interval"]))
    for soft, strategy, runs in groups:
        for r in runs:
            lowest = min(v["ppi_power"]["coverage"] for v in r["labels"].values())
            lines.append(f"| {soft} | {strategy} | {r['n']} | {r['draws']:,} | {lowest:.2f} · "
                         f"{_mean(r, 'ppi_power', 'coverage'):.2f} | {_mean(r, 'ppi_power', 'median_width'):.3f} | "
                         f"{_mean(r, 'human_only', 'median_width'):.3f} | {cell(r['accuracy']['ppi_power'])} |")
    lines += ["", "`confidence` chooses one subset (nothing random to repeat); its estimates, taken as if it "
              "were a sample:", "",
              "| soft labels | n | shares whose PPI++ interval holds the truth | largest error of a share "
              "| error of GPT-4o's accuracy |", "|---|---|---|---|---|"]
    for soft, key in (("GPT-4o, one-hot", "strategies"), ("calibrated", "calibrated")):
        for r in report[key]["confidence"]:
            lines.append(f"| {soft} | {r['n']} | {r['covered']['ppi_power']} of 7 | "
                         f"{r['largest_error']['ppi_power']:.3f} | {r['accuracy_error']:+.3f} |")
    return [*lines, ""]


def findings(report: dict[str, Any]) -> list[str]:
    """What the figures say, every number read from ``report``."""
    c = report["corpus"]
    by_n = {r["n"]: r for r in report["srs"]}
    small = by_n[min(by_n)]
    rare = [label for label in c["labels"] if c["truth"][label] < 0.05]
    normal = min(small["labels"][r]["ppi_power_normal"]["coverage"] for r in rare)
    score = min(small["labels"][r]["ppi_power"]["coverage"] for r in rare)
    covers = [v["ppi_power"]["coverage"] for r in report["srs"] for v in r["labels"].values()]
    ratio = _mean(small, "human_only", "median_width") / _mean(small, "ppi_power", "median_width")
    ppi_wider = max(v["ppi"]["median_width"] / v["human_only"]["median_width"] for v in small["labels"].values())
    n_wider = sum(v["ppi"]["median_width"] > v["human_only"]["median_width"] for v in small["labels"].values())
    power_wider = max(v["ppi_power"]["median_width"] / v["human_only"]["median_width"]
                      for r in report["srs"] for v in r["labels"].values())
    need = {k: v for k, v in report["labels_for_width"].items() if v}
    conf = {r["n"]: r for r in report["strategies"]["confidence"]}
    cal_conf = report["calibrated"]["confidence"][0]
    return [
        f"From {small['n']} human labels, ppi_py's normal PPI++ interval holds the share of the rare emotions "
        f"({' and '.join(rare)}, {min(c['truth'][r] for r in rare):.1%}–{max(c['truth'][r] for r in rare):.1%} of the "
        f"corpus) only {normal:.0%} of the time, against {score:.0%} for the score "
        f"interval `label_shares` reports, which covers {min(covers):.0%}–{max(covers):.0%} for every emotion and "
        f"n. GPT-4o agrees with MELD's people on only {c['gpt4o_accuracy']:.0%} of these utterances, so its labels "
        f"buy little: PPI++ tunes λ down to {np.mean([v['lambda_mean'] for v in small['labels'].values()]):.2f} on "
        f"average and its intervals are {1 - 1 / ratio:.0%} narrower than human-only ones (worth "
        f"{ratio ** 2 - 1:.0%} more human labels), while classic PPI (λ = 1) is wider than human-only for "
        f"{n_wider} of 7 emotions, up to {ppi_wider:.2f}×; the power-tuned width stays at most {power_wider:.2f}× the human-only "
        "one. For GPT-4o's accuracy PPI adds nothing: with one answer per utterance the probability it gives its "
        "own label is 1 everywhere, λ is 0 and the interval is the human-only one. With one-hot soft labels every "
        "confidence is 1 and every spread 0, so `interval` is a uniform random design (as good as `random`, no "
        "better), and `confidence` (like `disagreement`, all 0 with one annotator) takes the first utterances in "
        f"file order, whose intervals held {conf[max(conf)]['covered']['ppi_power']} of 7 shares at "
        f"n = {max(conf)}. With a soft label that varies (calibrated on all 7,024 human labels, a best case), the "
        f"lowest-confidence subset is made of GPT-4o's least reliable classes: its estimate of GPT-4o's accuracy is "
        f"off by {cal_conf['accuracy_error']:+.2f} and {7 - cal_conf['covered']['ppi_power']} of 7 share intervals "
        f"miss, while `interval` reaches a mean PPI++ width of {report['target_width']} with "
        f"{need.get('calibrated_interval', float('nan')):.0f} labels against "
        f"{need.get('calibrated_random', float('nan')):.0f} for `random`: a saving too small to matter here.",
    ]


def render(report: dict[str, Any], doc: Path = DOC) -> None:
    """Write the MELT section of docs/trust.md between its markers (appended if absent)."""
    lines = [BEGIN, "## Measured on MELT: coverage and width", "",
             f"Measured {report['date']} at commit `{report['commit']}` with `{report['command']}` "
             f"({report['wall_s']:.0f} s on {report['cpus']} CPUs; raw figures in `benchmarks/results/trust.json`; "
             "`python benchmarks/trust.py --render` rewrites this section from them). No model calls: GPT-4o's "
             f"label and MELD's human label for the {report['corpus']['items']:,} utterances of "
             "`melt/meld_train.csv`, whose human labels are taken as the corpus truth. Each cell is the coverage "
             f"of the {report['level']:.0%} interval (the share of draws that hold the corpus value) · its median "
             "width. *Normal* is ppi_py's interval; *score* is the one `label_shares` reports (its docstring "
             "has the formula).", "",
             *share_tables(report),
             "### Review strategies", "",
             "The same estimates when the human subset is chosen by `review --strategy`: `random` and `interval` "
             "pass their inclusion probabilities to the estimators; `confidence` is one deterministic selection "
             "(nothing to repeat), estimated as if it were a sample. *Calibrated* soft labels give each "
             "utterance the corpus distribution of human emotions among the utterances GPT-4o labelled as it "
             "did (fitted on all 7,024 human labels: what a good calibration could reach at best).", "",
             *strategy_table(report),
             "### What the figures say", "",
             " ".join(findings(report)), "", END]
    text = doc.read_text(encoding="utf-8") if doc.exists() else ""
    if BEGIN in text and END in text:
        text = text[:text.index(BEGIN)] + "\n".join(lines) + text[text.index(END) + len(END):]
    else:
        text = text.rstrip("\n") + "\n\n" + "\n".join(lines) + "\n"
    doc.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--draws", type=int, default=1000, help="human subsets per size (default 1000)")
    parser.add_argument("--strategy-draws", type=int, default=300,
                        help="subsets per size for the strategy comparisons (default 300)")
    parser.add_argument("--render", action="store_true", help="only rewrite docs/trust.md from the JSON")
    args = parser.parse_args()
    if not args.render:
        report = run(args.draws, args.strategy_draws)
        RESULTS.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {RESULTS} in {report['wall_s']} s")
    render(json.loads(RESULTS.read_text(encoding="utf-8")))
    print(f"wrote the MELT section of {DOC}")

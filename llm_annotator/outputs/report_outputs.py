"""The report's section of one output of a structured task, with the plots and figures of its kind.

A task with several outputs (:mod:`llm_annotator.core.outputs`) gets, after its primary
output's part, one section per other output, drawn from ``result.output(name)``:

- categorical and ordinal: the consensus label's distribution over the output's labels
  (an ordinal one in scale order, beside the distribution of the items' median vote) and
  the histogram of the consensus confidence;
- numeric: histograms over the scale's bins of the items' consensus mean and of their
  standard deviation, and every item's mean ± sd;
- multi-label: each label's mean probability and the distribution of the expected set size.

Each section has its output's agreement figures (Krippendorff's alpha at the output's
level of measurement and the rest its kind computes) and, with a gold column for the
output, the annotators' figures against it. A figure the kind does not compute is left out.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from llm_annotator.outputs.report import _figure_uri, _fmt, _table

#: How a figure's key reads in the report; an unknown key reads as itself, spaced.
FIGURE_NAMES = {
    "krippendorff_alpha": "Krippendorff's alpha", "fleiss_kappa": "Fleiss' kappa",
    "percent_agreement": "percent agreement", "jaccard": "Jaccard", "n": "n", "samples": "samples",
    "alpha": "alpha over samples", "mean_top_share": "mean top share", "accuracy": "accuracy",
    "macro_f1": "macro-F1", "micro_f1": "micro-F1", "example_f1": "example-F1", "uar": "UAR",
    "cohen_kappa": "Cohen's kappa", "mae": "MAE", "rmse": "RMSE", "pearson": "Pearson r", "ccc": "CCC",
    "hamming_loss": "Hamming loss", "spearman": "Spearman rho", "mean_sd": "mean sd", "ece": "ECE",
    "brier": "Brier",
}
#: How a figure between annotators reads where it differs from the same key against gold.
BETWEEN_NAMES = {"jaccard": "mean pairwise Jaccard", "mean_alpha": "mean of the labels' alphas"}
#: Entries of an agreement dict that are not figures of the section's tables.
NOT_FIGURES = {"kind", "output", "n_items", "annotators", "labels", "ci", "calibration", "vs_gold",
               "self_consistency", "level", "scale"}

Image = Callable[..., str]


def _name(key: str) -> str:
    return FIGURE_NAMES.get(key, key.replace("_", " "))


def _scalar(value: Any) -> bool:
    return value is None or isinstance(value, int | float | np.integer | np.floating)


def _bars(plt: Any, names: list[str], values: list[float], title: str, ylabel: str) -> str:
    fig, ax = plt.subplots(figsize=(max(4.6, len(names) * 0.9), 3.2))
    ax.bar(np.arange(len(names)), values, 0.7, color="tab:blue")
    ax.set_xticks(np.arange(len(names)), names, rotation=30 if len(names) > 6 else 0, ha="right" if len(names) > 6 else "center")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    return _figure_uri(fig)


def _histogram(plt: Any, values: np.ndarray, edges: Any, title: str, xlabel: str) -> str:
    fig, ax = plt.subplots(figsize=(4.6, 3.2))
    ax.hist(values[np.isfinite(values)], bins=edges, color="tab:blue", edgecolor="white")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("items")
    ax.set_title(title, fontsize=9)
    return _figure_uri(fig)


def _mean_sd_plot(plt: Any, means: np.ndarray, sds: np.ndarray, scale: tuple[float, float], name: str) -> str:
    keep = np.isfinite(means)
    order = np.argsort(means[keep], kind="stable")
    m, s = means[keep][order], np.nan_to_num(sds[keep][order])
    fig, ax = plt.subplots(figsize=(6.4, 3.2))
    ax.errorbar(np.arange(len(m)), m, yerr=s, fmt="o", markersize=3, elinewidth=1, capsize=2)
    ax.set_ylim(scale[0] - 0.5, scale[1] + 0.5)
    ax.set_xlabel("items, by consensus mean")
    ax.set_ylabel(name)
    ax.set_title(f"{name}: mean ± sd of the votes per item", fontsize=9)
    return _figure_uri(fig)


def _numbers(frame: Any, column: str) -> np.ndarray:
    import pandas as pd

    return pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype=float)


def _counts(values: list[Any], categories: tuple[str, ...]) -> list[int]:
    return [sum(1 for v in values if v == c) for c in categories]


def _plain_part(spec: Any, labels: Any, image: Image) -> list[str]:
    """Consensus distribution and confidence of a categorical or ordinal output."""
    cats = spec.categories
    consensus = _counts(labels["label"].tolist(), cats)
    total = max(1, sum(consensus))
    rows = [[c, n, n / total] for c, n in zip(cats, consensus, strict=True)]
    header = ["label", "items (consensus)", "share"]
    if spec.kind == "ordinal" and "median" in labels:
        medians = _counts(labels["median"].tolist(), cats)
        rows = [[*row, m] for row, m in zip(rows, medians, strict=True)]
        header.append("items (median)")
    confidence = _numbers(labels, "confidence")
    out = [_table(header, rows, "consensus"),
           f"<p>Mean consensus confidence {_fmt(float(np.nanmean(confidence)) if np.isfinite(confidence).any() else None)}"
           f" over {int(np.isfinite(confidence).sum())} items.</p>",
           image(f"{spec.name} consensus distribution", _bars, list(cats), [n / total for n in consensus],
                 f"{spec.name}: consensus label" + (" (scale order)" if spec.kind == "ordinal" else ""),
                 "share of items")]
    if spec.kind == "ordinal" and "median" in labels:
        out.append(image(f"{spec.name} median distribution", _bars, list(cats), medians,
                         f"{spec.name}: median category per item", "items"))
    out.append(image(f"{spec.name} confidence histogram", _histogram, confidence, np.linspace(0, 1, 11),
                     f"{spec.name}: consensus confidence", "confidence"))
    return out


def _numeric_part(spec: Any, labels: Any, image: Image) -> list[str]:
    """Consensus mean and spread of a numeric output over its scale's bins."""
    missing = np.full(len(labels), np.nan)  # a figure the labels table lacks is left out
    means = _numbers(labels, "mean") if "mean" in labels else missing
    sds = _numbers(labels, "sd") if "sd" in labels else missing
    medians = _numbers(labels, "median") if "median" in labels else None
    ok = np.isfinite(means)
    low, high = spec.range
    rows: list[list[Any]] = [
        ["items with a value", int(ok.sum())],
        ["mean of the means", float(means[ok].mean()) if ok.any() else None],
        ["median of the means", float(np.median(means[ok])) if ok.any() else None],
        ["mean sd", float(np.nanmean(sds[ok])) if ok.any() and np.isfinite(sds[ok]).any() else None]]
    if medians is not None and np.isfinite(medians).any():
        rows.append(["median of the items' medians", float(np.nanmedian(medians))])
    out = [f"<p>Scale {low:g} to {high:g}{', integers' if spec.integer else ''}; bins "
           f"{html.escape(', '.join(spec.categories))}.</p>", _table(["figure", "value"], rows, "consensus")]
    if not ok.any():
        return out
    spread = max(1.0, float(np.nanmax(sds)) if np.isfinite(sds).any() else 1.0)
    return [*out, image(f"{spec.name} mean histogram", _histogram, means, list(spec.edges),
                        f"{spec.name}: consensus mean per item, over the scale's bins", spec.name),
                  image(f"{spec.name} sd histogram", _histogram, sds, np.linspace(0, spread, 11),
                        f"{spec.name}: sd of the votes per item", "sd"),
                  image(f"{spec.name} mean and sd", _mean_sd_plot, means, sds, (low, high), spec.name)]


def _multi_part(spec: Any, labels: Any, image: Image) -> list[str]:
    """Each label's mean probability and the expected size of the set."""
    cats = spec.categories
    probs = [float(np.nanmean(_numbers(labels, f"p_{c}"))) if f"p_{c}" in labels else float("nan") for c in cats]
    chosen = [0] * len(cats)
    if "set" in labels:
        for members in labels["set"].tolist():
            names = members if isinstance(members, list | tuple | set) else \
                [m for m in str(members or "").split("|") if m]
            chosen = [n + (c in names) for n, c in zip(chosen, cats, strict=True)]
    rows: list[list[Any]] = [[c, p, n] for c, p, n in zip(cats, probs, chosen, strict=True)]
    out = [_table(["label", "mean probability", "items with the label (consensus set)"], rows, "consensus"),
           image(f"{spec.name} label probabilities", _bars, list(cats), probs,
                 f"{spec.name}: mean probability of each label", "mean probability")]
    if "expected_size" in labels:
        sizes = _numbers(labels, "expected_size")
        out.insert(1, f"<p>Mean expected set size {_fmt(float(np.nanmean(sizes)) if np.isfinite(sizes).any() else None)}.</p>")
        out.append(image(f"{spec.name} expected set size", _histogram, sizes, np.arange(len(cats) + 2) - 0.5,
                         f"{spec.name}: expected set size per item", "expected size"))
    return out


def _per_annotator(figures: Mapping[str, Any]) -> str:
    """A table of one figure dict per annotator (its scalar entries, in order of first appearance)."""
    columns: list[str] = []
    for values in figures.values():
        for key, value in (values or {}).items():
            if key not in columns and _scalar(value):
                columns.append(key)
    rows = [[name, *((values or {}).get(c) for c in columns)] for name, values in figures.items()]
    return _table(["annotator", *map(_name, columns)], rows)


def agreement_part(spec: Any, figures: Mapping[str, Any], gold: str | None) -> list[str]:
    """The tables of an output's agreement dict: its scalar figures, per-label and per-annotator ones."""
    rows, per_label = [], []
    for key, value in figures.items():
        if key in NOT_FIGURES:
            continue
        level = f" ({spec.scale})" if key == "krippendorff_alpha" else ""
        if _scalar(value):
            rows.append([BETWEEN_NAMES.get(key, _name(key)) + level, value])
        elif isinstance(value, Mapping) and value and set(value) <= set(spec.categories) \
                and all(_scalar(v) for v in value.values()):
            per_label.append((_name(key) + level + " per label", value))
    out = [f"<h3>Agreement between annotators ({html.escape(spec.name)})</h3>",
           _table(["figure", "value"], rows, "agreement") if rows else "<p>No agreement figure: one annotator.</p>"]
    for title, value in per_label:
        out.append(_table(["label", title], [[c, value.get(c)] for c in spec.categories if c in value]))
    if figures.get("self_consistency"):
        out += ["<h3>Within each annotator</h3>", _per_annotator(figures["self_consistency"])]
    if gold is not None and figures.get("vs_gold"):
        calibration = figures.get("calibration") or {}
        scored = {n: {**v, **{k: calibration[n].get(k) for k in ("ece", "brier") if n in calibration}}
                  for n, v in figures["vs_gold"].items()}
        out += [f"<h3>Against gold ({html.escape(gold)})</h3>", _per_annotator(scored)]
    return out


def kind_part(spec: Any, labels: Any, image: Image) -> list[str]:
    """The consensus tables and plots of one output's kind."""
    if spec.kind == "numeric":
        return _numeric_part(spec, labels, image)
    if spec.kind == "multi_label":
        return _multi_part(spec, labels, image)
    return _plain_part(spec, labels, image)


def output_section(result: Any, name: str, gold: str | None, image: Image, *, primary: bool = False) -> list[str]:
    """The report's section of output ``name``: its kind's plots, its agreement and, with a gold
    column for it (``gold``), its figures against gold."""
    one = result.output(name)
    spec = one.task.primary
    voters = one.without([gold]) if gold and gold in one.annotators else one
    figures = one.agreement(gold=gold, bootstrap=0)
    valid = int(one.votes["label"].notna().sum())
    head = [f'<h2 id="output-{html.escape(name)}">Output {html.escape(name)} '
            f"({spec.kind.replace('_', '-')}{', primary' if primary else ''})</h2>",
            f"<p>{len(one.items)} items, {valid} valid votes of {len(one.votes)}.</p>"]
    return head + kind_part(spec, voters.labels(), image) + agreement_part(spec, figures, gold)


def outputs_index(task: Any) -> str:
    """The list of a structured task's outputs, each a link to its section."""
    items = "".join(f'<li><a href="#output-{html.escape(s.name)}">{html.escape(s.name)}</a> '
                    f"({s.kind.replace('_', '-')})</li>" for s in task.output_specs)
    return f"<h2>Outputs</h2><ul class=\"outputs\">{items}</ul>"


__all__ = ["agreement_part", "kind_part", "output_section", "outputs_index"]

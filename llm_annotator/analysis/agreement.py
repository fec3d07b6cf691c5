"""Agreement between annotators and with gold labels, with the formulas.

Missing or invalid votes are missing data, never a label: every figure is computed over
the items (or pairs) where the labels it needs exist, and says how many those were.

Against gold, over the n items with both labels (``y`` gold, ``ŷ`` predicted, classes c):

* accuracy ``= mean(ŷ = y)``; unweighted average recall ``UAR = mean_c recall_c`` (the
  SER literature's "UA"; chance is 1/K whatever the class balance);
* ``F1_c = 2 P_c R_c / (P_c + R_c)``, macro-F1 the unweighted mean over the classes that
  occur in gold or prediction;
* Cohen's kappa ``κ = (p_o - p_e) / (1 - p_e)``, ``p_e = Σ_c p_gold(c) p_pred(c)``
  (Cohen 1960).

Between annotators:

* percent agreement: the share of agreeing pairs among all pairs of labels on an item,
  averaged over items with at least two labels;
* Fleiss' kappa (Fleiss 1971) over items with the same number m ≥ 2 of labels;
* Krippendorff's alpha ``α = 1 - D_o / D_e`` (Krippendorff 2011) through the
  ``krippendorff`` package: any number of coders, missing data allowed, nominal by
  default, ordinal or interval for scales.

One label set and one item set serve a figure, its bootstrap interval and its calibration:
the task's labels followed by any other value the gold column holds (:func:`label_set`),
so a gold label no annotator can give counts as an error everywhere rather than being
dropped from some figures and not others.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from llm_annotator.core.errors import ConfigError


def _codes(values: Sequence[Any], classes: list[Any]) -> np.ndarray:
    index = {c: i for i, c in enumerate(classes)}
    return np.array([index[v] for v in values], dtype=int)


def confusion(gold: Sequence[Any], pred: Sequence[Any], classes: Sequence[Any]) -> np.ndarray:
    """Counts ``M[i, j]`` of gold class i predicted as class j."""
    k = len(classes)
    g = _codes(gold, list(classes))
    p = _codes(pred, list(classes))
    matrix = np.zeros((k, k), dtype=int)
    np.add.at(matrix, (g, p), 1)
    return matrix


def _pairs(gold: Sequence[Any], pred: Sequence[Any]) -> tuple[list[Any], list[Any]]:
    kept = [(g, p) for g, p in zip(gold, pred, strict=True) if not _missing(g) and not _missing(p)]
    return [g for g, _ in kept], [p for _, p in kept]


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value))


def label_set(labels: Sequence[Any], *columns: Sequence[Any]) -> list[Any]:
    """``labels``, then every other value present in ``columns`` (sorted as text).

    The one class list of a figure against gold, of its interval and of its calibration:
    a gold label outside the task's set is a class nobody predicts, never a missing value.
    """
    known = set(labels)
    extra = {v for column in columns for v in column if not _missing(v) and v not in known}
    return [*labels, *sorted(extra, key=str)]


def vs_gold(gold: Sequence[Any], pred: Sequence[Any], classes: Sequence[Any] | None = None) -> dict[str, Any]:
    """Accuracy, macro-F1, UAR, Cohen's kappa, per-class P/R/F1 and the confusion matrix."""
    g, p = _pairs(gold, pred)
    n = len(g)
    classes = label_set([] if classes is None else list(classes), g, p)
    if n == 0:
        return {"n": 0, "accuracy": float("nan"), "macro_f1": float("nan"), "uar": float("nan"),
                "cohen_kappa": float("nan"), "classes": classes, "confusion": [], "per_class": {}}
    m = confusion(g, p, classes).astype(float)
    support = m.sum(axis=1)
    predicted = m.sum(axis=0)
    tp = np.diag(m)
    with np.errstate(invalid="ignore", divide="ignore"):
        recall = np.where(support > 0, tp / support, np.nan)
        precision = np.where(predicted > 0, tp / predicted, 0.0)
        f1 = np.where(precision + np.nan_to_num(recall) > 0,
                      2 * precision * np.nan_to_num(recall) / (precision + np.nan_to_num(recall)), 0.0)
    present = (support > 0) | (predicted > 0)
    po = tp.sum() / n
    pe = float((support / n) @ (predicted / n))
    kappa = (po - pe) / (1 - pe) if pe < 1 else float("nan")
    return {
        "n": n,
        "accuracy": float(po),
        "macro_f1": float(f1[present].mean()),
        "uar": float(np.nanmean(recall[support > 0])),
        "cohen_kappa": float(kappa),
        "classes": classes,
        "confusion": m.astype(int).tolist(),
        "per_class": {str(c): {"precision": float(precision[i]), "recall": float(recall[i]),
                               "f1": float(f1[i]), "support": int(support[i])}
                      for i, c in enumerate(classes)},
    }


def cohen_kappa(a: Sequence[Any], b: Sequence[Any]) -> float:
    return float(vs_gold(a, b)["cohen_kappa"])


def reliability_matrix(table: Any, classes: Sequence[Any]) -> np.ndarray:
    """Coders x items matrix of class codes (NaN = missing) from an items x coders frame."""
    index = {c: float(i) for i, c in enumerate(classes)}
    values = table.to_numpy(dtype=object).T
    out = np.full(values.shape, np.nan)
    for (i, j), v in np.ndenumerate(values):
        if not _missing(v):
            out[i, j] = index[v]
    return out


def krippendorff_alpha(matrix: np.ndarray, level: str = "nominal") -> float:
    """Krippendorff's alpha of a coders x items matrix (NaN = missing).

    NaN when no item has two values, or when every value is the same (``D_e = 0``).
    """
    import krippendorff

    usable = np.sum(~np.isnan(matrix), axis=0) >= 2
    if len(np.unique(matrix[:, usable][~np.isnan(matrix[:, usable])])) < 2:
        return float("nan")
    measure: Any = level
    return float(krippendorff.alpha(reliability_data=matrix[:, usable], level_of_measurement=measure))


def _category_counts(matrix: np.ndarray, k: int) -> np.ndarray:
    """Items x classes counts of labels per item from a coders x items matrix."""
    counts = np.zeros((matrix.shape[1], k))
    coders, items = np.nonzero(~np.isnan(matrix))
    np.add.at(counts, (items, matrix[coders, items].astype(int)), 1)
    return counts


def percent_agreement(matrix: np.ndarray, k: int) -> float:
    counts = _category_counts(matrix, k)
    m = counts.sum(axis=1)
    ok = m >= 2
    if not ok.any():
        return float("nan")
    agree = (counts[ok] * (counts[ok] - 1)).sum(axis=1) / (m[ok] * (m[ok] - 1))
    return float(agree.mean())


def fleiss_kappa(matrix: np.ndarray, k: int) -> float:
    """Fleiss' kappa over the items that have the most common number m ≥ 2 of labels."""
    counts = _category_counts(matrix, k)
    m = counts.sum(axis=1)
    if (m >= 2).sum() == 0:
        return float("nan")
    values, freq = np.unique(m[m >= 2], return_counts=True)
    raters = values[np.argmax(freq)]
    counts = counts[m == raters]
    n = counts.shape[0]
    p_j = counts.sum(axis=0) / (n * raters)
    p_i = ((counts * (counts - 1)).sum(axis=1)) / (raters * (raters - 1))
    p_bar, p_e = p_i.mean(), float((p_j ** 2).sum())
    return float((p_bar - p_e) / (1 - p_e)) if p_e < 1 else float("nan")


__all__ = ["cohen_kappa", "confusion", "fleiss_kappa", "krippendorff_alpha", "label_set", "percent_agreement",
           "reliability_matrix", "vs_gold"]


# -- vectorised nominal alpha and the bootstrap -------------------------------------------
def item_coincidences(matrix: np.ndarray, k: int) -> np.ndarray:
    """Per item, its contribution to Krippendorff's coincidence matrix (items x K*K).

    ``o_ck = Σ_u (n_uc n_uk − [c = k] n_uc) / (m_u − 1)`` over items u with m_u ≥ 2 values;
    summing rows (with bootstrap weights) gives the coincidence matrix of any resample.
    """
    counts = _category_counts(matrix, k)
    m = counts.sum(axis=1)
    ok = m >= 2
    outer = counts[:, :, None] * counts[:, None, :]
    outer[:, np.arange(k), np.arange(k)] -= counts
    out = np.zeros((counts.shape[0], k * k))
    out[ok] = (outer[ok] / (m[ok] - 1)[:, None, None]).reshape(-1, k * k)
    return out


def _distances(n_c: np.ndarray, level: str) -> np.ndarray:
    """Squared distances ``δ²_ck`` between class codes 0..K-1 (Krippendorff 2011, sec. 4)."""
    k = len(n_c)
    codes = np.arange(k)
    if level == "nominal":
        return (codes[:, None] != codes[None, :]).astype(float)
    if level == "interval":
        return (codes[:, None] - codes[None, :]).astype(float) ** 2
    if level == "ordinal":  # (Σ_{g=c}^{k} n_g − (n_c + n_k) / 2)², for c ≤ k
        low, high = np.minimum(codes[:, None], codes[None, :]), np.maximum(codes[:, None], codes[None, :])
        cumulative = np.concatenate([[0.0], np.cumsum(n_c)])
        between = cumulative[high + 1] - cumulative[low]
        return (between - (n_c[low] + n_c[high]) / 2) ** 2
    raise ConfigError(f"unknown level of measurement {level!r}", fix="use 'nominal', 'ordinal' or 'interval'")


def alpha_from_coincidence(o: np.ndarray, level: str = "nominal") -> float:
    """Alpha ``1 − (n − 1) Σ o_ck δ²_ck / Σ n_c n_k δ²_ck`` from a K x K coincidence matrix.

    ``n_c`` are the row sums of ``o``; ``δ²`` is the nominal (c ≠ k), interval
    ((c − k)²) or ordinal distance between class codes, as the ``krippendorff`` package
    computes them, so the figure equals :func:`krippendorff_alpha` on the same items.
    """
    n_c = o.sum(axis=1)
    n = n_c.sum()
    delta = _distances(n_c, level)
    expected = float((np.outer(n_c, n_c) * delta).sum())
    if n <= 1 or expected == 0:
        return float("nan")
    return float(1 - (n - 1) * (o * delta).sum() / expected)


def _gold_scores(g: np.ndarray, p: np.ndarray, k: int, weights: np.ndarray) -> dict[str, float]:
    """accuracy, macro-F1, UAR, kappa from code arrays (-1 = missing) and item weights."""
    ok = (g >= 0) & (p >= 0) & (weights > 0)
    m = np.bincount(g[ok] * k + p[ok], weights=weights[ok], minlength=k * k).reshape(k, k)
    n = m.sum()
    if n == 0:
        return dict.fromkeys(("accuracy", "macro_f1", "uar", "cohen_kappa"), float("nan"))
    support, predicted, tp = m.sum(axis=1), m.sum(axis=0), np.diag(m)
    with np.errstate(invalid="ignore", divide="ignore"):
        recall = np.where(support > 0, tp / support, 0.0)
        precision = np.where(predicted > 0, tp / predicted, 0.0)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    present = (support > 0) | (predicted > 0)
    po = tp.sum() / n
    pe = float((support / n) @ (predicted / n))
    return {"accuracy": float(po), "macro_f1": float(f1[present].mean()),
            "uar": float(recall[support > 0].mean()),
            "cohen_kappa": float((po - pe) / (1 - pe)) if pe < 1 else float("nan")}


def bootstrap_intervals(table: Any, labels: Sequence[str], gold: Sequence[Any] | None = None, *,
                        rounds: int = 1000, seed: int = 0, level: float = 0.95,
                        measure: str = "nominal") -> dict[str, Any]:
    """Percentile bootstrap intervals over items for alpha, percent agreement and vs-gold figures.

    Items are drawn with replacement ``rounds`` times (seeded: reproducible); each figure
    is recomputed on every resample from per-item parts, so 100k items take seconds. The
    items and classes are those of :func:`agreement_table` (gold labels outside ``labels``
    count as classes nobody predicts); ``measure`` is alpha's level of measurement.
    """
    if isinstance(rounds, bool) or not isinstance(rounds, int | np.integer) or rounds < 1:
        raise ConfigError(f"bootstrap rounds must be a whole number of at least 1, got {rounds!r}",
                          fix="use --bootstrap 1000 (bootstrap=1000), or 0 for no intervals")
    if not 0 < level < 1:
        raise ConfigError(f"the interval level must lie between 0 and 1, got {level!r}", fix="use e.g. level=0.95")
    classes = label_set(labels, [] if gold is None else gold, *(table[c].tolist() for c in table.columns))
    k = len(classes)
    matrix = reliability_matrix(table, classes)
    n_items = matrix.shape[1]
    rng = np.random.default_rng(seed)
    weights = np.stack([np.bincount(rng.integers(0, n_items, n_items), minlength=n_items)
                        for _ in range(rounds)]).astype(float)
    lo, hi = (1 - level) / 2, 1 - (1 - level) / 2

    def interval(values: np.ndarray) -> dict[str, float]:
        values = values[~np.isnan(values)]
        if not len(values):
            return {"low": float("nan"), "high": float("nan")}
        return {"low": float(np.quantile(values, lo)), "high": float(np.quantile(values, hi))}

    out: dict[str, Any] = {"rounds": rounds, "seed": seed, "level": level, "measure": measure}
    if matrix.shape[0] > 1:
        parts = item_coincidences(matrix, k)
        coincidences = weights @ parts
        out["krippendorff_alpha"] = interval(np.array([alpha_from_coincidence(o.reshape(k, k), measure)
                                                       for o in coincidences]))
        counts = _category_counts(matrix, k)
        m = counts.sum(axis=1)
        usable = m >= 2
        agree = np.zeros(n_items)
        agree[usable] = (counts[usable] * (counts[usable] - 1)).sum(axis=1) / (m[usable] * (m[usable] - 1))
        with np.errstate(invalid="ignore", divide="ignore"):
            pa = (weights * agree).sum(axis=1) / (weights * usable).sum(axis=1)
        out["percent_agreement"] = interval(pa)
    if gold is not None:
        index = {c: i for i, c in enumerate(classes)}
        g = np.array([index.get(v, -1) if not _missing(v) else -1 for v in gold])
        out["vs_gold"] = {}
        for w, name in enumerate(table.columns):
            p = np.nan_to_num(matrix[w], nan=-1).astype(int)
            rows = [_gold_scores(g, p, k, weights[r]) for r in range(rounds)]
            out["vs_gold"][str(name)] = {key: interval(np.array([r[key] for r in rows]))
                                         for key in ("accuracy", "macro_f1", "uar", "cohen_kappa")}
    return out


def self_consistency(votes: Any, labels: Sequence[str]) -> dict[str, dict[str, float]]:
    """Within each annotator: alpha over its k samples (samples as coders) and mean top share."""
    out: dict[str, dict[str, float]] = {}
    valid = votes[votes["label"].notna()]
    for name, group in votes.groupby("annotator", sort=False):
        table = valid[valid["annotator"] == name].pivot_table(
            index="item_id", columns="sample_index", values="label", aggfunc="first")
        if table.shape[1] < 2:
            out[str(name)] = {"samples": int(group["sample_index"].nunique()), "alpha": float("nan"),
                              "mean_top_share": float("nan")}
            continue
        matrix = reliability_matrix(table, list(labels))
        counts = _category_counts(matrix, len(labels))
        m = counts.sum(axis=1)
        share = counts.max(axis=1)[m > 0] / m[m > 0]
        out[str(name)] = {"samples": int(table.shape[1]), "alpha": krippendorff_alpha(matrix),
                          "mean_top_share": float(share.mean())}
    return out


def annotator_labels(votes: Any, labels: Sequence[str], item_order: Sequence[str],
                     annotators: Sequence[str] | None = None) -> Any:
    """Items x annotators table of each annotator's own label (argmax of its soft label).

    An annotator with no valid vote on an item has NaN there: missing, not a label. The
    columns are ``annotators`` in their order (one without any vote is a column of NaN),
    else the annotators in the order of their first vote.
    """
    import pandas as pd

    from llm_annotator.analysis.aggregate import argmax_labels, soft_labels

    per = soft_labels(votes, labels)
    per = per[per["n_valid"] > 0]
    chosen = argmax_labels(per[list(labels)].to_numpy(dtype=float), labels)
    frame = pd.DataFrame({"label": chosen}, index=per.index).reset_index()
    table = frame.pivot(index="item_id", columns="annotator", values="label")
    columns = list(dict.fromkeys(votes["annotator"])) if annotators is None else list(annotators)
    return table.reindex(index=list(item_order), columns=columns)


def agreement_table(table: Any, labels: Sequence[str], *, gold: Sequence[Any] | None = None,
                    level: str = "nominal") -> dict[str, Any]:
    """Every agreement figure for an items x annotators table of labels (NaN = missing)."""
    classes = label_set(labels, [] if gold is None else gold, *(table[c].tolist() for c in table.columns))
    matrix = reliability_matrix(table, classes)
    k = len(classes)
    names = [str(c) for c in table.columns]
    pairwise: dict[str, dict[str, float]] = {a: {} for a in names}
    for i, a in enumerate(names):
        for j, b in enumerate(names):
            if i == j:
                pairwise[a][b] = 1.0
            elif j > i:
                ga, gb = _pairs(table.iloc[:, i].tolist(), table.iloc[:, j].tolist())
                pairwise[a][b] = pairwise.setdefault(b, {})[a] = (
                    cohen_kappa(ga, gb) if ga else float("nan"))
    out: dict[str, Any] = {
        "n_items": int(table.shape[0]),
        "annotators": names,
        "krippendorff_alpha": krippendorff_alpha(matrix, level) if len(names) > 1 else float("nan"),
        "fleiss_kappa": fleiss_kappa(matrix, k) if len(names) > 1 else float("nan"),
        "percent_agreement": percent_agreement(matrix, k) if len(names) > 1 else float("nan"),
        "pairwise_cohen_kappa": pairwise,
    }
    if gold is not None:
        out["vs_gold"] = {name: vs_gold(list(gold), table[name].tolist(), classes) for name in table.columns}
    return out


def to_json(figures: dict[str, Any]) -> str:
    """JSON text of agreement figures (NaN as null)."""
    import json

    def clean(value: Any) -> Any:
        if isinstance(value, dict):
            return {str(k): clean(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [clean(v) for v in value]
        if isinstance(value, np.generic):
            value = value.item()
        if isinstance(value, float) and np.isnan(value):
            return None
        return value

    return json.dumps(clean(figures), indent=2, ensure_ascii=False) + "\n"


def format_report(figures: dict[str, Any], gold: str | None = None) -> str:
    """The agreement figures as plain-text tables."""
    ci = figures.get("ci", {})

    def num(value: float, key: str | None = None, source: dict[str, Any] | None = None) -> str:
        text = "n/a" if value is None or (isinstance(value, float) and np.isnan(value)) else f"{value:.4f}"
        bounds = (source or ci).get(key) if key else None
        if isinstance(bounds, dict) and "low" in bounds and not np.isnan(bounds["low"]):
            text += f" [{bounds['low']:.4f}, {bounds['high']:.4f}]"
        return text

    names = figures["annotators"]
    lines = [f"items: {figures['n_items']}   annotators: {', '.join(names)}"]
    if len(names) < 2 and "vs_gold" not in figures:
        lines.append("agreement needs two annotators or more: annotate with a second model (-m), add label "
                     "columns of the input (--columns), or compare with reference labels (--gold)")
    if len(names) > 1:
        lines += [f"Krippendorff's alpha: {num(figures['krippendorff_alpha'], 'krippendorff_alpha')}",
                  f"Fleiss' kappa:        {num(figures['fleiss_kappa'])}",
                  f"percent agreement:    {num(figures['percent_agreement'], 'percent_agreement')}",
                  "", "pairwise Cohen's kappa:"]
        # columns by number: names that share a long prefix (two prompts of one model) stay apart
        width = max(len(n) for n in names) + 7
        lines.append(" " * width + "".join(f"[{i}]".rjust(9) for i in range(1, len(names) + 1)))
        for i, a in enumerate(names, 1):
            lines.append(f"[{i}] {a}".ljust(width)
                         + "".join(num(figures["pairwise_cohen_kappa"][a][b]).rjust(9) for b in names))
    consistency = {k: v for k, v in figures.get("self_consistency", {}).items() if v.get("samples", 1) > 1}
    if consistency:
        lines += ["", "self-consistency over samples (alpha, mean top share):"]
        lines += [f"  {name}: {num(v['alpha'])}, {num(v['mean_top_share'])}" for name, v in consistency.items()]
    if "vs_gold" in figures:
        named = max([28, *(len(name) for name in figures["vs_gold"])])
        lines += ["", f"against gold ({gold}):",
                  f"  {'annotator':{named}} {'n':>6} {'accuracy':>24} {'macro_f1':>8} {'uar':>8} {'kappa':>8} {'ECE':>8}"]
        for name, m in figures["vs_gold"].items():
            bounds = ci.get("vs_gold", {}).get(name, {})
            ece = figures.get("calibration", {}).get(name, {}).get("ece", float("nan"))
            lines.append(f"  {name:{named}} {m['n']:>6} {num(m['accuracy'], 'accuracy', bounds):>24} "
                         f"{num(m['macro_f1']):>8} {num(m['uar']):>8} {num(m['cohen_kappa']):>8} {num(ece):>8}")
    return "\n".join(lines)

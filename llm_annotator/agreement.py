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
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


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


def vs_gold(gold: Sequence[Any], pred: Sequence[Any], classes: Sequence[Any] | None = None) -> dict[str, Any]:
    """Accuracy, macro-F1, UAR, Cohen's kappa, per-class P/R/F1 and the confusion matrix."""
    g, p = _pairs(gold, pred)
    n = len(g)
    if classes is None:
        classes = sorted(set(g) | set(p), key=str)
    classes = list(classes)
    extra = sorted((set(g) | set(p)) - set(classes), key=str)
    classes += extra
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
    """Krippendorff's alpha of a coders x items matrix (NaN = missing)."""
    import krippendorff

    usable = np.sum(~np.isnan(matrix), axis=0) >= 2
    if usable.sum() == 0:
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


__all__ = ["cohen_kappa", "confusion", "fleiss_kappa", "krippendorff_alpha", "percent_agreement",
           "reliability_matrix", "vs_gold"]


def annotator_labels(votes: Any, labels: Sequence[str], item_order: Sequence[str]) -> Any:
    """Items x annotators table of each annotator's own label (argmax of its soft label).

    An annotator with no valid vote on an item has NaN there: missing, not a label.
    """
    import pandas as pd

    from .aggregate import argmax_labels, soft_labels

    per = soft_labels(votes, labels)
    per = per[per["n_valid"] > 0]
    chosen = argmax_labels(per[list(labels)].to_numpy(dtype=float), labels)
    frame = pd.DataFrame({"label": chosen}, index=per.index).reset_index()
    table = frame.pivot(index="item_id", columns="annotator", values="label")
    annotators = list(dict.fromkeys(votes["annotator"]))
    return table.reindex(index=list(item_order), columns=annotators)


def agreement_table(table: Any, labels: Sequence[str], *, gold: Sequence[Any] | None = None,
                    level: str = "nominal") -> dict[str, Any]:
    """Every agreement figure for an items x annotators table of labels (NaN = missing)."""
    classes = list(labels)
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

"""Agreement of numeric and multi-label outputs, between annotators and against gold, with the formulas.

Numeric (each annotator's value on an item: the mean of its valid samples):

* Krippendorff's interval alpha (Krippendorff 2011) in closed form: over the items u with
  m_u ≥ 2 values, n = Σ m_u pairable values,
  ``α = 1 − (n − 1) Σ_u [m_u SS_u / (m_u − 1)] / (n SS)``, SS_u the sum of squared
  deviations from item u's mean, SS from the mean of all n values (the interval
  ``δ² = (x − y)²`` turns every sum over pairs into sums of squares). It equals the
  ``krippendorff`` package's interval alpha, and a bootstrap resample only re-weights
  the per-item sums;
* against gold (y gold, x predicted, n items with both): ``MAE = mean|x − y|``,
  ``RMSE = sqrt(mean (x − y)²)``, Pearson's r, and Lin's (1989) concordance correlation
  ``CCC = 2 s_xy / (s_x² + s_y² + (x̄ − ȳ)²)`` with population moments.

Multi-label (an annotator's set on an item: the labels in at least half its valid samples):

* per label, Krippendorff's nominal alpha of the binary "label in the set";
* the mean pairwise Jaccard ``|A ∩ B| / |A ∪ B|`` (1 for two empty sets): per item the
  mean over pairs of annotators with a set there, then the mean over items with two sets;
* against gold sets G, over the items with both: example-based F1
  ``mean_u 2|A ∩ G| / (|A| + |G|)`` (1 when both are empty) and Jaccard; micro-F1
  ``2 TP / (2 TP + FP + FN)`` over all (item, label) cells; macro-F1 the mean of per-label
  F1 over the labels present in gold or prediction; Hamming loss, the share of (item,
  label) cells that differ (Tsoumakas & Katakis 2007). They equal scikit-learn's
  ``f1_score`` (samples, micro, macro), ``jaccard_score(average="samples")`` and
  ``hamming_loss``.

Intervals: the percentile bootstrap over items of :mod:`llm_annotator.analysis.agreement`,
with the same resamples for the same seed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from llm_annotator.analysis.agreement import (
    alpha_from_coincidence,
    item_coincidences,
    krippendorff_alpha,
)
from llm_annotator.core.errors import ConfigError

NAN = float("nan")


# -- the bootstrap -------------------------------------------------------------------------------
def bootstrap_weights(n_items: int, rounds: int, seed: int) -> np.ndarray:
    """Rounds x items counts of each item in each resample (the draws of
    :func:`llm_annotator.analysis.agreement.bootstrap_intervals` for the same seed)."""
    if isinstance(rounds, bool) or not isinstance(rounds, int | np.integer) or rounds < 1:
        raise ConfigError(f"bootstrap rounds must be a whole number of at least 1, got {rounds!r}",
                          fix="use --bootstrap 1000 (bootstrap=1000), or 0 for no intervals")
    rng = np.random.default_rng(seed)
    return np.stack([np.bincount(rng.integers(0, n_items, n_items), minlength=n_items)
                     for _ in range(rounds)]).astype(float)


def interval(values: np.ndarray, level: float = 0.95) -> dict[str, float]:
    """The percentile interval of bootstrap values (NaN rounds left out)."""
    values = np.asarray(values, dtype=float)
    values = values[~np.isnan(values)]
    if not len(values):
        return {"low": NAN, "high": NAN}
    return {"low": float(np.quantile(values, (1 - level) / 2)), "high": float(np.quantile(values, (1 + level) / 2))}


# -- numeric ----------------------------------------------------------------------------------------
def _interval_parts(matrix: np.ndarray) -> np.ndarray:
    """Per item (rows): m_u, m_u SS_u / (m_u − 1), Σx, Σx² over the items with m_u ≥ 2."""
    present = ~np.isnan(matrix)
    m = present.sum(axis=0).astype(float)
    x = np.where(present, matrix, 0.0)
    s1, s2 = x.sum(axis=0), (x * x).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        within = np.where(m >= 2, m * (s2 - s1 * s1 / np.maximum(m, 1)) / (m - 1), 0.0)
    use = (m >= 2).astype(float)
    return np.stack([m * use, within, s1 * use, s2 * use], axis=1)


def _alpha_of(parts: np.ndarray) -> np.ndarray:
    """Interval alpha from summed parts (…, 4): NaN when n ≤ 1 or every value is the same."""
    n, within, s1, s2 = (parts[..., i] for i in range(4))
    with np.errstate(invalid="ignore", divide="ignore"):
        total = s2 - s1 * s1 / n
        alpha = 1 - (n - 1) * within / (n * total)
    return np.where((n > 1) & (total > 1e-12 * np.maximum(s2, 1.0)), alpha, np.nan)


def interval_alpha(matrix: np.ndarray) -> float:
    """Krippendorff's interval alpha of a coders x items matrix of numbers (NaN = missing)."""
    return float(_alpha_of(_interval_parts(np.asarray(matrix, dtype=float)).sum(axis=0)))


def regression_scores(gold: Sequence[float] | np.ndarray, pred: Sequence[float] | np.ndarray,
                      weights: np.ndarray | None = None) -> dict[str, Any]:
    """MAE, RMSE, Pearson's r, Lin's CCC and n over the items with both numbers; with
    ``weights`` (rounds x items) each figure per round (an array)."""
    y, x = np.asarray(gold, dtype=float), np.asarray(pred, dtype=float)
    ok = ~np.isnan(x) & ~np.isnan(y)
    w = (np.ones((1, len(x))) if weights is None else np.asarray(weights, dtype=float)) * ok
    x, y = np.where(ok, x, 0.0), np.where(ok, y, 0.0)
    n = w.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mx, my = (w @ x) / n, (w @ y) / n
        vx, vy = (w @ (x * x)) / n - mx ** 2, (w @ (y * y)) / n - my ** 2
        cov = (w @ (x * y)) / n - mx * my
        vx, vy = np.maximum(vx, 0.0), np.maximum(vy, 0.0)
        out = {"mae": (w @ np.abs(x - y)) / n, "rmse": np.sqrt((w @ ((x - y) ** 2)) / n),
               "pearson": np.where((vx > 1e-12) & (vy > 1e-12), cov / np.sqrt(vx * vy), np.nan),
               "ccc": np.where(vx + vy + (mx - my) ** 2 > 0, 2 * cov / (vx + vy + (mx - my) ** 2), np.nan)}
    if weights is not None:
        return out
    count = int(ok.sum())
    return {**{k: float(v[0]) if count else NAN for k, v in out.items()}, "n": count}


def numeric_agreement(values: Any, *, gold: Sequence[float] | np.ndarray | None = None,
                      consensus: Sequence[float] | np.ndarray | None = None, bootstrap: int = 0, seed: int = 0,
                      level: float = 0.95) -> dict[str, Any]:
    """Interval alpha over an items x annotators frame of numbers (NaN = missing), pairwise
    CCC, and with ``gold`` the :func:`regression_scores` of each annotator (and of the
    ``consensus`` mean); ``ci`` with ``bootstrap`` rounds."""
    names = [str(c) for c in values.columns]
    matrix = values.to_numpy(dtype=float).T
    pairwise = {a: {b: 1.0 if a == b else regression_scores(matrix[i], matrix[j])["ccc"]
                    for j, b in enumerate(names)} for i, a in enumerate(names)}
    out: dict[str, Any] = {"n_items": int(matrix.shape[1]), "annotators": names,
                           "krippendorff_alpha": interval_alpha(matrix) if len(names) > 1 else NAN,
                           "pairwise_ccc": pairwise}
    predictions = {name: matrix[i] for i, name in enumerate(names)}
    if consensus is not None:
        predictions["consensus"] = np.asarray(consensus, dtype=float)
    if gold is not None:
        out["vs_gold"] = {name: regression_scores(gold, pred) for name, pred in predictions.items()}
    if bootstrap:
        weights = bootstrap_weights(matrix.shape[1], bootstrap, seed)
        ci: dict[str, Any] = {"rounds": bootstrap, "seed": seed, "level": level, "measure": "interval"}
        if len(names) > 1:
            ci["krippendorff_alpha"] = interval(_alpha_of(weights @ _interval_parts(matrix)), level)
        if gold is not None:
            ci["vs_gold"] = {name: {k: interval(v, level) for k, v in regression_scores(gold, pred, weights).items()}
                             for name, pred in predictions.items()}
        out["ci"] = ci
    return out


def sample_consistency(samples: dict[str, np.ndarray]) -> dict[str, dict[str, float]]:
    """Per annotator, from its samples x items matrix of numbers: interval alpha with the
    samples as coders and the mean over items of its samples' (population) sd."""
    out = {}
    for name, matrix in samples.items():
        present = ~np.isnan(matrix)
        m = present.sum(axis=0)
        x = np.where(present, matrix, 0.0)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = x.sum(axis=0) / m
            sd = np.sqrt((np.where(present, matrix - mean, 0.0) ** 2).sum(axis=0) / m)
        out[name] = {"samples": int(matrix.shape[0]),
                     "alpha": interval_alpha(matrix) if matrix.shape[0] > 1 else NAN,
                     "mean_sd": _nanmean(sd[m >= 2])}
    return out


# -- multi-label ------------------------------------------------------------------------------------
def _jaccard_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    union = np.maximum(a, b).sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, np.minimum(a, b).sum(axis=-1) / np.where(union > 0, union, 1), 1.0)


def item_jaccard(sets: np.ndarray) -> np.ndarray:
    """Per item, the mean Jaccard over pairs of coders with a set there (NaN: fewer than two);
    ``sets``: coders x items x labels of 0/1, NaN where a coder has no set."""
    coders, items = sets.shape[0], sets.shape[1]
    present = ~np.isnan(sets).any(axis=2)
    total, pairs = np.zeros(items), np.zeros(items)
    for i in range(coders):
        for j in range(i + 1, coders):
            both = present[i] & present[j]
            total += np.where(both, _jaccard_rows(np.nan_to_num(sets[i]), np.nan_to_num(sets[j])), 0.0)
            pairs += both
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(pairs > 0, total / pairs, np.nan)


def set_scores(gold: np.ndarray, pred: np.ndarray, weights: np.ndarray | None = None) -> dict[str, Any]:
    """Example-based F1 and Jaccard, micro- and macro-F1, Hamming loss and n of predicted
    against gold sets (items x labels of 0/1, NaN rows missing); with ``weights`` (rounds x
    items) each figure per round."""
    ok = ~np.isnan(gold).any(axis=1) & ~np.isnan(pred).any(axis=1)
    g, p = np.nan_to_num(gold), np.nan_to_num(pred)
    w = (np.ones((1, len(g))) if weights is None else np.asarray(weights, dtype=float)) * ok
    n = w.sum(axis=1)
    inter, sizes = (g * p).sum(axis=1), g.sum(axis=1) + p.sum(axis=1)
    example_f1 = np.where(sizes > 0, 2 * inter / np.where(sizes > 0, sizes, 1), 1.0)
    hamming = np.abs(g - p).mean(axis=1) if g.shape[1] else np.zeros(len(g))
    tp, fp, fn = w @ (g * p), w @ ((1 - g) * p), w @ (g * (1 - p))
    with np.errstate(invalid="ignore", divide="ignore"):
        denom = 2 * tp + fp + fn
        per_label = np.where(denom > 0, 2 * tp / denom, np.nan)
        out = {"example_f1": (w @ example_f1) / n, "jaccard": (w @ _jaccard_rows(g, p)) / n,
               "micro_f1": np.where(denom.sum(axis=1) > 0, 2 * tp.sum(axis=1) / denom.sum(axis=1), np.nan),
               "macro_f1": np.array([row[~np.isnan(row)].mean() if (~np.isnan(row)).any() else np.nan
                                     for row in per_label]),
               "hamming_loss": (w @ hamming) / n}
    if weights is not None:
        return out
    count = int(ok.sum())
    return {**{k: float(v[0]) if count else NAN for k, v in out.items()}, "n": count}


def multi_label_agreement(sets: np.ndarray, names: Sequence[str], labels: Sequence[str], *,
                          gold: np.ndarray | None = None, consensus: np.ndarray | None = None,
                          bootstrap: int = 0, seed: int = 0, level: float = 0.95) -> dict[str, Any]:
    """Per-label nominal alpha and mean pairwise Jaccard of annotators' sets (annotators x
    items x labels of 0/1, NaN = no set), and with ``gold`` (items x labels) the
    :func:`set_scores` of each annotator and of the ``consensus`` sets; ``ci`` likewise."""
    names, labels = [str(n) for n in names], list(labels)
    items = sets.shape[1]
    several = len(names) > 1
    alphas = {label: krippendorff_alpha(sets[:, :, k], "nominal") if several else NAN
              for k, label in enumerate(labels)}
    per_item = item_jaccard(sets)
    pairwise = {a: {b: 1.0 if a == b else _nanmean(item_jaccard(sets[[i, j]]))
                    for j, b in enumerate(names)} for i, a in enumerate(names)}
    out: dict[str, Any] = {"n_items": int(items), "annotators": names, "labels": labels,
                           "krippendorff_alpha": alphas, "mean_alpha": _nanmean(np.array(list(alphas.values()))),
                           "jaccard": _nanmean(per_item) if several else NAN, "pairwise_jaccard": pairwise}
    predictions = {name: sets[i] for i, name in enumerate(names)}
    if consensus is not None:
        predictions["consensus"] = consensus
    if gold is not None:
        out["vs_gold"] = {name: set_scores(gold, pred) for name, pred in predictions.items()}
    if bootstrap:
        weights = bootstrap_weights(items, bootstrap, seed)
        ci: dict[str, Any] = {"rounds": bootstrap, "seed": seed, "level": level, "measure": "nominal"}
        if several:
            rounds = []
            for k in range(len(labels)):
                coincidences = weights @ item_coincidences(sets[:, :, k], 2)
                rounds.append([alpha_from_coincidence(o.reshape(2, 2)) for o in coincidences])
            by_label = np.array(rounds).reshape(len(labels), bootstrap)
            ci["krippendorff_alpha"] = {label: interval(by_label[k], level) for k, label in enumerate(labels)}
            ci["mean_alpha"] = interval(np.array([_nanmean(column) for column in by_label.T]), level)
            usable = ~np.isnan(per_item)
            with np.errstate(invalid="ignore", divide="ignore"):
                ci["jaccard"] = interval((weights @ np.nan_to_num(per_item)) / (weights @ usable), level)
        if gold is not None:
            ci["vs_gold"] = {name: {k: interval(v, level) for k, v in set_scores(gold, pred, weights).items()}
                             for name, pred in predictions.items()}
        out["ci"] = ci
    return out


def _nanmean(values: np.ndarray) -> float:
    values = np.asarray(values, dtype=float)
    values = values[~np.isnan(values)]
    return float(values.mean()) if len(values) else NAN


__all__ = ["bootstrap_weights", "interval", "interval_alpha", "item_jaccard", "multi_label_agreement",
           "numeric_agreement", "regression_scores", "sample_consistency", "set_scores"]

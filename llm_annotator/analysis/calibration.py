"""How far to trust a confidence: calibration against gold, and accuracy against coverage.

For items with a gold label, predicted label ``ŷ_i`` and confidence ``c_i`` (the top
probability of the soft label ``p_i``; a gold label outside the label set has
probability 0, so its items count as misses, as they do in accuracy):

* expected calibration error, equal-width bins ``B_b`` over [0, 1] (Naeini et al. 2015;
  Guo et al. 2017): ``ECE = Σ_b |B_b|/n · |acc(B_b) − conf(B_b)|``;
* Brier score (Brier 1950), multi-class: ``mean_i Σ_k (p_ik − 1[y_i = k])²``;
* reliability curve: ``(conf(B_b), acc(B_b), |B_b|)`` per non-empty bin;
* with item weights ``w_i`` (inverse inclusion probabilities, when the items people
  labelled were drawn with unequal probabilities: Horvitz & Thompson 1952) every mean
  above is the weighted mean, ``|B_b|/n`` becomes ``Σ_{i∈B_b} w_i / Σ_i w_i``, and an
  item of weight 0 is left out (the curve's ``n`` counts the items of positive weight);
* accuracy–coverage: items sorted by confidence, highest first; at coverage ``q`` the
  accuracy of the top ``⌈qn⌉`` items. The curve says how accurate the labels you keep
  are if you keep only the most confident ones, and the other end is the review queue.

These figures measure calibration; :mod:`~llm_annotator.analysis.recalibrate` corrects it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from llm_annotator.core.errors import ConfigError


def item_weights(weights: Any, n: int) -> np.ndarray:
    """``weights`` as a float array of ``n`` finite, non-negative values (ones when None).

    Raises :class:`~llm_annotator.core.errors.ConfigError` naming what is wrong otherwise.
    """
    if weights is None:
        return np.ones(n)
    try:
        w = np.asarray(weights, dtype=float)
    except (TypeError, ValueError):
        raise ConfigError(f"weights must be numbers, got {weights!r:.80}",
                          fix="pass one non-negative number per item, e.g. 1 / inclusion probability") from None
    if w.ndim != 1 or len(w) != n:
        raise ConfigError(f"weights must hold one number per item: got shape {w.shape}, expected ({n},)",
                          fix="pass weights aligned with the rows of probs (one per item)")
    if not np.isfinite(w).all() or (w < 0).any():
        raise ConfigError("weights must be finite and non-negative",
                          fix="use 1 / inclusion probability per item, or 0 to leave an item out")
    return w


def _arrays(probs: np.ndarray, gold: Sequence[Any], labels: Sequence[str],
            weights: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Probabilities, gold codes and weights of the items with a gold label, a soft label
    and a positive weight.

    A gold label outside ``labels`` is a class of probability 0, as in
    :func:`~llm_annotator.analysis.agreement.vs_gold`: the item counts, as a miss.
    """
    from llm_annotator.analysis.agreement import label_set

    w = np.ones(len(probs)) if weights is None else weights
    classes = label_set(list(labels), gold)
    index = {label: k for k, label in enumerate(classes)}
    probs = np.hstack([probs, np.zeros((len(probs), len(classes) - len(labels)))])
    keep = np.array([g in index and not np.isnan(p).any() and v > 0
                     for g, p, v in zip(gold, probs, w, strict=True)], dtype=bool)
    y = np.array([index[g] for g, k in zip(gold, keep, strict=True) if k], dtype=int)
    return probs[keep], y, w[keep]


def calibration(probs: np.ndarray, gold: Sequence[Any], labels: Sequence[str], *, bins: int = 10,
                weights: Any = None) -> dict[str, Any]:
    """ECE, Brier score and the reliability curve of soft labels against gold labels.

    ``weights`` (one per row of ``probs``, default all 1) make every figure a weighted
    mean over the items; ``n`` is the number of items of positive weight.
    """
    probs = np.asarray(probs, dtype=float)
    p, y, w = _arrays(probs, gold, labels, item_weights(weights, len(probs)))
    n = len(y)
    if n == 0:
        return {"n": 0, "ece": float("nan"), "brier": float("nan"), "reliability": []}
    total = w.sum()
    conf = p.max(axis=1)
    correct = (p.argmax(axis=1) == y).astype(float)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(conf, edges[1:-1], right=True), 0, bins - 1)
    ece = 0.0
    curve = []
    for b in range(bins):
        mask = which == b
        if mask.any():
            mass = w[mask].sum()
            acc, avg = (w[mask] @ correct[mask]) / mass, (w[mask] @ conf[mask]) / mass
            ece += mass / total * abs(acc - avg)
            curve.append({"bin": [float(edges[b]), float(edges[b + 1])], "confidence": float(avg),
                          "accuracy": float(acc), "n": int(mask.sum())})
    onehot = np.zeros_like(p)
    onehot[np.arange(n), y] = 1.0
    brier = float(w @ ((p - onehot) ** 2).sum(axis=1) / total)
    return {"n": n, "ece": float(ece), "brier": brier, "reliability": curve}


def accuracy_coverage(confidence: np.ndarray, correct: np.ndarray, *, points: int = 20) -> list[dict[str, float]]:
    """Accuracy of the most confident ``q`` share of items, for q = 1/points … 1."""
    order = np.argsort(-np.asarray(confidence, dtype=float), kind="stable")
    hits = np.asarray(correct, dtype=float)[order]
    cumulative = np.cumsum(hits) / np.arange(1, len(hits) + 1)
    out = []
    for q in np.linspace(1 / points, 1.0, points):
        top = max(1, int(np.ceil(q * len(hits))))
        out.append({"coverage": float(q), "accuracy": float(cumulative[top - 1]),
                    "threshold": float(np.asarray(confidence)[order][top - 1])})
    return out


def bootstrap(statistic: Any, n_items: int, *, rounds: int = 1000, seed: int = 0,
              level: float = 0.95) -> dict[str, float]:
    """Percentile bootstrap over items: ``statistic(indices) -> float`` on resampled items.

    Returns the point estimate (all items), the ``level`` interval and the number of
    rounds. The generator is seeded: the same call gives the same interval.
    """
    rng = np.random.default_rng(seed)
    point = float(statistic(np.arange(n_items)))
    values = np.array([statistic(rng.integers(0, n_items, n_items)) for _ in range(rounds)], dtype=float)
    values = values[~np.isnan(values)]
    if len(values) == 0:
        return {"estimate": point, "low": float("nan"), "high": float("nan"), "rounds": rounds}
    alpha = (1 - level) / 2
    return {"estimate": point, "low": float(np.quantile(values, alpha)),
            "high": float(np.quantile(values, 1 - alpha)), "rounds": rounds}


__all__ = ["accuracy_coverage", "bootstrap", "calibration", "item_weights"]

"""How far to trust a confidence: calibration against gold, and accuracy against coverage.

For items with a gold label, predicted label ``ŷ_i`` and confidence ``c_i`` (the top
probability of the soft label ``p_i``; a gold label outside the label set has
probability 0, so its items count as misses, as they do in accuracy):

* expected calibration error, equal-width bins ``B_b`` over [0, 1] (Naeini et al. 2015;
  Guo et al. 2017): ``ECE = Σ_b |B_b|/n · |acc(B_b) − conf(B_b)|``;
* Brier score (Brier 1950), multi-class: ``mean_i Σ_k (p_ik − 1[y_i = k])²``;
* reliability curve: ``(conf(B_b), acc(B_b), |B_b|)`` per non-empty bin;
* accuracy–coverage: items sorted by confidence, highest first; at coverage ``q`` the
  accuracy of the top ``⌈qn⌉`` items. The curve says how accurate the labels you keep
  are if you keep only the most confident ones, and the other end is the review queue.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def _arrays(probs: np.ndarray, gold: Sequence[Any], labels: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities and gold codes of the items with a gold label and a soft label.

    A gold label outside ``labels`` is a class of probability 0, as in
    :func:`~llm_annotator.analysis.agreement.vs_gold`: the item counts, as a miss.
    """
    from llm_annotator.analysis.agreement import label_set

    classes = label_set(list(labels), gold)
    index = {label: k for k, label in enumerate(classes)}
    probs = np.hstack([probs, np.zeros((len(probs), len(classes) - len(labels)))])
    keep = np.array([g in index and not np.isnan(p).any() for g, p in zip(gold, probs, strict=True)], dtype=bool)
    y = np.array([index[g] for g, k in zip(gold, keep, strict=True) if k], dtype=int)
    return probs[keep], y


def calibration(probs: np.ndarray, gold: Sequence[Any], labels: Sequence[str], *, bins: int = 10) -> dict[str, Any]:
    """ECE, Brier score and the reliability curve of soft labels against gold labels."""
    p, y = _arrays(np.asarray(probs, dtype=float), gold, labels)
    n = len(y)
    if n == 0:
        return {"n": 0, "ece": float("nan"), "brier": float("nan"), "reliability": []}
    conf = p.max(axis=1)
    correct = (p.argmax(axis=1) == y).astype(float)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(conf, edges[1:-1], right=True), 0, bins - 1)
    ece = 0.0
    curve = []
    for b in range(bins):
        mask = which == b
        if mask.any():
            acc, avg = correct[mask].mean(), conf[mask].mean()
            ece += mask.sum() / n * abs(acc - avg)
            curve.append({"bin": [float(edges[b]), float(edges[b + 1])], "confidence": float(avg),
                          "accuracy": float(acc), "n": int(mask.sum())})
    onehot = np.zeros_like(p)
    onehot[np.arange(n), y] = 1.0
    brier = float(((p - onehot) ** 2).sum(axis=1).mean())
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


__all__ = ["accuracy_coverage", "bootstrap", "calibration"]

"""Losses and metrics shared by the SER models and the feature baseline."""

from __future__ import annotations

from typing import Any

import numpy as np


def soft_cross_entropy(logits: Any, targets: Any, weights: Any = None) -> Any:
    """``−Σ_k t_k log softmax(z)_k`` averaged over the batch (KL to t plus t's entropy).

    With ``weights`` (one per class) each example is weighted by ``Σ_k t_k w_k``.
    """
    import torch

    per = -(targets * torch.log_softmax(logits, dim=-1)).sum(dim=-1)
    if weights is not None:
        scale = (targets * weights).sum(dim=-1)
        return (per * scale).sum() / scale.sum()
    return per.mean()


def hard_cross_entropy(logits: Any, targets: Any, weights: Any = None) -> Any:
    """Cross-entropy on the consensus label ``argmax t`` (MELT's setting, the ablation)."""
    import torch

    return torch.nn.functional.cross_entropy(logits, targets.argmax(dim=-1), weight=weights)


def class_weights(targets: np.ndarray) -> np.ndarray:
    """Inverse class frequency of the hard labels, normalised to mean 1."""
    counts = np.bincount(targets.argmax(axis=1), minlength=targets.shape[1]).astype(float)
    weights = np.where(counts > 0, counts.sum() / np.maximum(counts, 1) / targets.shape[1], 0.0)
    return weights / weights[weights > 0].mean()


def scores(targets: np.ndarray, probs: np.ndarray, labels: list[str]) -> dict[str, Any]:
    """UA (unweighted average recall), WA (accuracy), macro-F1, weighted-F1, confusion, KL(t‖p)."""
    y, p = targets.argmax(axis=1), probs.argmax(axis=1)
    k = len(labels)
    m = np.zeros((k, k), dtype=int)
    np.add.at(m, (y, p), 1)
    support, predicted, tp = m.sum(axis=1), m.sum(axis=0), np.diag(m)
    recall = np.divide(tp, support, out=np.zeros(k), where=support > 0)
    precision = np.divide(tp, predicted, out=np.zeros(k), where=predicted > 0)
    f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros(k), where=(precision + recall) > 0)
    present = support > 0
    eps = 1e-12
    kl = float(np.mean(np.sum(targets * (np.log(targets + eps) - np.log(probs + eps)), axis=1)))
    return {
        "n": len(y),
        "ua": float(recall[present].mean()),
        "wa": float((y == p).mean()),
        "macro_f1": float(f1[present | (predicted > 0)].mean()),
        "weighted_f1": float((f1 * support).sum() / support.sum()),
        "kl": kl,
        "labels": labels,
        "confusion": m.tolist(),
    }


def ordinal_mae(targets: np.ndarray, probs: np.ndarray) -> float:
    """Mean absolute error over category codes: ``mean |argmax t − argmax p|``, the codes
    0 … K−1 in the output's order (low to high)."""
    return float(np.mean(np.abs(targets.argmax(axis=1) - probs.argmax(axis=1))))


def ccc(x: np.ndarray, y: np.ndarray) -> float:
    """Lin's concordance correlation coefficient of two series.

    ``ρ_c = 2 s_xy / (s_x² + s_y² + (x̄ − ȳ)²)`` with population (1/n) variances and
    covariance (Lin 1989, "A concordance correlation coefficient to evaluate
    reproducibility", Biometrics 45(1)). It is Pearson's r shrunk by how far the two lie
    from the line y = x, in location and in scale; two equal constant series give 1.
    """
    x, y = np.asarray(x, dtype=float).ravel(), np.asarray(y, dtype=float).ravel()
    denominator = x.var() + y.var() + (x.mean() - y.mean()) ** 2
    if denominator == 0:
        return 1.0
    return float(2 * np.mean((x - x.mean()) * (y - y.mean())) / denominator)


def pearson(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson's r, ``s_xy / (s_x s_y)``; 0 when either series is constant (r is undefined there)."""
    x, y = np.asarray(x, dtype=float).ravel(), np.asarray(y, dtype=float).ravel()
    spread = x.std() * y.std()
    return float(np.mean((x - x.mean()) * (y - y.mean())) / spread) if spread > 0 else 0.0


def regression_scores(targets: np.ndarray, predictions: np.ndarray) -> dict[str, Any]:
    """CCC (the selection metric), MAE, RMSE and Pearson's r of predictions against targets."""
    t, p = np.asarray(targets, dtype=float).ravel(), np.asarray(predictions, dtype=float).ravel()
    return {
        "n": len(t),
        "ccc": ccc(t, p),
        "mae": float(np.mean(np.abs(t - p))),
        "rmse": float(np.sqrt(np.mean((t - p) ** 2))),
        "pearson": pearson(t, p),
        "target_mean": float(t.mean()),
        "prediction_mean": float(p.mean()),
    }

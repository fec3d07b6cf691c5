"""From votes to soft labels, consensus labels and confidence.

Every valid vote contributes a probability vector over the task's labels: its
log-probability distribution where the provider returned one, else a one-hot vector
of its label. The soft label of an (item, annotator) pair is the mean of its votes'
vectors (vote shares when there are no distributions), optionally smoothed:
``p = (sum + alpha) / (n + alpha * K)``. The combined soft label of an item is the mean
of its annotators' soft labels, each annotator weighted equally. Invalid and failed
votes carry no label: they count in ``n_requested`` and never in the probabilities.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def vote_vector(label: str, distribution: Any, labels: Sequence[str],
                position: dict[str, int] | None = None) -> np.ndarray:
    """One valid vote's probability vector: its distribution over ``labels`` normalised
    to sum 1 when it has one with mass, else one-hot at its ``label``. The one rule both
    the in-memory frames and the streamed chunk sums use."""
    vector = np.zeros(len(labels))
    if isinstance(distribution, dict) and distribution:
        vector[:] = [float(distribution.get(label, 0.0)) for label in labels]
        total = vector.sum()
        if total > 0:
            return vector / total
        vector[:] = 0.0
    index = position if position is not None else {x: k for k, x in enumerate(labels)}
    if label not in index:
        raise ValueError(f"vote label {label!r} is not in the task's label set")
    vector[index[label]] = 1.0
    return vector


def combine_soft(per_annotator: np.ndarray, has: np.ndarray) -> np.ndarray:
    """Combined soft labels (items x labels) from annotators x items x labels soft labels:
    the equal-weight mean over the annotators with a valid vote (``has``: annotators x
    items); NaN where no annotator has one. The one rule both paths use."""
    with np.errstate(invalid="ignore", divide="ignore"):
        kept = np.where(has[:, :, None], np.nan_to_num(per_annotator), 0.0).sum(axis=0)
        return kept / has.sum(axis=0)[:, None]


def vote_vectors(votes: Any, labels: Sequence[str]) -> tuple[Any, np.ndarray]:
    """Valid votes and their probability vectors (rows aligned; :func:`vote_vector`)."""
    valid = votes[votes["label"].notna()]
    position = {label: k for k, label in enumerate(labels)}
    codes = valid["label"].map(position).to_numpy()
    if pd_isna(codes).any():
        unknown = valid["label"][pd_isna(codes)].iloc[0]
        raise ValueError(f"vote label {unknown!r} is not in the task's label set")
    vectors = np.zeros((len(valid), len(labels)))
    vectors[np.arange(len(valid)), codes.astype(int)] = 1.0  # the rule for votes without a distribution
    if "distribution" in valid:
        for row, (label, dist) in enumerate(zip(valid["label"].tolist(), valid["distribution"].tolist(),
                                                strict=True)):
            if isinstance(dist, dict) and dist:
                vectors[row] = vote_vector(label, dist, labels, position)
    return valid, vectors


def pd_isna(values: np.ndarray) -> np.ndarray:
    return np.isnan(values.astype(float))


def soft_labels(votes: Any, labels: Sequence[str], *, smoothing: float = 0.0) -> Any:
    """Soft label per (item_id, annotator): columns = labels, plus ``n_valid`` and ``n_votes``."""
    import pandas as pd

    valid, vectors = vote_vectors(votes, labels)
    counts = votes.groupby(["item_id", "annotator"], sort=False).size().rename("n_votes")
    frame = pd.DataFrame(vectors, columns=list(labels), index=valid.index)
    frame["item_id"] = valid["item_id"].to_numpy()
    frame["annotator"] = valid["annotator"].to_numpy()
    sums = frame.groupby(["item_id", "annotator"], sort=False)[list(labels)].sum()
    n_valid = frame.groupby(["item_id", "annotator"], sort=False).size().rename("n_valid")
    out = sums.reindex(counts.index).fillna(0.0)
    n = n_valid.reindex(counts.index).fillna(0).astype(int)
    denom = (n + smoothing * len(labels)).to_numpy()[:, None]
    with np.errstate(invalid="ignore", divide="ignore"):
        probs = (out.to_numpy() + smoothing) / denom
    result = pd.DataFrame(probs, index=counts.index, columns=list(labels))
    result["n_valid"] = n.to_numpy()
    result["n_votes"] = counts.to_numpy()
    return result


def combine(per_annotator: Any, labels: Sequence[str], item_order: Sequence[str]) -> Any:
    """Combined soft label per item (:func:`combine_soft`) as a frame in ``item_order``."""
    import pandas as pd

    items = list(item_order)
    annotators = list(dict.fromkeys(per_annotator.index.get_level_values("annotator")))
    full = pd.MultiIndex.from_product([annotators, items], names=["annotator", "item_id"])
    frame = per_annotator.reorder_levels(["annotator", "item_id"]).reindex(full)
    probs = frame[list(labels)].to_numpy(dtype=float).reshape(len(annotators), len(items), len(labels))
    has = (frame["n_valid"].fillna(0).to_numpy() > 0).reshape(len(annotators), len(items))
    combined = combine_soft(probs, has)
    return pd.DataFrame(combined, index=pd.Index(items, name="item_id"), columns=list(labels))


def confidence(probs: np.ndarray) -> dict[str, np.ndarray]:
    """Per row of ``probs``: top probability, margin (top - second), 1 - normalised entropy.

    Entropy confidence is ``1 - H(p) / log K`` with ``H(p) = -sum p log p``: 1 for a
    one-hot label, 0 for the uniform distribution. Rows of NaN (no valid vote) stay NaN.
    """
    k = probs.shape[1]
    ordered = np.sort(probs, axis=1)
    top = ordered[:, -1]
    second = ordered[:, -2] if k > 1 else np.zeros_like(top)
    with np.errstate(divide="ignore", invalid="ignore"):
        plogp = np.where(probs > 0, probs * np.log(np.where(probs > 0, probs, 1.0)), 0.0)
        entropy = -plogp.sum(axis=1)
        ent_conf = 1.0 - entropy / np.log(k) if k > 1 else np.ones_like(top)
    ent_conf = np.where(np.isnan(top), np.nan, ent_conf)
    return {"confidence": top, "margin": top - second, "entropy_confidence": ent_conf}


def argmax_labels(probs: np.ndarray, labels: Sequence[str]) -> list[str | None]:
    """The most probable label per row; ties go to the label listed first in the task."""
    out: list[str | None] = []
    for row in probs:
        if np.isnan(row).all():
            out.append(None)
        else:
            out.append(labels[int(np.nanargmax(row))])
    return out


__all__ = ["argmax_labels", "combine", "confidence", "soft_labels", "vote_vectors"]

"""Dawid-Skene: true-label posteriors from annotators with their own confusion matrices.

Dawid & Skene (1979), "Maximum likelihood estimation of observer error-rates using the
EM algorithm", Applied Statistics 28(1). Each annotator w has a confusion matrix
``π_w[l | k]``, the probability of answering l when the true label is k; labels have a
prior ``p_k``. EM alternates

* E-step: ``T_ik ∝ p_k · Π_{(w,l) observed on i} π_w[l | k]``,
* M-step: ``p_k = mean_i T_ik``, ``π_w[l | k] ∝ Σ_{i: w said l} T_ik`` (floored at 1e-10,
  normalised over l),

starting from vote shares, until the evidence lower bound per observation gains less
than ``tol``. The steps, the floor and the stopping rule follow crowd-kit's
``DawidSkene`` so the two agree (checked in tests/test_aggregate.py). Each model is an
annotator; with ``per_sample`` each (model, sample) is one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

EPS = 1e-10


@dataclass(frozen=True)
class DawidSkeneResult:
    items: list[str]
    labels: list[str]
    annotators: list[str]
    posteriors: np.ndarray      # items x labels
    priors: np.ndarray          # labels
    confusion: np.ndarray       # annotators x answered label x true label (columns sum to 1)
    iterations: int
    elbo: list[float]

    def confusion_frame(self, annotator: str) -> Any:
        """``P(answer = row | true = column)`` for one annotator, as a DataFrame."""
        import pandas as pd

        w = self.annotators.index(annotator)
        return pd.DataFrame(self.confusion[w], index=pd.Index(self.labels, name="answered"),
                            columns=pd.Index(self.labels, name="true"))


def dawid_skene(items: Sequence[str], annotators: Sequence[str], answers: Sequence[str],
                labels: Sequence[str], *, n_iter: int = 100, tol: float = 1e-5,
                item_order: Sequence[str] | None = None) -> DawidSkeneResult:
    """Fit Dawid-Skene to observations (item, annotator, answered label)."""
    item_names = list(item_order) if item_order is not None else list(dict.fromkeys(items))
    worker_names = list(dict.fromkeys(annotators))
    label_names = list(labels)
    i_index = {v: n for n, v in enumerate(item_names)}
    w_index = {v: n for n, v in enumerate(worker_names)}
    l_index = {v: n for n, v in enumerate(label_names)}
    obs_i = np.array([i_index[v] for v in items], dtype=int)
    obs_w = np.array([w_index[v] for v in annotators], dtype=int)
    obs_l = np.array([l_index[v] for v in answers], dtype=int)
    n_items, n_workers, k = len(item_names), len(worker_names), len(label_names)
    used = np.zeros((n_workers, k), dtype=bool)
    used[obs_w, obs_l] = True

    def m_step(t: np.ndarray) -> np.ndarray:
        counts = np.zeros((n_workers, k, k))
        np.add.at(counts, (obs_w, obs_l), t[obs_i])
        counts = np.where(used[:, :, None], np.maximum(counts, EPS), 0.0)
        return counts / counts.sum(axis=1, keepdims=True)

    def e_step(priors: np.ndarray, errors: np.ndarray) -> np.ndarray:
        log_like = np.zeros((n_items, k))
        with np.errstate(divide="ignore"):
            np.add.at(log_like, obs_i, np.log2(errors[obs_w, obs_l]))
        log_like += np.log2(np.maximum(priors, EPS))
        scaled = np.exp2(log_like - log_like.max(axis=1, keepdims=True))
        return scaled / scaled.sum(axis=1, keepdims=True)

    def elbo(t: np.ndarray, priors: np.ndarray, errors: np.ndarray) -> float:
        with np.errstate(divide="ignore", invalid="ignore"):
            per_obs = np.log(errors[obs_w, obs_l]) + np.log(np.maximum(priors, EPS))
            joint = np.nansum(np.where(t[obs_i] > 0, t[obs_i] * per_obs, 0.0))
        clipped = np.maximum(t, EPS)
        entropy = -(np.log(clipped) * clipped).sum()
        return float(joint + entropy) / len(obs_i)

    t = np.zeros((n_items, k))
    np.add.at(t, (obs_i, obs_l), 1.0)
    seen = t.sum(axis=1) > 0
    t[seen] /= t[seen].sum(axis=1, keepdims=True)
    priors = t[seen].mean(axis=0)
    errors = m_step(t)
    history: list[float] = []
    loss = -np.inf
    iterations = 0
    for iterations in range(1, n_iter + 1):  # noqa: B007
        t = e_step(priors, errors)
        t[~seen] = np.nan
        priors = np.nanmean(t, axis=0)
        errors = m_step(np.nan_to_num(t))
        new_loss = elbo(np.nan_to_num(t), priors, errors)
        history.append(new_loss)
        if new_loss - loss < tol:
            break
        loss = new_loss
    return DawidSkeneResult(items=item_names, labels=label_names, annotators=worker_names, posteriors=t,
                            priors=priors, confusion=errors, iterations=iterations, elbo=history)


__all__ = ["DawidSkeneResult", "dawid_skene"]

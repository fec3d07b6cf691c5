"""Which items people should check next, and with what probability each was chosen.

Four strategies choose ``n`` of the items not yet reviewed (``exclude``):

* ``confidence``: lowest consensus confidence first (the top probability of the
  combined soft label; an item without a valid answer, NaN, comes first), ties by the
  smaller margin (top minus second probability, from ``probs``), then by item order.
* ``disagreement``: the highest per-item disagreement score among annotators first (NaN,
  no score, last), ties by lower confidence, then by item order.
* ``random``: a simple random sample without replacement (seeded); every eligible item
  has inclusion probability ``π_i = n / N_e``.
* ``interval``: the items that most narrow the corpus interval of the label shares, drawn
  at random with probability proportional to their expected contribution to its
  variance. For an item with soft label ``p`` the PPI variance of the K shares grows
  with ``Σ_k E[(Y_k − p_k)²] = Σ_k p_k (1 − p_k)`` if ``p`` is calibrated, and the
  sampling rule minimising the variance of the inverse-probability-weighted estimator
  under a labelling budget takes ``π_i ∝ √(that)`` (Zrnic & Candès, "Active statistical
  inference", ICML 2024). So ``u_i = √(Σ_k p_ik (1 − p_ik))`` (a NaN row: the LLM's mean
  shares in its place, as :mod:`~llm_annotator.analysis.estimates` predicts it), mixed
  with the uniform distribution so that every item keeps a positive probability and a
  miscalibrated ``p`` cannot starve any part of the corpus:
  ``q_i = (1 − a) u_i / Σ u + a / N_e`` (``a = uniform_share``, 0.2 by default), and
  ``π_i = min(1, c q_i)`` with ``c`` set so that ``Σ π_i = n`` (items that reach 1 are
  taken for certain, the rest rescaled). The sample is drawn by randomised systematic
  sampling (Madow 1949; Goodman & Kish 1950): the eligible items in a random order, each
  an interval of length ``π_i`` laid end to end on [0, n); one uniform start ``s`` in
  [0, 1) picks the items whose interval holds ``s, s + 1, …, s + n − 1``. Each item is then
  chosen with probability exactly ``π_i`` and the sample has exactly ``n`` items.

The two deterministic strategies return ``inclusion=None``: their items are not a random
sample, so PPI and any other estimator that assumes one are biased on them (use them to
find errors, not to estimate the corpus). The two random ones return every chosen item's
``π_i``, to pass to the estimators as ``inclusion`` (weights ``1/π_i``). With one-hot soft
labels (one sample per item) every ``u_i`` is 0 and ``interval`` is ``random``; every
confidence is 1 and ``confidence`` takes the first items in order.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from llm_annotator.core.errors import ConfigError

STRATEGIES = ("confidence", "disagreement", "random", "interval")


@dataclass(frozen=True)
class Selection:
    """The chosen items: positions in the corpus, most urgent first for the deterministic
    strategies and in corpus order for the random ones; ``inclusion`` holds each chosen
    item's inclusion probability (None for ``confidence`` and ``disagreement``)."""

    strategy: str
    indices: tuple[int, ...]
    inclusion: tuple[float, ...] | None
    n_eligible: int


def choose(strategy: str, n: int, *, confidence: Any = None, disagreement: Any = None, probs: Any = None,
           exclude: Iterable[int] = (), seed: int = 0, uniform_share: float = 0.2) -> Selection:
    """Choose ``n`` items for people to review (module docstring for the strategies).

    ``confidence``, ``disagreement``: one number per item; ``probs``: N×K soft labels
    (NaN rows: no valid answer), which also give the confidence when ``confidence`` is
    None; ``exclude``: positions of items already reviewed. When fewer than ``n`` items
    are eligible, all of them are chosen.

    >>> choose("confidence", 2, confidence=[0.9, 0.4, 0.7, 0.4], exclude=[3]).indices
    (1, 2)
    >>> s = choose("random", 2, confidence=[0.9, 0.4, 0.7, 0.4], seed=1)
    >>> len(s.indices), s.inclusion
    (2, (0.5, 0.5))
    """
    if strategy not in STRATEGIES:
        raise ConfigError(f"unknown review strategy {strategy!r}; the strategies are {', '.join(STRATEGIES)}",
                          fix="pick one of " + ", ".join(STRATEGIES))
    _check_n(n)
    _check_share(uniform_share)
    conf, dis, p = _vector(confidence, "confidence"), _vector(disagreement, "disagreement"), _matrix(probs)
    sizes = {name: len(v) for name, v in (("confidence", conf), ("disagreement", dis), ("probs", p)) if v is not None}
    if len(set(sizes.values())) > 1:
        raise ConfigError(f"the inputs disagree on the number of items: {sizes}",
                          fix="pass one entry per corpus item in each of them")
    needs = {"confidence": ("confidence", conf if conf is not None else p), "disagreement": ("disagreement", dis),
             "interval": ("probs", p), "random": ("confidence, disagreement or probs", next(iter(sizes), None))}
    what, have = needs[strategy]
    if have is None:
        raise ConfigError(f"strategy {strategy!r} needs {what}",
                          fix=f"pass {what}=... (one value per item)" if strategy != "random"
                          else "pass any per-item input so the number of items is known")
    n_items = next(iter(sizes.values()))
    eligible = _eligible(exclude, n_items)
    take = min(int(n), len(eligible))
    if strategy in ("confidence", "disagreement"):
        if conf is None and p is not None:
            from llm_annotator.analysis.aggregate import confidence as confidence_of

            conf = confidence_of(p)["confidence"]
        margin = _margin(p)
        keys = (np.zeros(n_items) if margin is None else margin,
                np.zeros(n_items) if conf is None else np.nan_to_num(conf, nan=-np.inf))
        if strategy == "disagreement":
            assert dis is not None
            keys = (keys[1], -np.nan_to_num(dis, nan=-np.inf))
        order = eligible[np.lexsort(tuple(k[eligible] for k in keys))]  # last key sorts first; stable
        return Selection(strategy, tuple(int(i) for i in order[:take]), None, len(eligible))
    rng = np.random.default_rng(seed)
    if strategy == "random" or take == len(eligible):
        chosen = np.sort(rng.choice(eligible, size=take, replace=False))
        return Selection(strategy, tuple(int(i) for i in chosen), tuple(take / len(eligible) for _ in chosen),
                         len(eligible))
    assert p is not None
    pi = _probabilities(_spread(_filled(p)[eligible]), take, uniform_share)
    picked = _systematic(pi, take, rng)
    order = np.argsort(eligible[picked])
    return Selection(strategy, tuple(int(i) for i in eligible[picked][order]),
                     tuple(float(v) for v in pi[picked][order]), len(eligible))


def inclusion_probabilities(probs: Any, n: int, *, exclude: Iterable[int] = (),
                            uniform_share: float = 0.2) -> np.ndarray:
    """The ``interval`` strategy's inclusion probability of every item (0 for the excluded):
    ``π_i = min(1, c q_i)``, ``q_i = (1 − a) u_i / Σ u + a / N_e``, ``Σ π_i = n`` (module
    docstring). With ``n`` at least the eligible items, every eligible ``π_i`` is 1.

    >>> inclusion_probabilities([[0.5, 0.5], [1.0, 0.0], [0.9, 0.1]], 1).round(3).tolist()
    [0.567, 0.067, 0.367]
    """
    _check_n(n)
    _check_share(uniform_share)
    p = _matrix(probs)
    assert p is not None
    eligible = _eligible(exclude, len(p))
    out = np.zeros(len(p))
    out[eligible] = _probabilities(_spread(_filled(p)[eligible]), min(int(n), len(eligible)), uniform_share)
    return out


def _probabilities(spread: np.ndarray, n: int, uniform_share: float) -> np.ndarray:
    size = len(spread)
    q = np.full(size, 1.0 / size)
    if spread.sum() > 0:
        q = (1.0 - uniform_share) * spread / spread.sum() + uniform_share / size
    pi = np.zeros(size)
    sure = np.zeros(size, dtype=bool)
    while True:  # items whose scaled probability reaches 1 are taken for certain; rescale the rest
        pi[~sure] = (n - sure.sum()) * q[~sure] / q[~sure].sum()
        pi[sure] = 1.0
        over = ~sure & (pi >= 1.0)
        if not over.any():
            return pi
        sure |= over


def _systematic(pi: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Positions chosen by randomised systematic sampling with probabilities ``pi`` (Σ = n)."""
    order = rng.permutation(len(pi))
    ends = np.cumsum(pi[order])
    ends *= n / ends[-1]  # rounding: the last end is n exactly
    points = rng.uniform(0.0, 1.0) + np.arange(n)
    hit = np.searchsorted(ends, points, side="right")
    return np.asarray(order[np.minimum(hit, len(pi) - 1)])


def _spread(p: np.ndarray) -> np.ndarray:
    """``u_i = √(Σ_k p_ik (1 − p_ik))``: an item's expected contribution to the shares' variance."""
    return np.sqrt(np.clip((p * (1.0 - p)).sum(axis=1), 0.0, None))


def _filled(p: np.ndarray) -> np.ndarray:
    valid = ~np.isnan(p).any(axis=1)
    if not valid.any():
        return np.full_like(p, 1.0 / p.shape[1])
    return np.where(valid[:, None], p, p[valid].mean(axis=0)[None, :])


def _margin(p: np.ndarray | None) -> np.ndarray | None:
    if p is None:
        return None
    ordered = np.sort(np.nan_to_num(p, nan=0.0), axis=1)
    margin = ordered[:, -1] - (ordered[:, -2] if p.shape[1] > 1 else 0.0)
    return np.where(np.isnan(p).any(axis=1), -np.inf, margin)


def _check_n(n: int) -> None:
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n <= 0:
        raise ConfigError(f"n must be a positive whole number of items to review, got {n!r}",
                          fix="ask for at least one item, e.g. n=100")


def _check_share(uniform_share: float) -> None:
    if not isinstance(uniform_share, int | float) or not 0.0 < float(uniform_share) <= 1.0:
        raise ConfigError(f"uniform_share must lie in (0, 1], got {uniform_share!r}: every item needs a "
                          "positive probability of being chosen", fix="pass the share of the sampling "
                          "probability spread evenly over the items, e.g. 0.2")


def _vector(values: Any, name: str) -> np.ndarray | None:
    if values is None:
        return None
    try:
        array = np.asarray([np.nan if v is None else v for v in values], dtype=float)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must hold one number per item (None or NaN where unknown)",
                          fix=f"pass {name} as a list or array of numbers") from None
    if array.ndim != 1 or len(array) == 0:
        raise ConfigError(f"{name} must be a non-empty one-dimensional sequence, got shape {array.shape}",
                          fix=f"pass one {name} value per item")
    return array


def _matrix(probs: Any) -> np.ndarray | None:
    if probs is None:
        return None
    try:
        array = np.asarray(probs, dtype=float)
    except (TypeError, ValueError):
        raise ConfigError("probs must be an N×K array of soft labels", fix="pass the soft labels as numbers") from None
    if array.ndim != 2 or array.shape[0] == 0 or array.shape[1] == 0:
        raise ConfigError(f"probs has shape {array.shape}, expected N rows × K labels",
                          fix="pass one soft label (a row of K probabilities) per item")
    return array


def _eligible(exclude: Iterable[int], n_items: int) -> np.ndarray:
    try:
        excluded = np.asarray(sorted({int(i) for i in exclude}), dtype=int)
    except (TypeError, ValueError):
        raise ConfigError("exclude must hold item positions (whole numbers)",
                          fix="pass the positions of the items already reviewed") from None
    if len(excluded) and (excluded.min() < 0 or excluded.max() >= n_items):
        bad = excluded[(excluded < 0) | (excluded >= n_items)][0]
        raise ConfigError(f"exclude holds position {bad}, outside the {n_items} items (0 to {n_items - 1})",
                          fix="pass positions of items in this corpus, counted from 0")
    keep = np.ones(n_items, dtype=bool)
    keep[excluded] = False
    return np.flatnonzero(keep)


__all__ = ["STRATEGIES", "Selection", "choose", "inclusion_probabilities"]

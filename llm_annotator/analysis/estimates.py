"""Corpus estimates from a few human labels: prediction-powered inference, honest intervals.

A corpus of ``N`` items; every item ``i`` has an LLM prediction ``f_i ∈ [0, 1]`` of a
0/1 quantity ``Y_i`` (the soft label's probability of a class, or the probability that
an annotator is right), and ``n`` of the items carry a human label, hence ``Y_i``. The
estimand is the corpus mean ``θ = (1/N) Σ_i Y_i`` (a label's share, an annotator's
accuracy). ``L`` is the set of labelled items; ``w_i = 1/π_i`` (``π_i`` the item's
inclusion probability), normalised to mean 1 over ``L``; ``w_i = 1`` for a simple random
sample. Three estimators, each with an interval at ``level`` (``z`` its normal quantile):

* **human only**: ``θ̂_H = Σ_L w_i Y_i / Σ_L w_i`` (the sample share; Hájek's estimator
  under weights), with a score interval (below): Wilson's (Wilson 1927) for a simple
  random sample.
* **PPI** (``λ = 1``; Angelopoulos, Bates, Fannjiang, Jordan & Zrnic, "Prediction-powered
  inference", Science 2023) and **PPI++** (``λ`` tuned; Angelopoulos, Duchi & Zrnic,
  "PPI++: Efficient prediction-powered inference", 2023):
  ``θ̂_λ = λ m + (1/n) Σ_L w_i (Y_i − λ f_i)``, ``m = (1/N) Σ_all f_i``: the LLM's corpus
  share corrected by the error measured on the labelled items. Its normal-theory
  variance is ``se² = λ² s_f² / N + s_R² / n``, ``s_f²`` the variance of ``f`` over the
  corpus and ``s_R²`` that of ``w_i (Y_i − λ f_i)`` over ``L``. PPI++ takes, per label,
  ``λ̂ = Ĉov(wY, wf) / ((1 + n/N) V̂ar(f))`` clipped to [0, 1], the λ that minimises
  ``se²``; a predictor that does not vary gets ``λ̂ = 0`` and the human-only estimate.
  Point estimates, ``λ̂`` and the normal interval ``θ̂_λ ± z·se`` (reported as
  ``normal_low``/``normal_high``) come from the authors' package ``ppi_py``
  (``ppi_mean_pointestimate``, ``ppi_mean_ci``; λ from its ``_calc_lam_glm``).

**Intervals that hold for small shares.** The normal interval uses the sample variance of
``Y``, near 0 when a rare label has one or two hits among the human labels, and
under-covers: on MELT (``benchmarks/trust.py``, ``docs/trust.md``) the 90 % PPI++ normal
interval of the shares of fear and disgust (3 % of the corpus each) covers 77–81 % of
the time from 100 human labels. The reported ``low``/``high`` invert a score test instead, as Wilson's
interval does for a proportion. The estimator's error is, to first order,
``(1/n) Σ_L [w_i (Y_i − θ) − λ w_i (f_i − m)]``; at a hypothesised ``θ`` the human part
takes its variance under that ``θ`` rather than the sample's:

    A(θ) = E[w² (Y − θ)²] = r θ (1 − 2θ) + d θ²      (θ(1 − θ) for a simple random sample)
    V(θ) = (√A(θ) − λ ρ̂ √B)² + λ² B (1 − ρ̂²)          (never negative)
    interval = {θ ∈ [0, 1] : (θ̂_λ − θ)² ≤ z² (λ² s_f² / N + V(θ) / n)}

with ``d = mean_L(w²)`` (Kish's design effect), ``r = Σ_L w² Y / Σ_L w Y`` (the weights'
second over first moment among the human positives, since ``E[w² Y] = θ r``; ``d`` for a
label without one), ``B = mean_L w² (f − m)²`` and ``ρ̂`` the sample correlation of
``w (Y − θ̂_H)`` and ``w (f − m)`` (so the covariance is ``ρ̂ √(A B)``). The interval runs
from the smallest to the largest accepted ``θ`` (a grid of 2,000 steps that also holds
``θ̂_λ``, then bisection). With ``λ = 0`` and no weights it is exactly Wilson's interval,
the ``human_only`` one. On MELT the PPI++ score interval covers 88–93 % for every label
at n = 100, 200 and 500, and is narrower than Wilson's (docs/trust.md).

**A sample the estimators can trust.** The human-labelled items must be a simple random
sample, or a sample whose inclusion probabilities ``π_i`` are known (``inclusion``; then
the weights ``1/π_i``, as in active statistical inference, Zrnic & Candès, ICML 2024).
Items picked deterministically (lowest confidence first) are neither: estimates from
them are biased and no interval repairs that. The variances under weights are the
with-replacement ones (Hansen & Hurwitz 1943), a slight overestimate for fixed-size
sampling without replacement; Kish's effective number of items ``n / d`` is reported as
``n_effective``. The corpus view: with ``N`` much larger than ``n`` the
variance ``λ² s_f² / N`` of the LLM term is small and conservative for a finite corpus.

**Missing LLM answers.** A row of NaN in ``probs`` (no valid LLM answer for the item)
takes the LLM's share over the items that have one as its prediction: a fixed guess,
so the estimators stay unbiased and the rectifier ``Y − λ f`` measures its error like any
other. A human label outside ``labels`` counts as a class of its own: it is 0 for every
listed label (an item the LLM labelled and a person called "other" lowers every share).
Intervals are clipped to [0, 1].
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from llm_annotator.core.errors import ConfigError

#: one entry per corpus item: a list, tuple, pandas Series or one-dimensional array
Column = Sequence[Any] | np.ndarray
_GRID = 2000  # steps of the θ grid the score interval is first found on
_TRUST = "pip install 'llm-annotator-kit[trust]'"
_BISECT = 40  # bisection steps within a grid cell of 5e-4: below 1e-15


def label_shares(probs: Any, human: Column, labels: Sequence[str], *, level: float = 0.9,
                 inclusion: Column | None = None) -> list[dict[str, Any]]:
    """Each label's share of the corpus: LLM alone, human labels alone, PPI and PPI++.

    ``probs``: N×K LLM soft labels over ``labels`` (a NaN row: no valid answer);
    ``human``: N gold labels, None (or NaN) where nobody labelled the item; ``inclusion``:
    N inclusion probabilities, read at the labelled items (None: a simple random sample).
    One dict per label: ``label``, ``level``, ``n_items`` (N), ``n_human``, ``n_effective``
    (Kish's), ``n_llm`` (items with a valid LLM answer), ``llm_share`` (the mean of
    ``probs`` over them), ``human_only`` {estimate, low, high}, and ``ppi`` (λ = 1) and
    ``ppi_power`` (PPI++) {estimate, low, high, lambda, normal_low, normal_high}. See the
    module docstring for the formulas.

    >>> import numpy as np
    >>> probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.7, 0.3]])
    >>> rows = label_shares(probs, ["yes", None, "no", "yes"], ["yes", "no"])
    >>> rows[0]["n_human"], round(rows[0]["ppi"]["estimate"], 3)
    (3, 0.533)
    """
    names = _labels(labels)
    level = _level(level)
    f, valid = _predictions(probs, len(names))
    n_items = f.shape[0]
    gold = _column(human, n_items, "human")
    labelled = ~pd.isna(gold)
    _need_labels(labelled, "human", "a gold label")
    y = np.stack([gold[labelled] == name for name in names], axis=1).astype(float)
    w = _weights(inclusion, labelled, n_items)
    llm_share = np.asarray(probs, dtype=float)[valid].mean(axis=0) if valid.any() else f[0]
    rows = _estimate(y, f[labelled], f, w, level)
    base = {"level": level, "n_items": n_items, "n_human": int(labelled.sum()), "n_llm": int(valid.sum())}
    return [{"label": name, **base, "n_effective": row.pop("n_effective"), "llm_share": float(share), **row}
            for name, share, row in zip(names, llm_share, rows, strict=True)]


def accuracy(hit: Column, predicted: Any, *, level: float = 0.9,
             inclusion: Column | None = None) -> dict[str, Any]:
    """An annotator's accuracy over the corpus from the items a person labelled.

    ``hit``: N values, 1/0 (or True/False) where a person labelled the item (the
    annotator right or wrong), None or NaN elsewhere; ``predicted``: N probabilities that
    the annotator is right (e.g. the combined soft label's probability of its label; NaN
    where unknown, filled with the mean of the others). Returns ``level``, ``n_items``,
    ``n_human``, ``n_effective``, ``n_predicted``, ``predicted_mean`` and ``human_only``,
    ``ppi``, ``ppi_power`` as in :func:`label_shares`. A constant ``predicted`` (one-hot
    soft labels give 1 everywhere) carries no information: every estimate then equals
    the human-only one.

    >>> out = accuracy([1, None, 0, 1], [0.9, 0.8, 0.4, 0.7])
    >>> out["n_human"], round(out["human_only"]["estimate"], 3)
    (3, 0.667)
    """
    level = _level(level)
    f, valid = _predictions(predicted, 1, name="predicted")
    n_items = f.shape[0]
    hits = _column(hit, n_items, "hit")
    labelled = ~pd.isna(hits)
    _need_labels(labelled, "hit", "a 1 or a 0")
    bad = [int(i) for i in np.flatnonzero(labelled) if hits[i] not in (0, 1) or isinstance(hits[i], str)]
    if bad:
        raise ConfigError(f"hit[{bad[0]}] is {hits[bad[0]]!r}, not 1, 0 or None ({len(bad)} such items)",
                          fix="pass 1 where the annotator agreed with the person, 0 where not, None where "
                              "no person labelled the item")
    y = hits[labelled].astype(float).reshape(-1, 1)
    w = _weights(inclusion, labelled, n_items)
    row = _estimate(y, f[labelled], f, w, level)[0]
    return {"level": level, "n_items": n_items, "n_human": int(labelled.sum()),
            "n_effective": row.pop("n_effective"), "n_predicted": int(valid.sum()),
            "predicted_mean": float(f[valid, 0].mean()) if valid.any() else float("nan"), **row}


# --- computation ------------------------------------------------------------------------

def _ppi() -> Any:
    """ppi_py, imported so that its import-time ``warnings.simplefilter("ignore")`` (which
    would silence every warning of the process, RunWarning too) is undone."""
    try:
        with warnings.catch_warnings():
            import ppi_py
            import ppi_py.ppi
    except ImportError:
        raise ConfigError("corpus estimates need ppi-python, which is not installed", fix=_TRUST) from None
    return ppi_py


def _estimate(y: np.ndarray, f_lab: np.ndarray, f_all: np.ndarray, w: np.ndarray | None,
              level: float) -> list[dict[str, Any]]:
    """Human-only, PPI and PPI++ per column of ``y`` (n×K), ``f_lab`` (n×K), ``f_all`` (N×K)."""
    ppi_py = _ppi()  # first: it needs scipy too
    from scipy.stats import norm

    n, k = y.shape
    n_all = f_all.shape[0]
    z = float(norm.ppf(0.5 + level / 2))
    wn = np.ones(n) if w is None else w / w.mean()
    w2 = (wn ** 2)[:, None]
    deff = float(np.mean(wn ** 2))
    human_est = (wn[:, None] * y).mean(axis=0)
    # the terms of the Hájek linearisation: w (Y − θ) − λ w (f − m), m the corpus mean of f
    f_dev = f_lab - f_all.mean(axis=0)
    b = (w2 * f_dev ** 2).mean(axis=0)
    a_emp = (w2 * (y - human_est) ** 2).mean(axis=0)
    c_emp = (w2 * (y - human_est) * f_dev).mean(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        rho = np.clip(np.where((a_emp > 0) & (b > 0), c_emp / np.sqrt(a_emp * b), 0.0), -1.0, 1.0)
        # E[w²Y] = θ r: r the weights' second over first moment among the human positives
        hits = (wn[:, None] * y).sum(axis=0)
        ratio = np.where(hits > 0, (w2 * y).sum(axis=0) / hits, deff)
    terms = _Terms(rho=rho, b=b, s_all=f_all.std(axis=0), ratio=ratio, deff=deff, n=n, n_all=n_all, z=z)
    human = _score_interval(human_est, np.zeros(k), terms)
    out: list[dict[str, Any]] = [
        {"n_effective": n / deff,
         "human_only": {"estimate": float(human_est[j]), "low": human[0][j], "high": human[1][j]}}
        for j in range(k)]
    for key, lam in (("ppi", np.ones(k)), ("ppi_power", _power_lambda(y, f_lab, f_all, w))):
        est = np.atleast_1d(ppi_py.ppi_mean_pointestimate(y, f_lab, f_all, lam=lam, w=w)).reshape(k)
        normal = ppi_py.ppi_mean_ci(y, f_lab, f_all, alpha=1 - level, lam=lam, w=w)
        low, high = _score_interval(est, lam, terms)
        for j in range(k):
            out[j][key] = {"estimate": float(est[j]), "low": low[j], "high": high[j], "lambda": float(lam[j]),
                           "normal_low": _clip(np.ravel(normal[0])[j]), "normal_high": _clip(np.ravel(normal[1])[j])}
    return out


def _power_lambda(y: np.ndarray, f_lab: np.ndarray, f_all: np.ndarray, w: np.ndarray | None = None) -> np.ndarray:
    """PPI++'s λ per column, as ``ppi_py.ppi_mean_ci(lam=None, lam_optim_mode="element")``
    computes it; 0 where the predictions do not vary (nothing to learn from them)."""
    ppi_py = _ppi()
    n, k = y.shape
    wv = np.ones((n, 1)) if w is None else (w / w.sum() * n)[:, None]
    theta = ppi_py.ppi_mean_pointestimate(y, f_lab, f_all, lam=1, w=w)
    with np.errstate(divide="ignore", invalid="ignore"):
        lam = ppi_py.ppi._calc_lam_glm(wv * (y - theta), wv * (f_lab - theta), f_all - theta, np.eye(k),
                                       clip=True, optim_mode="element")
    lam = np.nan_to_num(np.atleast_1d(np.asarray(lam, dtype=float)).reshape(k), nan=0.0)
    flat = np.vstack([f_lab, f_all]).var(axis=0) <= 1e-12  # else rounding noise makes a λ up
    return np.where(flat, 0.0, lam)


class _Terms(NamedTuple):
    """What the score interval needs besides θ̂ and λ (module docstring), per column."""

    rho: np.ndarray  # ρ̂ = Ĉorr(w (Y − θ̂_H), w (f − m))
    b: np.ndarray  # mean_L w² (f − m)²
    s_all: np.ndarray  # the standard deviation of f over the corpus
    ratio: np.ndarray  # r = mean_L w² Y / mean_L w Y (d without a positive)
    deff: float  # d = mean_L w²
    n: int
    n_all: int
    z: float


def _score_interval(est: np.ndarray, lam: np.ndarray, t: _Terms) -> tuple[list[float], list[float]]:
    """{θ ∈ [0, 1] : (θ̂ − θ)² ≤ z² se²(θ)} per column, from its smallest to its largest
    member (module docstring); the clipped estimate where it is empty."""
    shift = (lam * t.rho * np.sqrt(t.b))[:, None]
    floor = (lam ** 2 * t.b * (1.0 - t.rho ** 2))[:, None]
    imputed = ((lam * t.s_all) ** 2 / t.n_all)[:, None]
    centre, r = est[:, None], t.ratio[:, None]

    def excess(theta: np.ndarray) -> np.ndarray:  # theta: one row per column of est
        human = np.clip(theta * r * (1.0 - 2.0 * theta) + t.deff * theta ** 2, 0.0, None)
        v = (np.sqrt(human) - shift) ** 2 + floor
        out: np.ndarray = (centre - theta) ** 2 - t.z ** 2 * (imputed + v / t.n)
        return out

    k = len(est)
    fallback = np.clip(est, 0.0, 1.0)
    grid = np.sort(np.hstack([np.tile(np.linspace(0.0, 1.0, _GRID + 1), (k, 1)), fallback[:, None]]), axis=1)
    inside = excess(grid) <= 0
    top = grid.shape[1] - 1
    first = inside.argmax(axis=1)
    last = top - inside[:, ::-1].argmax(axis=1)
    rows = np.arange(k)[:, None]
    # bisect both ends at once: column 0 the lower end, column 1 the upper
    yes = grid[rows, np.stack([first, last], axis=1)]
    no = grid[rows, np.stack([np.maximum(first - 1, 0), np.minimum(last + 1, top)], axis=1)]
    for _ in range(_BISECT):
        mid = (yes + no) / 2
        ok = excess(mid) <= 0
        yes, no = np.where(ok, mid, yes), np.where(ok, no, mid)
    low = np.where(first == 0, 0.0, yes[:, 0])
    high = np.where(last == top, 1.0, yes[:, 1])
    empty = ~inside.any(axis=1)
    low, high = np.where(empty, fallback, low), np.where(empty, fallback, high)
    return [float(v) for v in low], [float(v) for v in high]


def _clip(value: float) -> float:
    return float(min(1.0, max(0.0, value)))


# --- validation -------------------------------------------------------------------------

def _labels(labels: Sequence[str]) -> list[str]:
    names = list(labels) if labels is not None and not isinstance(labels, str) else []
    if not names or len(set(names)) != len(names):
        raise ConfigError(f"labels must be a non-empty list of distinct labels, got {labels!r}",
                          fix="pass the task's labels in the order of the columns of probs")
    return names


def _level(level: float) -> float:
    if not isinstance(level, int | float) or not 0.0 < float(level) < 1.0:
        raise ConfigError(f"level must lie strictly between 0 and 1, got {level!r}",
                          fix="pass the interval's coverage, e.g. level=0.9 for a 90% interval")
    return float(level)


def _predictions(probs: Any, k: int, name: str = "probs") -> tuple[np.ndarray, np.ndarray]:
    """``probs`` as an N×k array whose NaN rows hold the mean of the valid rows, and the
    mask of valid rows."""
    try:
        array = np.asarray(probs, dtype=float)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{name} must be numbers ({exc})", fix=f"pass {name} as a numeric array") from None
    if k == 1 and array.ndim == 1:
        array = array[:, None]
    if array.ndim != 2 or array.shape[1] != k or array.shape[0] == 0:
        want = "N values" if name == "predicted" else f"N rows × {k} columns (one per label)"
        raise ConfigError(f"{name} has shape {array.shape}, expected {want}",
                          fix="pass one row per corpus item and one column per label, in the order of labels"
                          if name == "probs" else "pass one probability per corpus item")
    valid = ~np.isnan(array).any(axis=1)
    values = array[valid]
    if np.isinf(values).any() or (values < -1e-9).any() or (values > 1 + 1e-9).any():
        row = int(np.flatnonzero(valid)[np.argmax(~((values >= -1e-9) & (values <= 1 + 1e-9)).all(axis=1))])
        raise ConfigError(f"{name} row {row} holds a value outside [0, 1]: {array[row].tolist()}",
                          fix="pass probabilities (soft labels), not scores or logits")
    if not valid.any():
        raise ConfigError(f"{name} has no row with a valid LLM answer (every row is NaN)",
                          fix="annotate the corpus first, or use the human labels alone")
    filled = np.where(valid[:, None], array, values.mean(axis=0)[None, :])
    return np.clip(filled, 0.0, 1.0), valid


def _column(values: Column, n_items: int, name: str) -> np.ndarray:
    """``values`` as a one-dimensional object array of ``n_items`` entries."""
    if values is None or isinstance(values, str):
        raise ConfigError(f"{name} must be a sequence of {n_items} values", fix=f"pass {name} with one entry per item")
    entries = list(values)
    out = np.empty(len(entries), dtype=object)
    out[:] = entries
    if len(out) != n_items:
        raise ConfigError(f"{name} has {len(out)} entries but the corpus has {n_items} items (rows of the "
                          f"predictions)", fix=f"pass {name} with one entry per item, None where nobody labelled it")
    return out


def _need_labels(labelled: np.ndarray, name: str, what: str) -> None:
    if not labelled.any():
        raise ConfigError(f"no item has a human label: every entry of {name} is None",
                          fix=f"have people label a random sample of items (review --strategy random) and pass "
                              f"{what} for each of them")


def _weights(inclusion: Column | None, labelled: np.ndarray, n_items: int) -> np.ndarray | None:
    """Inverse inclusion probabilities of the labelled items, or None (a simple random sample)."""
    if inclusion is None:
        return None
    values = _column(inclusion, n_items, "inclusion")
    probs = []
    for i in np.flatnonzero(labelled):
        p = values[i]
        ok = isinstance(p, int | float | np.floating | np.integer) and math.isfinite(float(p)) and 0 < float(p) <= 1
        if not ok:
            raise ConfigError(f"inclusion[{i}] is {p!r} for a labelled item; an inclusion probability lies in (0, 1]",
                              fix="pass the probability with which each labelled item was drawn (as "
                                  "selection.choose returns it), or inclusion=None for a simple random sample")
        probs.append(float(p))
    return 1.0 / np.array(probs)


__all__ = ["accuracy", "label_shares"]

"""Calibration fitted on gold: a map from an annotator's soft labels to calibrated ones.

:mod:`~llm_annotator.analysis.calibration` measures how far a soft label's confidence
can be trusted; this module corrects it. A :class:`Calibrator` is fitted on the items
that have a gold label (one annotator's soft labels ``p_i`` over the K task labels, gold
``y_i``, optional item weights ``w_i``) and applied to every item, so the calibrated soft
labels sit beside the raw ones. Three maps:

* ``temperature`` (default; Guo et al. 2017, "On Calibration of Modern Neural
  Networks"): ``q_i = softmax(log p̃_i / T)``, one parameter, fitted by weighted maximum
  likelihood ``T = argmin Σ_i w_i (log Σ_k p̃_ik^{1/T} − log p̃_{i,y_i}^{1/T})`` (the
  negative log-likelihood is convex in ``1/T``; ``T`` is searched in [1e-3, 1e3]). It
  never changes which label is on top. Soft labels are often one-hot or hold exact zeros
  (one sample per item), where ``log p`` is ``−∞``; they are first mixed with the uniform
  distribution, ``p̃ = (1 − ε) p + ε / K`` with ``ε = smoothing`` (0.001, like a
  thousandth of a vote spread over all labels: a label no sample chose keeps a finite
  log-probability, and a distribution a provider returned keeps its shape above about
  ε/K; a larger ε biases the fitted T of such distributions down, a smaller one makes
  the labels nobody chose all but impossible after scaling). A one-hot annotator's rows are
  ``(1 − ε + ε/K, ε/K, …)`` and ``T`` moves its top probability anywhere in (1/K, 1): the
  fit sets it to the annotator's weighted accuracy on gold (when above 1/K; at or below
  chance ``T`` reaches its upper bound and the rows become nearly uniform), and spreads
  the rest evenly over the other labels. Items whose gold label lies outside the K labels have
  likelihood 0 at every ``T`` and carry no information about it: the temperature fit
  leaves them out (they still count as misses in ECE and Brier).
* ``isotonic`` (Zadrozny & Elkan 2002, "Transforming classifier scores into accurate
  multiclass probability estimates"): per label k, the weighted isotonic (non-decreasing)
  regression ``g_k`` of ``1[y_i = k]`` on ``p_ik`` (pool adjacent violators, through
  scikit-learn), linear between its knots and constant beyond them; then
  ``q_ik = g_k(p_ik) / Σ_j g_j(p_ij)``.
* ``histogram`` (Zadrozny & Elkan 2001, histogram binning): per label k, equal-mass bins
  of ``p_k`` (cut at the weighted quantiles j/B of the gold items; tied values merge
  bins), each bin's value the weighted share of its items whose gold is k; an empty bin
  takes the value of the nearest bin below; then normalised as for isotonic.

For isotonic and histogram maps an item whose gold lies outside the labels is a 0 for
every label; a row whose mapped values are all 0 becomes uniform. A NaN row (no valid
answer) stays NaN. Weights (inverse inclusion probabilities, Horvitz & Thompson 1952) make
every fit a weighted one; an item of weight 0 is ignored.

:func:`cross_fitted` says what the fit gains without measuring it on the items it was
fitted on: K-fold cross-fitting (the term of Chernozhukov et al. 2018) fits on K − 1
folds of the gold items, calibrates the held-out fold, and scores ECE and Brier on the
held-out predictions only, next to the raw soft labels of the same items.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from llm_annotator.analysis.calibration import calibration, item_weights
from llm_annotator.core.errors import ConfigError

METHODS = ("temperature", "isotonic", "histogram")
#: the fewest gold items a fit accepts
MIN_GOLD = 10
#: the share of the uniform distribution mixed into soft labels before taking logs
SMOOTHING = 1e-3
_TRUST = "pip install 'llm-annotator-kit[trust]'"
_LOG_BETA = (float(np.log(1e-3)), float(np.log(1e3)))

Knots = tuple[tuple[float, ...], tuple[float, ...]]


@dataclass(frozen=True)
class Calibrator:
    """A fitted calibration map of one annotator's soft labels (see the module docstring).

    ``temperature`` is NaN unless ``method == "temperature"``; ``knots`` holds per label
    the isotonic knots ``(x, g(x))`` or the histogram's ``(cuts, bin values)``, and is
    empty for temperature scaling. ``n`` is the number of gold items it was fitted on.
    """

    method: str
    labels: tuple[str, ...]
    n: int
    temperature: float = float("nan")
    smoothing: float = SMOOTHING
    knots: tuple[Knots, ...] = ()

    def apply(self, probs: Any) -> np.ndarray:
        """Calibrated soft labels (items x labels), rows summing to 1; NaN rows stay NaN."""
        p, ok = _soft_rows(probs, len(self.labels))
        out = np.full(p.shape, np.nan)
        x = p[ok]
        k = len(self.labels)
        if self.method == "temperature":
            out[ok] = _tempered(_smoothed(x, self.smoothing), 1 / self.temperature)
            return out
        mapped = np.column_stack([_map_column(self.method, knot, x[:, j]) for j, knot in enumerate(self.knots)])
        total = mapped.sum(axis=1, keepdims=True)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[ok] = np.where(total > 0, mapped / total, 1.0 / k)
        return out


def _soft_rows(probs: Any, k: int) -> tuple[np.ndarray, np.ndarray]:
    """``probs`` as floats (items x k) and the mask of rows without NaN; checks the rows."""
    try:
        p = np.asarray(probs, dtype=float)
    except (TypeError, ValueError):
        raise ConfigError("probs must be numbers: rows of probabilities over the labels",
                          fix="pass the soft-label columns as a float array (NaN rows where no answer)") from None
    if p.ndim != 2 or p.shape[1] != k:
        raise ConfigError(f"probs must have one column per label: got shape {p.shape}, expected (items, {k})",
                          fix="pass the soft-label columns in the order of labels")
    ok = ~np.isnan(p).any(axis=1)
    rows = p[ok]
    wrong = (rows < -1e-9).any(axis=1) | ~np.isclose(rows.sum(axis=1), 1.0, atol=1e-6)
    if wrong.any():
        bad = int(np.flatnonzero(ok)[np.argmax(wrong)])
        raise ConfigError(f"probs row {bad} is not a probability distribution: {p[bad].tolist()}",
                          fix="pass non-negative rows that sum to 1 (divide counts by their row total), "
                              "or NaN for an item with no answer")
    return p, ok


def _smoothed(p: np.ndarray, eps: float) -> np.ndarray:
    return (1 - eps) * p + eps / p.shape[1]


def _tempered(p: np.ndarray, beta: float) -> np.ndarray:
    """``softmax(β log p)`` row by row (``p`` smoothed: no zeros)."""
    z = beta * np.log(p)
    z -= z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _map_column(method: str, knots: Knots, x: np.ndarray) -> np.ndarray:
    xs, ys = (np.asarray(v, dtype=float) for v in knots)
    if method == "isotonic":
        return np.interp(x, xs, ys)
    return ys[np.searchsorted(xs, x, side="left")]


def _gold_items(p: np.ndarray, ok: np.ndarray, gold: Sequence[Any], w: np.ndarray) -> np.ndarray:
    """Row indices of the items with a gold label, a soft label and a positive weight."""
    from llm_annotator.analysis.agreement import _missing

    if len(gold) != len(p):
        raise ConfigError(f"gold has {len(gold)} values but probs has {len(p)} rows",
                          fix="align gold with the rows of probs, None where an item has no gold label")
    return np.array([i for i, g in enumerate(gold) if not _missing(g) and ok[i] and w[i] > 0], dtype=int)


def _check(labels: Sequence[str], method: str, bins: int, smoothing: float) -> list[str]:
    if method not in METHODS:
        raise ConfigError(f"unknown calibration method {method!r}", fix=f"use one of {', '.join(METHODS)}")
    if isinstance(bins, bool) or not isinstance(bins, int | np.integer) or bins < 1:
        raise ConfigError(f"bins must be a whole number of at least 1, got {bins!r}", fix="use e.g. bins=10")
    if not 0 < smoothing < 1:
        raise ConfigError(f"smoothing must lie strictly between 0 and 1, got {smoothing!r}",
                          fix=f"use e.g. smoothing={SMOOTHING}")
    labels = list(labels)
    if not labels or len(set(labels)) != len(labels):
        raise ConfigError(f"labels must be a non-empty list without repeats, got {labels!r}",
                          fix="pass the task's label list, in the order of the probs columns")
    return labels


def _missing_extra(package: str) -> ConfigError:
    return ConfigError(f"calibration fitted on gold needs {package}, which is not installed", fix=_TRUST)


def fit_calibrator(probs: Any, gold: Sequence[Any], labels: Sequence[str], *, method: str = "temperature",
                   weights: Any = None, bins: int = 10, smoothing: float = SMOOTHING) -> Calibrator:
    """Fit a calibration map of one annotator's soft labels on the items with a gold label.

    probs: items x labels soft labels (rows sum to 1; NaN rows are items with no answer).
    gold: gold labels aligned with the rows, None where an item has none; a value outside
        ``labels`` counts as a miss.
    labels: the task's labels, in the order of the columns of ``probs``.
    method: ``"temperature"`` (default), ``"isotonic"`` or ``"histogram"``.
    weights: one non-negative weight per row (inverse inclusion probabilities); default 1.
    bins: the number of equal-mass bins per label of ``"histogram"``.
    smoothing: ``ε`` of ``p̃ = (1 − ε) p + ε / K`` before temperature scaling.

    Needs at least ``MIN_GOLD`` (10) gold items of positive weight (for temperature
    scaling, with a gold label among ``labels``), and the ``trust`` extra.
    """
    labels = _check(labels, method, bins, smoothing)
    p, ok = _soft_rows(probs, len(labels))
    w = item_weights(weights, len(p))
    rows = _gold_items(p, ok, gold, w)
    index = {label: k for k, label in enumerate(labels)}
    y = np.array([index.get(gold[i], -1) for i in rows], dtype=int)
    if method == "temperature":
        rows, y = rows[y >= 0], y[y >= 0]
    if len(rows) < MIN_GOLD:
        within = " whose gold label is one of the labels" if method == "temperature" else ""
        raise ConfigError(f"fitting a {method} calibration needs at least {MIN_GOLD} items with a gold label, "
                          f"a soft label and a positive weight{within}; got {len(rows)}",
                          fix=f"label at least {MIN_GOLD} items by hand (50 or more give a steadier fit)")
    x, w = p[rows], w[rows]
    if method == "temperature":
        beta = _fit_beta(_smoothed(x, smoothing), y, w)
        return Calibrator(method, tuple(labels), len(rows), temperature=1 / beta, smoothing=smoothing)
    fit = _fit_isotonic if method == "isotonic" else _fit_histogram
    knots = tuple(fit(x[:, k], (y == k).astype(float), w, bins) for k in range(len(labels)))
    return Calibrator(method, tuple(labels), len(rows), smoothing=smoothing, knots=knots)


def _fit_beta(x: np.ndarray, y: np.ndarray, w: np.ndarray) -> float:
    """``β = 1/T`` of least weighted negative log-likelihood (bounded scalar search)."""
    try:
        from scipy.optimize import minimize_scalar
        from scipy.special import logsumexp
    except ImportError:
        raise _missing_extra("scipy") from None
    logp = np.log(x)
    gold = logp[np.arange(len(y)), y]
    total = w.sum()

    def nll(log_beta: float) -> float:
        beta = np.exp(log_beta)
        return float(w @ (logsumexp(beta * logp, axis=1) - beta * gold) / total)

    found = minimize_scalar(nll, bounds=_LOG_BETA, method="bounded", options={"xatol": 1e-7})
    return float(np.exp(found.x))


def _fit_isotonic(x: np.ndarray, t: np.ndarray, w: np.ndarray, bins: int) -> Knots:
    try:
        from sklearn.isotonic import IsotonicRegression
    except ImportError:
        raise _missing_extra("scikit-learn") from None
    model = IsotonicRegression(y_min=0.0, y_max=1.0, increasing=True, out_of_bounds="clip")
    model.fit(x, t, sample_weight=w)
    return tuple(map(float, model.X_thresholds_)), tuple(map(float, model.y_thresholds_))


def _fit_histogram(x: np.ndarray, t: np.ndarray, w: np.ndarray, bins: int) -> Knots:
    order = np.argsort(x, kind="stable")
    xs, cumulative = x[order], np.cumsum(w[order]) / w.sum()
    at = np.searchsorted(cumulative, np.arange(1, bins) / bins - 1e-12, side="left")
    cuts = np.unique(xs[np.minimum(at, len(xs) - 1)])
    which = np.searchsorted(cuts, x, side="left")
    mass = np.bincount(which, weights=w, minlength=len(cuts) + 1)
    hits = np.bincount(which, weights=w * t, minlength=len(cuts) + 1)
    values = np.full(len(mass), np.nan)
    values[mass > 0] = hits[mass > 0] / mass[mass > 0]
    filled = np.flatnonzero(mass > 0)
    for b in np.flatnonzero(mass == 0):  # the nearest bin below, else above
        below = filled[filled < b]
        values[b] = values[below[-1] if len(below) else filled[0]]
    return tuple(map(float, cuts)), tuple(map(float, values))


def _needed(folds: int) -> int:
    """The fewest gold items with which every training part of ``folds`` folds has MIN_GOLD."""
    n = MIN_GOLD
    while n - -(-n // folds) < MIN_GOLD:
        n += 1
    return n


def cross_fitted(probs: Any, gold: Sequence[Any], labels: Sequence[str], *, method: str = "temperature",
                 folds: int = 5, seed: int = 0, weights: Any = None, bins: int = 10,
                 smoothing: float = SMOOTHING) -> dict[str, Any]:
    """ECE and Brier before and after calibration, each item scored by a map not fitted on it.

    The gold items (gold label, soft label, positive weight) are shuffled (seeded) into
    ``folds`` near-equal folds; for each, :func:`fit_calibrator` is fitted on the others
    and applied to it. Returns ``{method, n, folds, seed, before: {ece, brier}, after:
    {ece, brier}}``, both measured by :func:`~llm_annotator.analysis.calibration.calibration`
    (weighted by ``weights``) on the same n held-out items: ``before`` on their raw soft
    labels, ``after`` on their cross-fitted calibrated ones. The other arguments are those
    of :func:`fit_calibrator`.
    """
    labels = _check(labels, method, bins, smoothing)
    if isinstance(folds, bool) or not isinstance(folds, int | np.integer) or folds < 2:
        raise ConfigError(f"folds must be a whole number of at least 2, got {folds!r}", fix="use e.g. folds=5")
    p, ok = _soft_rows(probs, len(labels))
    w = item_weights(weights, len(p))
    rows = _gold_items(p, ok, gold, w)
    if len(rows) < _needed(folds):
        raise ConfigError(f"{folds}-fold cross-fitting needs at least {_needed(folds)} items with a gold label, a "
                          f"soft label and a positive weight (each fit needs {MIN_GOLD}); got {len(rows)}",
                          fix=f"label more items by hand, or use fewer folds (folds=2 needs {_needed(2)})")
    parts = np.array_split(np.random.default_rng(seed).permutation(rows), folds)
    calibrated = np.full(p.shape, np.nan)
    for k, held in enumerate(parts):
        train = np.concatenate([part for j, part in enumerate(parts) if j != k])
        fitted = fit_calibrator(p[train], [gold[i] for i in train], labels, method=method, weights=w[train],
                                bins=bins, smoothing=smoothing)
        calibrated[held] = fitted.apply(p[held])
    held_gold = [gold[i] for i in rows]

    def scores(q: np.ndarray) -> dict[str, float]:
        out = calibration(q[rows], held_gold, labels, weights=w[rows])
        return {"ece": out["ece"], "brier": out["brier"]}

    return {"method": method, "n": len(rows), "folds": folds, "seed": seed,
            "before": scores(p), "after": scores(calibrated)}


__all__ = ["METHODS", "MIN_GOLD", "SMOOTHING", "Calibrator", "cross_fitted", "fit_calibrator"]

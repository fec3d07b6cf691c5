"""Annotators that fail together: how many independent opinions a panel is worth, and how
far LLM soft labels lie from the distribution of several human raters.

Five similar models that make the same mistakes are not five opinions. Against gold, the
error indicator of annotator a on item i is ``e_ia = 1[ŷ_ia ≠ y_i]`` (a gold label
outside the task's labels is an error for everyone). Over the ``n_ab`` items where a and
b both answered and gold exists:

* ``φ_ab`` = the phi coefficient of ``e_a`` and ``e_b`` (Yule 1912; the Pearson
  correlation of two binary variables), ``(n11 n00 − n10 n01) / √(n1· n0· n·1 n·0)``;
  undefined (NaN) when either annotator is always right or always wrong on those items;
* ``ρ̄`` = the unweighted mean of the defined ``φ_ab`` over the pairs;
* the design effect ``deff = 1 + (m − 1) ρ̄`` and the effective number of independent
  annotators ``m_eff = m / deff`` of a panel of m (Kish 1965, *Survey Sampling*: the
  variance of a mean over m units with intra-class correlation ρ is deff times that of
  m independent units, so the panel carries the information of ``m_eff`` independent
  ones). ``m_eff`` runs from 1 (everyone fails together, ρ̄ = 1) to m (errors
  independent, ρ̄ = 0). ρ̄ is clamped to [0, 1] first: errors that cancel (ρ̄ < 0) do not
  make a panel worth more than its m members; an undefined ρ̄ gives NaN;
* an eigenvalue-based figure that also sees structure (two clusters of look-alike models)
  the mean hides: the participation ratio of the eigenvalues ``λ`` of the m x m matrix
  ``R`` of ``φ`` (diagonal 1), ``(Σλ)² / Σλ² = m² / Σ_ab φ_ab²`` (Gao et al. 2017, "A
  theory of multineuronal dimensionality, dynamics and measurement"), which is m for
  ``R = I`` and 1 for a matrix of ones; NaN unless every pair's φ is defined.

Where several people labelled each item, their label shares ``q_i`` form a distribution
to compare with an LLM's soft label ``p_i`` (both over the K labels), averaged over the
items where neither row is NaN:

* Jensen–Shannon divergence, base 2 (Lin 1991), in [0, 1]:
  ``JS = ½ KL(p ‖ μ) + ½ KL(q ‖ μ)``, ``μ = ½ (p + q)``; scipy's ``jensenshannon`` returns
  its square root, the Jensen–Shannon distance, which is squared here;
* ``KL(q ‖ p̃) = Σ_k q_k log₂(q_k / p̃_k)`` in bits (Kullback & Leibler 1951): the bits
  lost when the LLM's distribution stands in for the people's. An LLM that gives 0 to a
  label people chose would make it infinite, so the LLM side is smoothed as in
  :mod:`~llm_annotator.analysis.recalibrate`: ``p̃ = (1 − ε) p + ε / K``, ``ε = 0.001``,
  which caps each item's KL at ``log₂(K / ε)``;
* total variation ``TV = ½ Σ_k |p_k − q_k|`` in [0, 1] (no smoothing).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from llm_annotator.analysis.recalibrate import SMOOTHING
from llm_annotator.core.errors import ConfigError

_TRUST = "pip install 'llm-annotator-kit[trust]'"


def _errors(table: Any, gold: Sequence[Any], labels: Sequence[str]) -> np.ndarray:
    """Items x annotators error indicators (1 wrong, 0 right, NaN without label or gold)."""
    import pandas as pd

    if not hasattr(table, "columns") or not hasattr(table, "to_numpy"):
        raise ConfigError(f"table must be a pandas DataFrame of items x annotators, got {type(table).__name__}",
                          fix="pass the table annotator_labels returns (one column per annotator)")
    if len(gold) != len(table):
        raise ConfigError(f"gold has {len(gold)} values but table has {len(table)} rows",
                          fix="align gold with the rows of table, None where an item has no gold label")
    values = table.to_numpy(dtype=object)
    missing = np.asarray(pd.isna(values), dtype=bool).reshape(values.shape)
    known = set(labels)
    for (i, j), value in np.ndenumerate(values):
        if not missing[i, j] and value not in known:
            raise ConfigError(f"annotator {table.columns[j]!r} has label {value!r} on row {i}, which is not one of "
                              f"the labels {list(labels)!r}",
                              fix="make invalid answers missing (None), as annotator_labels does, or add the "
                                  "label to labels")
    g = np.array(list(gold), dtype=object)
    no_gold = np.asarray(pd.isna(g), dtype=bool)
    wrong = (values != g[:, None]).astype(float)
    wrong[missing | no_gold[:, None]] = np.nan
    return wrong


def _phi(a: np.ndarray, b: np.ndarray) -> float:
    if len(a) < 2 or a.std() == 0 or b.std() == 0:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


def error_correlation(table: Any, gold: Sequence[Any], *, labels: Sequence[str]) -> dict[str, Any]:
    """How far annotators' errors against gold go together, and the panel's effective size.

    table: items x annotators of each annotator's label, NaN or None where it has none
        (the table :func:`~llm_annotator.analysis.agreement.annotator_labels` returns).
    gold: gold labels aligned with the rows, None where an item has none.
    labels: the task's labels; a table value outside them is an error (gold may lie
        outside them: such an item is a miss for everyone).

    Returns ``annotators``; ``error_rate`` per annotator ``{rate, n}``; ``pairs``, one
    ``{a, b, phi, n, both_wrong}`` per pair; ``mean_phi`` (ρ̄) over the ``pairs_used``
    pairs whose φ is defined; ``design_effect``; ``effective_number`` (``m / deff``) and
    ``effective_number_eigen`` (the participation ratio); see the module docstring.
    """
    wrong = _errors(table, gold, labels)
    names = [str(c) for c in table.columns]
    m = len(names)
    rates = {}
    for j, name in enumerate(names):
        seen = wrong[~np.isnan(wrong[:, j]), j]
        rates[name] = {"rate": float(seen.mean()) if len(seen) else float("nan"), "n": len(seen)}
    pairs: list[dict[str, Any]] = []
    phis: list[float] = []
    matrix = np.eye(m)
    for a in range(m):
        for b in range(a + 1, m):
            both = ~np.isnan(wrong[:, a]) & ~np.isnan(wrong[:, b])
            ea, eb = wrong[both, a], wrong[both, b]
            phi = _phi(ea, eb)
            matrix[a, b] = matrix[b, a] = phi
            phis.append(phi)
            pairs.append({"a": names[a], "b": names[b], "phi": phi, "n": int(both.sum()),
                          "both_wrong": int((ea * eb).sum())})
    defined = [phi for phi in phis if not np.isnan(phi)]
    rho = float(np.mean(defined)) if defined else float("nan")
    if m == 1:
        deff, effective, eigen = 1.0, 1.0, 1.0
    elif np.isnan(rho):
        deff = effective = eigen = float("nan")
    else:
        deff = 1 + (m - 1) * min(max(rho, 0.0), 1.0)
        effective = m / deff
        eigen = float(m**2 / (matrix**2).sum()) if not np.isnan(matrix).any() else float("nan")
    return {"annotators": names, "error_rate": rates, "pairs": pairs, "mean_phi": rho,
            "pairs_used": len(defined), "design_effect": deff, "effective_number": effective,
            "effective_number_eigen": eigen}


def _distributions(rows: Any, name: str, shape: tuple[int, ...] | None) -> np.ndarray:
    try:
        x = np.asarray(rows, dtype=float)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be numbers: rows of probabilities over the labels",
                          fix="pass a float array, items x labels, NaN rows where an item has none") from None
    if x.ndim != 2 or (shape is not None and x.shape != shape):
        expected = "(items, labels)" if shape is None else f"{shape}, the shape of p"
        raise ConfigError(f"{name} must be a 2-D array of shape {expected}, got {x.shape}",
                          fix="align the rows (items) and columns (labels, same order) of p and q")
    ok = ~np.isnan(x).any(axis=1)
    filled = np.where(ok[:, None], x, 0.0)
    bad = ok & ((filled < 0).any(axis=1) | ~np.isclose(filled.sum(axis=1), 1.0, atol=1e-6))
    if bad.any():
        row = int(np.argmax(bad))
        raise ConfigError(f"{name} row {row} is not a probability distribution: {x[row].tolist()}",
                          fix="pass non-negative rows that sum to 1 (divide counts by their row total), "
                              "or NaN for an item with none")
    return x


def distribution_distance(p: Any, q: Any, *, smoothing: float = SMOOTHING) -> dict[str, Any]:
    """Mean Jensen–Shannon divergence, KL(human ‖ LLM) and total variation per item.

    p: items x labels LLM soft labels. q: the human label distributions of the same items
    and labels (shares of the raters' labels). Rows with a NaN in either are skipped.
    smoothing: ε of the LLM side of KL, ``p̃ = (1 − ε) p + ε / K``.

    Returns ``{n, skipped, jensen_shannon, kl_human_llm, total_variation, smoothing,
    base}`` (base 2: JS and KL in bits); NaN figures when no row is usable.
    """
    if not 0 < smoothing < 1:
        raise ConfigError(f"smoothing must lie strictly between 0 and 1, got {smoothing!r}",
                          fix=f"use e.g. smoothing={SMOOTHING}")
    p = _distributions(p, "p", None)
    q = _distributions(q, "q", p.shape)
    try:
        from scipy.spatial.distance import jensenshannon
        from scipy.special import rel_entr
    except ImportError:
        raise ConfigError("distribution distances need scipy, which is not installed", fix=_TRUST) from None
    ok = ~np.isnan(p).any(axis=1) & ~np.isnan(q).any(axis=1)
    out: dict[str, Any] = {"n": int(ok.sum()), "skipped": int((~ok).sum()), "jensen_shannon": float("nan"),
                           "kl_human_llm": float("nan"), "total_variation": float("nan"),
                           "smoothing": smoothing, "base": 2}
    if not ok.any():
        return out
    p, q = p[ok], q[ok]
    smoothed = (1 - smoothing) * p + smoothing / p.shape[1]
    out["jensen_shannon"] = float(np.mean(jensenshannon(p, q, base=2, axis=1) ** 2))
    out["kl_human_llm"] = float(np.mean(rel_entr(q, smoothed).sum(axis=1)) / np.log(2))
    out["total_variation"] = float(np.mean(0.5 * np.abs(p - q).sum(axis=1)))
    return out


__all__ = ["distribution_distance", "error_correlation"]

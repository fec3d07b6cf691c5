"""Soft labels and the labels table of each kind of output: categorical, ordinal, numeric, multi-label.

One output's votes (:func:`llm_annotator.core.votes.output_frame`) reduce to an item x
category matrix ``P`` (the combined soft label: the equal-weight mean over the annotators
with a valid vote of each annotator's mean over its valid votes), and for a numeric output
to the mixture moments ``(E[x], E[x²])`` (the same equal-weight mean over annotators of
each annotator's mean of ``x`` and of ``x²``). :func:`output_table` turns those numbers
into the labels table of the output's kind; the in-memory results and the streamed
labels files compute them by the same rules, here.

Per kind, beside ``p_<category>`` (categories: :attr:`OutputSpec.categories`):

* categorical: ``label`` = argmax, ``confidence``, ``margin``, ``entropy_confidence``
  (:func:`llm_annotator.analysis.aggregate.confidence`);
* ordinal: as categorical, plus ``median``, the first category k with
  ``Σ_{j≤k} p_j ≥ 0.5``, and ``spread = Σ_k p_k |k − m| / (K − 1)`` (m the median's code):
  the mean absolute deviation from the median in category steps, scaled to [0, 1]
  (0 when all mass is on one category; 1 only when it is split between the two ends);
* numeric: as categorical over the bins, plus ``mean = E[x]``,
  ``sd = sqrt(max(E[x²] − E[x]², 0))`` (the sd of the equal-weight mixture of the
  annotators' sample distributions) and ``median``, the midpoint of the first bin whose
  cumulative probability reaches 0.5;
* multi-label: ``p_<label> = P(label in the set)``, not summing to 1; ``set`` = the labels
  with ``p ≥ 0.5`` in label order, ``label = "|".join(set)``, ``expected_size = Σ_l p_l``
  (the expected size of the set), ``confidence = mean_l max(p_l, 1 − p_l)``.

Every table ends with ``n_valid``, ``n_requested``, ``valid_share`` (and, but for
multi-label, ``soft_label``, the list of ``p_<category>``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from llm_annotator.analysis import aggregate
from llm_annotator.core.outputs import OutputSpec

#: The columns each kind's table adds after the categorical ones (a multi-label table
#: has its own: ``set``, ``label``, ``expected_size``, ``confidence``).
KIND_COLUMNS: dict[str, tuple[str, ...]] = {
    "categorical": (),
    "ordinal": ("median", "spread"),
    "numeric": ("mean", "sd", "median"),
    "multi_label": ("set", "expected_size"),
}

#: Cumulative probabilities reach 0.5 up to this rounding (1/3 + 1/6 is 0.49999999999999994).
_HALF = 0.5 - 1e-9


# -- votes -> per-annotator numbers ---------------------------------------------------------
def members(value: Any, label: Any) -> list[str]:
    """A multi-label vote's labels: its ``value`` list, else its label split at ``|``."""
    if isinstance(value, list | tuple):
        return [str(v) for v in value]
    if isinstance(label, str):
        return [part for part in label.split("|") if part]
    return []


def number(value: Any, label: Any, spec: OutputSpec) -> float:
    """A numeric vote's number: its ``value``, else (a vote read from a label column) the
    midpoint of the bin its label names; NaN when it has neither."""
    if isinstance(value, int | float) and not isinstance(value, bool) and value == value:
        return float(value)
    categories = spec.categories
    if isinstance(label, str) and label in categories:
        return spec.midpoints[categories.index(label)]
    return float("nan")


def valid_votes(votes: Any) -> Any:
    """The votes that carry a value of their output (``label`` not null)."""
    return votes[votes["label"].notna()]


def _values(votes: Any) -> list[Any]:
    return votes["value"].tolist() if "value" in votes else [None] * len(votes)


def output_soft_labels(votes: Any, spec: OutputSpec, *, smoothing: float = 0.0) -> Any:
    """Soft label per (item_id, annotator) of one output's votes: columns = the output's
    categories, plus ``n_valid`` and ``n_votes`` (as
    :func:`llm_annotator.analysis.aggregate.soft_labels`). For a multi-label output the
    column of label l is the share of the annotator's valid votes whose set holds l."""
    import pandas as pd

    categories = list(spec.categories)
    if spec.kind != "multi_label":
        return aggregate.soft_labels(votes, categories, smoothing=smoothing)
    valid = valid_votes(votes)
    position = {label: k for k, label in enumerate(categories)}
    vectors = np.zeros((len(valid), len(categories)))
    for row, (value, label) in enumerate(zip(_values(valid), valid["label"].tolist(), strict=True)):
        for member in members(value, label):
            if member not in position:
                raise ValueError(f"vote label {member!r} is not in the output's label set")
            vectors[row, position[member]] = 1.0
    counts = votes.groupby(["item_id", "annotator"], sort=False).size().rename("n_votes")
    frame = pd.DataFrame(vectors, columns=categories)
    frame["item_id"] = valid["item_id"].to_numpy()
    frame["annotator"] = valid["annotator"].to_numpy()
    grouped = frame.groupby(["item_id", "annotator"], sort=False)
    sums = grouped[categories].sum().reindex(counts.index).fillna(0.0)
    n = grouped.size().reindex(counts.index).fillna(0).astype(int)
    with np.errstate(invalid="ignore", divide="ignore"):
        probs = (sums.to_numpy() + smoothing) / (n.to_numpy() + 2 * smoothing)[:, None]
    out = pd.DataFrame(probs, index=counts.index, columns=categories)
    out["n_valid"] = n.to_numpy()
    out["n_votes"] = counts.to_numpy()
    return out


def annotator_moments(votes: Any, spec: OutputSpec) -> Any:
    """Per (item_id, annotator) of a numeric output's valid votes: ``mean`` (of x),
    ``mean_sq`` (of x²) and ``n_valid``."""
    import pandas as pd

    valid = valid_votes(votes)
    x = np.array([number(v, lab, spec) for v, lab in zip(_values(valid), valid["label"].tolist(), strict=True)],
                 dtype=float)
    frame = pd.DataFrame({"item_id": valid["item_id"].to_numpy(), "annotator": valid["annotator"].to_numpy(),
                          "mean": x, "mean_sq": x * x})
    frame = frame[~np.isnan(x)]
    grouped = frame.groupby(["item_id", "annotator"], sort=False)
    out = grouped[["mean", "mean_sq"]].mean()
    out["n_valid"] = grouped.size()
    return out


def output_moments(votes: Any, spec: OutputSpec, items: Sequence[str]) -> np.ndarray:
    """Items x 2 mixture moments ``(E[x], E[x²])`` of a numeric output, in ``items``
    order: the equal-weight mean over annotators with a valid vote of each annotator's
    mean of x and of x² (NaN rows: no valid vote)."""
    per = annotator_moments(votes, spec)
    if not len(per):
        return np.full((len(items), 2), np.nan)
    combined = per[["mean", "mean_sq"]].groupby(level="item_id", sort=False).mean()
    return combined.reindex(list(items)).to_numpy(dtype=float)


# -- the tables -------------------------------------------------------------------------------
def _counts(out: Any, n_valid: np.ndarray, n_requested: int) -> None:
    out["n_valid"] = np.asarray(n_valid, dtype=int)
    out["n_requested"] = n_requested
    out["valid_share"] = out["n_valid"] / out["n_requested"] if n_requested else np.nan


def label_table(order: Sequence[str], matrix: np.ndarray, n_valid: np.ndarray, n_requested: int,
                labels: Sequence[str]) -> Any:
    """The labels table of a categorical output: item_id, p_LABEL per label, label,
    confidence, margin, entropy confidence, n_valid, n_requested, valid_share, from item x
    label probabilities (the other kinds add their columns to it)."""
    import pandas as pd

    out = pd.DataFrame({"item_id": list(order)})
    for k, label in enumerate(labels):
        out[f"p_{label}"] = matrix[:, k]
    out["label"] = aggregate.argmax_labels(matrix, list(labels))
    for name, values in aggregate.confidence(matrix).items():
        out[name] = values
    _counts(out, n_valid, n_requested)
    return out


def _categorical(spec: OutputSpec, item_ids: Sequence[str], probs: np.ndarray, n_valid: np.ndarray,
                 n_requested: int) -> Any:
    return label_table(item_ids, probs, n_valid, n_requested, spec.categories)


def median_index(probs: np.ndarray) -> np.ndarray:
    """Per row, the first category whose cumulative probability reaches 0.5 (-1: a NaN row)."""
    reached = np.nan_to_num(np.cumsum(probs, axis=1), nan=0.0) >= _HALF
    first = np.argmax(reached, axis=1)
    return np.where(reached.any(axis=1), first, -1)


def ordinal_spread(probs: np.ndarray) -> np.ndarray:
    """``2 Σ_k p_k |k − m| / (K − 1)`` per row, m the median's code (NaN for a NaN row): 0 when
    all mass is on one category, 1 when it is split in halves between the two ends (the
    largest mean distance from a median is half the scale's length)."""
    k = probs.shape[1]
    m = median_index(probs)
    if k < 2:
        return np.where(m >= 0, 0.0, np.nan)
    distance = np.abs(np.arange(k)[None, :] - m[:, None])
    spread = 2 * (np.nan_to_num(probs) * distance).sum(axis=1) / (k - 1)
    return np.where(m >= 0, spread, np.nan)


def output_table(spec: OutputSpec, item_ids: Sequence[str], probs: np.ndarray, n_valid: np.ndarray,
                 n_requested: int, moments: np.ndarray | None = None) -> Any:
    """The labels table of one output (see the module's docstring for every column).

    ``probs``: items x ``len(spec.categories)`` combined soft labels (NaN rows: no valid
    vote); ``moments`` (numeric only): items x 2 mixture moments ``(E[x], E[x²])``; without
    them a numeric output's mean and sd are those of its histogram over the bins' midpoints.
    """
    probs = np.asarray(probs, dtype=float).reshape(len(item_ids), len(spec.categories))
    if spec.kind == "multi_label":
        return _multi_label(spec, item_ids, probs, n_valid, n_requested)
    out = _categorical(spec, item_ids, probs, n_valid, n_requested)
    for name, values in kind_columns(spec, probs, moments).items():
        out[name] = values
    out["soft_label"] = [list(row) for row in probs]
    return out


def kind_columns(spec: OutputSpec, probs: np.ndarray, moments: np.ndarray | None = None) -> dict[str, Any]:
    """The columns an ordinal (median, spread) or numeric (mean, sd, median) output's table
    adds to the categorical ones, from its item x category ``probs`` (and ``moments``)."""
    categories = list(spec.categories)
    position = median_index(probs)
    if spec.kind == "ordinal":
        return {"median": [categories[m] if m >= 0 else None for m in position], "spread": ordinal_spread(probs)}
    if spec.kind != "numeric":
        return {}
    mids = np.asarray(spec.midpoints, dtype=float)
    if moments is None:
        with np.errstate(invalid="ignore"):
            moments = np.stack([probs @ mids, probs @ (mids * mids)], axis=1)
    moments = np.asarray(moments, dtype=float).reshape(len(probs), 2)
    with np.errstate(invalid="ignore"):
        sd = np.sqrt(np.maximum(moments[:, 1] - moments[:, 0] ** 2, 0.0))
    return {"mean": moments[:, 0], "sd": np.where(np.isnan(moments[:, 0]), np.nan, sd),
            "median": np.where(position >= 0, mids[np.maximum(position, 0)], np.nan)}


def _multi_label(spec: OutputSpec, item_ids: Sequence[str], probs: np.ndarray, n_valid: np.ndarray,
                 n_requested: int) -> Any:
    import pandas as pd

    labels = list(spec.categories)
    out = pd.DataFrame({"item_id": list(item_ids)})
    for k, label in enumerate(labels):
        out[f"p_{label}"] = probs[:, k]
    missing = np.isnan(probs).all(axis=1) if labels else np.ones(len(item_ids), dtype=bool)
    sets = [None if gone else [x for x, p in zip(labels, row, strict=True) if p >= _HALF]
            for gone, row in zip(missing, probs, strict=True)]
    out["set"] = pd.Series(sets, dtype=object)
    out["label"] = [None if s is None else "|".join(s) for s in sets]
    with np.errstate(invalid="ignore"):
        out["expected_size"] = np.where(missing, np.nan, np.nansum(probs, axis=1))
        out["confidence"] = (np.maximum(probs, 1 - probs).mean(axis=1) if labels
                             else np.full(len(item_ids), np.nan))
    _counts(out, n_valid, n_requested)
    return out


# -- the report -------------------------------------------------------------------------------
def format_output_report(figures: dict[str, Any]) -> str:
    """A figures dict of any kind (``figures["kind"]``) as plain text: the categorical
    report (:func:`llm_annotator.analysis.agreement.format_report`), with an ordinal
    output's MAE, r and CCC against gold; a numeric output's interval alpha and errors
    against gold; a multi-label output's per-label alpha, Jaccard and set scores."""
    from llm_annotator.analysis.agreement import format_report

    kind = figures.get("kind", "categorical")
    gold = figures.get("gold")
    head = f"output: {figures['output']} ({kind})\n" if "output" in figures else ""
    if kind in ("categorical", "ordinal"):
        text = head + format_report(figures, gold)
        if kind == "ordinal" and "vs_gold" in figures:
            text += "\n\n" + _gold_table(figures, ("mae", "pearson", "ccc"), f"over category codes, against gold ({gold})")
        return text
    ci = figures.get("ci", {})
    names = figures["annotators"]
    lines = [head + f"items: {figures['n_items']}   annotators: {', '.join(names)}"]
    if len(names) < 2:
        if "vs_gold" not in figures:
            lines.append("agreement needs two annotators or more: annotate with a second model (-m), or compare "
                         "with reference values (--gold)")
    elif kind == "numeric":
        lines.append(f"Krippendorff's alpha (interval): {_num(figures['krippendorff_alpha'], ci.get('krippendorff_alpha'))}")
    else:
        lines.append(f"mean pairwise Jaccard: {_num(figures['jaccard'], ci.get('jaccard'))}")
        lines.append(f"Krippendorff's alpha per label (nominal), mean {_num(figures['mean_alpha'], ci.get('mean_alpha'))}:")
        bounds = ci.get("krippendorff_alpha", {})
        lines += [f"  {label}: {_num(value, bounds.get(label))}" for label, value in figures["krippendorff_alpha"].items()]
    figure = "mean_sd" if kind == "numeric" else "jaccard"
    consistency = {k: v for k, v in figures.get("self_consistency", {}).items() if v.get("samples", 1) > 1}
    if consistency:
        what = "alpha, mean sd" if kind == "numeric" else "mean Jaccard between samples"
        lines += ["", f"self-consistency over samples ({what}):"]
        lines += [f"  {name}: " + ", ".join(_num(v[key]) for key in ("alpha", figure) if key in v)
                  for name, v in consistency.items()]
    if "vs_gold" in figures:
        keys = ("mae", "rmse", "pearson", "ccc") if kind == "numeric" else \
            ("example_f1", "jaccard", "micro_f1", "macro_f1", "hamming_loss")
        lines += ["", _gold_table(figures, keys, f"against gold ({gold})")]
    return "\n".join(lines)


def _num(value: Any, bounds: Any = None) -> str:
    text = "n/a" if value is None or (isinstance(value, float) and np.isnan(value)) else f"{value:.4f}"
    if isinstance(bounds, dict) and bounds.get("low") is not None and not np.isnan(bounds["low"]):
        text += f" [{bounds['low']:.4f}, {bounds['high']:.4f}]"
    return text


def _gold_table(figures: dict[str, Any], keys: Sequence[str], title: str) -> str:
    named = max([28, *(len(name) for name in figures["vs_gold"])])
    lines = [f"{title}:", f"  {'annotator':{named}} {'n':>6} " + " ".join(f"{k:>12}" for k in keys)]
    for name, scores in figures["vs_gold"].items():
        lines.append(f"  {name:{named}} {scores.get('n', 0):>6} " + " ".join(f"{_num(scores.get(k)):>12}" for k in keys))
    return "\n".join(lines)


__all__ = ["KIND_COLUMNS", "annotator_moments", "format_output_report", "kind_columns", "label_table", "median_index", "members", "number", "ordinal_spread",
           "output_moments", "output_soft_labels", "output_table", "valid_votes"]

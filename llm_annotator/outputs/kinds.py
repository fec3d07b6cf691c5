"""Results of ordinal, numeric and multi-label outputs: their labels tables and agreement.

The formulas are those of :mod:`llm_annotator.analysis.kinds` (tables) and
:mod:`llm_annotator.analysis.kind_agreement` (agreement); docs/agreement.md lists them.
Each result holds one output's votes (:meth:`AnnotationResult.output`); the consensus is
the models' (reviewers' ``human:`` votes are left out of it), the agreement covers every
annotator.
"""

from __future__ import annotations

import json
import re
from typing import Any

import numpy as np

from llm_annotator.analysis.kind_agreement import (
    bootstrap_weights,
    interval,
    multi_label_agreement,
    numeric_agreement,
    regression_scores,
    sample_consistency,
)
from llm_annotator.analysis.kinds import (
    annotator_moments,
    kind_columns,
    members,
    output_moments,
    output_soft_labels,
    output_table,
    valid_votes,
)
from llm_annotator.core.errors import ConfigError
from llm_annotator.core.outputs import OutputSpec
from llm_annotator.core.votes import output_frame
from llm_annotator.outputs.result import AnnotationResult
from llm_annotator.store.reviews import is_human


class _KindResult(AnnotationResult):
    """What the three kinds share: the output's spec, its votes with values, the models' votes."""

    @property
    def spec(self) -> OutputSpec:
        return self.task.primary

    def output_votes(self) -> Any:
        """The votes with this output's ``value`` column (a whole task's votes are read as
        its primary output's, :func:`llm_annotator.core.votes.output_frame`)."""
        if "value" in self.votes:
            return self.votes
        return output_frame(self.votes, self.spec.name, self.spec.name)

    def model_votes(self) -> Any:
        votes = self.output_votes()
        people = np.array([is_human(a) for a in votes["annotator"].tolist()], dtype=bool)
        return votes[~people] if people.any() else votes

    def _models(self) -> list[str]:
        return [a for a in self.annotators if not is_human(a)]

    def _figures(self, out: dict[str, Any], gold: str | None) -> dict[str, Any]:
        return {"kind": self.spec.kind, "output": self.spec.name, **({"gold": gold} if gold else {}), **out}


class OrdinalResult(_KindResult):
    """An ordinal output's result: the categorical figures with ordered categories."""

    def labels(self, method: str = "mean", *, smoothing: float = 0.0) -> Any:
        """The categorical labels table (any ``method``) plus ``median`` and ``spread``
        of the consensus distribution (:func:`llm_annotator.analysis.kinds.kind_columns`)."""
        table = super().labels(method, smoothing=smoothing)
        probs = table[[f"p_{x}" for x in self.labels_order]].to_numpy(dtype=float)
        for name, values in kind_columns(self.spec, probs).items():
            table[name] = values
        return table

    def agreement(self, gold: str | None = None, *, level: str = "ordinal", bootstrap: int = 1000,
                  seed: int = 0) -> dict[str, Any]:
        """The categorical figures at ``level`` (ordinal alpha by default); against gold
        also MAE, Pearson's r and CCC over the category codes 0..K-1 of every annotator
        and of the consensus (a gold value outside the categories is missing for them)."""
        out = super().agreement(gold, level=level, bootstrap=bootstrap, seed=seed)
        if gold is not None:
            from llm_annotator.analysis.agreement import annotator_labels

            code = {label: float(k) for k, label in enumerate(self.labels_order)}

            def codes(values: Any) -> np.ndarray:
                return np.array([code.get(v, np.nan) if isinstance(v, str) else np.nan for v in values])

            order = self.items["item_id"].tolist()
            table = annotator_labels(self.votes, self.task.labels, order, annotators=self.annotators)
            truth = codes(self.gold_labels(gold))
            predictions = {str(name): codes(table[name].tolist()) for name in table.columns}
            others = self.without([gold]) if gold in self.annotators else self
            predictions["consensus"] = codes(others.labels()["label"].tolist())
            weights = bootstrap_weights(len(order), bootstrap, seed) if bootstrap else None
            for name, pred in predictions.items():
                scores = regression_scores(truth, pred)
                out["vs_gold"][name].update({k: scores[k] for k in ("mae", "pearson", "ccc")})
                if weights is not None:
                    rounds = regression_scores(truth, pred, weights)
                    out["ci"].setdefault("vs_gold", {}).setdefault(name, {}).update(
                        {k: interval(rounds[k]) for k in ("mae", "pearson", "ccc")})
        return self._figures({**out, "level": level}, gold)


class NumericResult(_KindResult):
    """A numeric output's result: a histogram over the bins, and the numbers themselves."""

    def labels(self, method: str = "mean", *, smoothing: float = 0.0) -> Any:
        """The labels table over the bins (any ``method``) plus the models' mixture
        ``mean``, ``sd`` and the histogram's ``median`` (:mod:`llm_annotator.analysis.kinds`)."""
        table = super().labels(method, smoothing=smoothing)
        probs = table[[f"p_{x}" for x in self.labels_order]].to_numpy(dtype=float)
        moments = output_moments(self.model_votes(), self.spec, self.items["item_id"].tolist())
        for name, values in kind_columns(self.spec, probs, moments).items():
            table[name] = values
        return table

    def values(self) -> Any:
        """Items x annotators: each annotator's value on an item, the mean of its valid samples."""
        per = annotator_moments(self.output_votes(), self.spec)["mean"].unstack("annotator")
        return per.reindex(index=self.items["item_id"].tolist(), columns=self.annotators)

    def gold_values(self, column: str) -> np.ndarray:
        """An input column as gold numbers: a cell that is not a finite number is missing."""
        out = []
        for value in self.gold_labels(column):
            try:
                number = float(value) if value is not None else np.nan
            except ValueError:
                number = np.nan
            out.append(number if np.isfinite(number) else np.nan)
        return np.array(out, dtype=float)

    def agreement(self, gold: str | None = None, *, level: str = "interval", bootstrap: int = 1000,
                  seed: int = 0) -> dict[str, Any]:
        """Interval alpha over the annotators' values, pairwise CCC, self-consistency over
        samples, and with ``gold`` MAE, RMSE, Pearson's r and CCC of every annotator and of
        the consensus ``mean``; ``ci``: percentile-bootstrap intervals over items."""
        if level != "interval":
            raise ConfigError(f"a numeric output's agreement is at level 'interval', not {level!r}",
                              fix="leave the level out (or use 'interval')")
        values = self.values()
        truth = consensus = None
        if gold is not None:
            truth = self.gold_values(gold)
            others = self.without([gold]) if gold in self.annotators else self
            consensus = others.labels()["mean"].to_numpy(dtype=float)
        out = numeric_agreement(values, gold=truth, consensus=consensus, bootstrap=bootstrap, seed=seed)
        out["self_consistency"] = sample_consistency(self._samples())
        return self._figures({**out, "level": level}, gold)

    def _samples(self) -> dict[str, np.ndarray]:
        """Per annotator, its samples x items matrix of values (NaN: no valid value)."""
        from llm_annotator.analysis.kinds import number

        votes = valid_votes(self.output_votes())
        order = self.items["item_id"].tolist()
        out = {}
        for name in self.annotators:
            mine = votes[votes["annotator"] == name]
            x = [number(v, lab, self.spec) for v, lab in zip(mine["value"], mine["label"], strict=True)]
            frame = mine.assign(x=np.array(x, dtype=float))
            table = frame.pivot_table(index="sample_index", columns="item_id", values="x", aggfunc="first")
            out[name] = table.reindex(columns=order).to_numpy(dtype=float)
        return out


class MultiLabelResult(_KindResult):
    """A multi-label output's result: per-label probabilities, sets, set agreement."""

    def soft_labels(self, *, by_annotator: bool = False, smoothing: float = 0.0) -> Any:
        """Item x label ``P(label in the set)`` (not summing to 1): per (item, annotator)
        the share of its valid votes whose set holds the label, combined over the models
        with equal weight; ``smoothing`` α: ``(count + α) / (n + 2α)``."""
        from llm_annotator.analysis.aggregate import combine

        per = output_soft_labels(self.output_votes(), self.spec, smoothing=smoothing)
        if by_annotator:
            return per
        models = per[~np.array([is_human(a) for a in per.index.get_level_values("annotator")], dtype=bool)]
        return combine(models, self.labels_order, self.items["item_id"].tolist())

    def labels(self, method: str = "mean", *, smoothing: float = 0.0) -> Any:
        """Per item: ``p_<label>``, ``set`` (the labels with p ≥ 0.5), ``label`` (the set
        joined by ``|``), ``expected_size``, ``confidence`` and the counts."""
        if method != "mean":
            raise ConfigError(f"consensus method {method!r} is for one label per item; a multi-label output's "
                              "consensus is the mean (each label whose probability is at least 0.5)",
                              fix="use method='mean' (--method mean)")
        order = self.items["item_id"].tolist()
        votes = self.model_votes()
        n_valid = valid_votes(votes).groupby("item_id").size().reindex(order).fillna(0).astype(int).to_numpy()
        probs = self.soft_labels(smoothing=smoothing).to_numpy(dtype=float)
        return output_table(self.spec, order, probs, n_valid, self.samples * len(self._models()))

    def dawid_skene(self, *, per_sample: bool = False, n_iter: int = 100, tol: float = 1e-5) -> Any:
        raise ConfigError("Dawid-Skene is for one label per item; a multi-label output's sets have no confusion "
                          "matrix to fit", fix="use labels(method='mean'), or a categorical output")

    def sets(self) -> np.ndarray:
        """Annotators x items x labels of 0/1: a label is in an annotator's set when at
        least half its valid samples hold it (NaN where it has no valid vote)."""
        per = self.soft_labels(by_annotator=True)
        order = self.items["item_id"].tolist()
        out = np.full((len(self.annotators), len(order), len(self.labels_order)), np.nan)
        for a, name in enumerate(self.annotators):
            mine = per[(per.index.get_level_values("annotator") == name) & (per["n_valid"] > 0)]
            probs = mine.droplevel("annotator")[self.labels_order].reindex(order).to_numpy(dtype=float)
            out[a] = np.where(np.isnan(probs), np.nan, (probs >= 0.5 - 1e-9).astype(float))
        return out

    def gold_sets(self, column: str) -> np.ndarray:
        """An input column as gold sets (items x labels of 0/1, NaN rows missing): a list,
        or text of labels separated by ',', ';' or '|' (or a JSON list), matched to the
        labels and their aliases ignoring case, as answers are; an empty cell is missing, an empty list the empty set."""
        self.gold_labels(column)  # checks the column
        index = {label.casefold(): k for k, label in enumerate(self.labels_order)}
        index.update({alias.casefold(): self.labels_order.index(target) for alias, target in self.spec.aliases.items()
                      if alias.casefold() not in index and target in self.labels_order})
        out = np.full((len(self.items), len(self.labels_order)), np.nan)
        for row, (item_id, cell) in enumerate(zip(self.items["item_id"], self.items[column], strict=True)):
            parts = _gold_members(cell)
            if parts is None:
                continue
            out[row] = 0.0
            for part in parts:
                if part.casefold() not in index:
                    raise ConfigError(f"gold column {column!r}, row {row + 1} (item {item_id}): {part!r} is not a "
                                      f"label of output {self.spec.name!r}",
                                      fix=f"use labels among {', '.join(self.labels_order)}, separated by ',', ';' "
                                          "or '|'")
                out[row, index[part.casefold()]] = 1.0
        return out

    def agreement(self, gold: str | None = None, *, level: str = "nominal", bootstrap: int = 1000,
                  seed: int = 0) -> dict[str, Any]:
        """Per-label nominal alpha, mean pairwise Jaccard, self-consistency (the mean Jaccard
        between an annotator's samples), and with ``gold`` example-based F1, Jaccard,
        micro- and macro-F1 and Hamming loss of every annotator and of the consensus set."""
        if level != "nominal":
            raise ConfigError(f"a multi-label output's agreement is per label at level 'nominal', not {level!r}",
                              fix="leave the level out (or use 'nominal')")
        truth = consensus = None
        if gold is not None:
            truth = self.gold_sets(gold)
            others = self.without([gold]) if gold in self.annotators else self
            probs = others.soft_labels().to_numpy(dtype=float)
            consensus = np.where(np.isnan(probs), np.nan, (probs >= 0.5 - 1e-9).astype(float))
        out = multi_label_agreement(self.sets(), self.annotators, self.labels_order, gold=truth,
                                    consensus=consensus, bootstrap=bootstrap, seed=seed)
        out["self_consistency"] = self._consistency()
        return self._figures({**out, "level": level}, gold)

    def _consistency(self) -> dict[str, dict[str, float]]:
        from llm_annotator.analysis.kind_agreement import item_jaccard

        votes = valid_votes(self.output_votes())
        order = {item: i for i, item in enumerate(self.items["item_id"].tolist())}
        position = {label: k for k, label in enumerate(self.labels_order)}
        out = {}
        for name in self.annotators:
            mine = votes[votes["annotator"] == name]
            samples = sorted(set(mine["sample_index"].tolist()))
            sets = np.full((len(samples), len(order), len(position)), np.nan)
            for s, item, value, label in zip(mine["sample_index"], mine["item_id"], mine["value"], mine["label"],
                                             strict=True):
                row = sets[samples.index(s), order[item]]
                row[:] = 0.0
                row[[position[m] for m in members(value, label)]] = 1.0
            jaccard = item_jaccard(sets) if len(samples) > 1 else np.array([])
            kept = jaccard[~np.isnan(jaccard)]
            out[str(name)] = {"samples": len(samples), "jaccard": float(kept.mean()) if len(kept) else float("nan")}
        return out


def _gold_members(cell: Any) -> list[str] | None:
    """A gold cell's labels (None: missing)."""
    if cell is None or (isinstance(cell, float) and np.isnan(cell)):
        return None
    if isinstance(cell, list | tuple | np.ndarray):
        return [str(v).strip() for v in cell if str(v).strip()]
    text = str(cell).strip()
    if not text:
        return None
    if text.startswith("["):
        try:
            parsed = json.loads(text)
        except ValueError:
            parsed = None
        if isinstance(parsed, list):
            return [str(v).strip() for v in parsed if str(v).strip()]
    return [part.strip() for part in re.split(r"[,;|]", text) if part.strip()]


RESULT_KINDS: dict[str, type[AnnotationResult]] = {"ordinal": OrdinalResult, "numeric": NumericResult,
                                                   "multi_label": MultiLabelResult}

__all__ = ["RESULT_KINDS", "MultiLabelResult", "NumericResult", "OrdinalResult"]

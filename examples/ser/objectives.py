"""What the head learns from a table's targets: its outputs, loss, predictions, scores.

One objective per kind of target (:data:`OBJECTIVES`), chosen by the table's ``kind``:

- ``categorical``: K logits; ``--loss soft`` (soft cross-entropy against the soft label)
  or ``hard`` (cross-entropy on its argmax); predictions are softmax probabilities;
  UA, WA, macro-F1, weighted-F1, KL; the best epoch by validation UA.
- ``ordinal``: as categorical over the ordered categories, plus the MAE over category
  codes (``metrics.ordinal_mae``).
- ``numeric``: one linear output; loss ``mse``, the mean squared error against the target
  normalised to [0, 1] by the output's range, ``(t − lo) / (hi − lo)``; predictions mapped
  back to the scale, ``lo + (hi − lo) z`` (not clipped); CCC, MAE, RMSE, Pearson's r;
  the best epoch by validation CCC.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from .data import Table
from .metrics import (
    class_weights,
    hard_cross_entropy,
    ordinal_mae,
    regression_scores,
    scores,
    soft_cross_entropy,
)


@dataclass(frozen=True)
class Classification:
    """Soft or hard cross-entropy over the table's categories."""

    labels: list[str]
    loss_name: str = "soft"
    losses: ClassVar[tuple[str, ...]] = ("soft", "hard")
    key: ClassVar[str] = "ua"  # the validation score that picks the best epoch
    reported: ClassVar[tuple[str, ...]] = ("ua", "wa", "macro_f1")

    @classmethod
    def of(cls, table: Table, loss: str) -> Classification:
        return cls(table.labels, loss)

    @property
    def n_outputs(self) -> int:
        return len(self.labels)

    def loss(self, outputs: Any, targets: Any, weights: Any = None) -> Any:
        return (soft_cross_entropy if self.loss_name == "soft" else hard_cross_entropy)(outputs, targets, weights)

    def predict(self, outputs: Any) -> Any:
        import torch

        return torch.softmax(outputs, dim=-1)

    def weights(self, targets: np.ndarray) -> np.ndarray:
        return class_weights(targets)

    def scores(self, targets: np.ndarray, predictions: np.ndarray) -> dict[str, Any]:
        return scores(targets, predictions, self.labels)


@dataclass(frozen=True)
class Ordinal(Classification):
    """Classification over ordered categories; also scored by the distance between codes."""

    reported: ClassVar[tuple[str, ...]] = ("ua", "wa", "macro_f1", "mae")

    def scores(self, targets: np.ndarray, predictions: np.ndarray) -> dict[str, Any]:
        return {**super().scores(targets, predictions), "mae": ordinal_mae(targets, predictions)}


@dataclass(frozen=True)
class Regression:
    """One output regressed on the target scaled to [0, 1] by ``range``, mean squared error."""

    labels: list[str]
    range: tuple[float, float]
    loss_name: str = "mse"
    losses: ClassVar[tuple[str, ...]] = ("mse",)
    key: ClassVar[str] = "ccc"
    reported: ClassVar[tuple[str, ...]] = ("ccc", "mae", "pearson")

    n_outputs: ClassVar[int] = 1

    @classmethod
    def of(cls, table: Table, loss: str) -> Regression:
        if table.range is None:
            raise SystemExit(f"output {table.labels[0]!r} is numeric but has no range to scale its targets by")
        return cls(table.labels, table.range, loss)

    def loss(self, outputs: Any, targets: Any, weights: Any = None) -> Any:
        low, high = self.range
        return ((outputs - (targets - low) / (high - low)) ** 2).mean()

    def predict(self, outputs: Any) -> Any:
        low, high = self.range
        return low + (high - low) * outputs

    def weights(self, targets: np.ndarray) -> np.ndarray:
        raise SystemExit("--class-weights weighs classes: it is for categorical and ordinal outputs, "
                         "not a numeric one; fix: leave it out")

    def scores(self, targets: np.ndarray, predictions: np.ndarray) -> dict[str, Any]:
        return regression_scores(targets, predictions)


Objective = Classification | Regression

#: The objective of each kind of table.
OBJECTIVES: dict[str, type[Classification] | type[Regression]] = {
    "categorical": Classification, "ordinal": Ordinal, "numeric": Regression}


def objective_for(table: Table, loss: str | None = None) -> Objective:
    """The objective of ``table``'s kind, with ``loss`` (default: the kind's first loss)."""
    kind = OBJECTIVES[table.kind]
    name = loss or kind.losses[0]
    if name not in kind.losses:
        what = f"output {table.labels[0]!r}" if table.kind == "numeric" else "this table"
        raise SystemExit(f"--loss {name}: {what} is {table.kind}, which trains with --loss "
                         f"{' or '.join(kind.losses)}; fix: give one of those or leave --loss out")
    return kind.of(table, name)

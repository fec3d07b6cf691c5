"""The outputs of a task: what one answer holds, each with its kind and its values.

A task declares named outputs in its front matter; each says where in the JSON answer
it lives (``path``, the name by default) and what it may hold::

    outputs:
      emotion:  {kind: categorical, path: elements.emotion, labels: [neutral, joy, ...]}
      loudness: {kind: ordinal, path: elements.loudness, labels: [low, medium, high]}
      arousal:  {kind: numeric, range: [1, 5], integer: true}
      emotions: {kind: multi_label, labels: [joy, sadness, anger]}

The first output is the task's primary one (its ``labels`` and ``output`` are the
primary output's). Every output has **categories**, the classes its soft labels are
over: the labels of a categorical, ordinal or multi-label output, and the bins of a
numeric one (each integer of an integer scale of at most :data:`MAX_INTEGER_BINS`
values, else ``bins`` equal-width bins named ``lo..hi``). A task without ``outputs``
has one output, named after the last part of its ``output`` field (``label`` for a
bare answer), of the kind its ``scale`` says.
"""

from __future__ import annotations

import math
from itertools import pairwise
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Kind = Literal["categorical", "ordinal", "numeric", "multi_label"]
KINDS: tuple[str, ...] = ("categorical", "ordinal", "numeric", "multi_label")

#: An integer scale with at most this many values has one bin per value.
MAX_INTEGER_BINS = 21


def label_tuple(value: Any) -> Any:
    """A declared label set as a tuple of stripped texts (None: empty); one string is refused."""
    if value is None:
        return ()
    if isinstance(value, str):
        raise ValueError("labels must be a list, not one string")
    return tuple(str(v).strip() if v is not None else "" for v in value)


class OutputSpec(BaseModel):
    """One named output of a task (see the module's docstring)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    kind: Kind = "categorical"
    path: str | None = None
    labels: tuple[str, ...] = ()
    aliases: dict[str, str] = Field(default_factory=dict)
    range: tuple[float, float] | None = None
    integer: bool = False
    bins: int | None = None
    description: str = ""

    @field_validator("labels", mode="before")
    @classmethod
    def _labels(cls, value: Any) -> Any:
        return label_tuple(value)

    @field_validator("bins", mode="before")
    @classmethod
    def _bins(cls, value: Any) -> Any:
        if isinstance(value, bool) or (value is not None and not isinstance(value, int)):
            raise ValueError("bins must be a whole number")
        return value

    @model_validator(mode="after")
    def _check(self) -> OutputSpec:
        if not self.name or not all(c.isalnum() or c in "_-" for c in self.name):
            raise ValueError(f"output name {self.name!r} must be letters, digits, '_' or '-'")
        if self.kind == "numeric":
            if self.range is None:
                raise ValueError(f"numeric output {self.name!r} needs a range: [low, high]")
            low, high = self.range
            if not (math.isfinite(low) and math.isfinite(high)) or low >= high:
                raise ValueError(f"output {self.name!r}: range must be two finite numbers, low < high")
            if self.integer and (low != int(low) or high != int(high)):
                raise ValueError(f"output {self.name!r}: an integer scale needs integer ends")
            if self.labels or self.aliases:
                raise ValueError(f"numeric output {self.name!r} takes a range, not labels")
            if not math.isfinite(high - low):
                raise ValueError(f"output {self.name!r}: the range is too wide to divide into bins")
            if self.bins is not None and not 1 <= self.bins <= MAX_BINS:
                raise ValueError(f"output {self.name!r}: bins must be between 1 and {MAX_BINS}")
        else:
            if self.range is not None or self.integer or self.bins is not None:
                raise ValueError(f"output {self.name!r}: range, integer and bins are for numeric outputs")
            seen: set[str] = set()
            for label in self.labels:
                if not label:
                    raise ValueError(f"output {self.name!r}: the label set contains an empty label")
                if label.casefold() in seen:
                    raise ValueError(f"output {self.name!r}: the label set lists {label!r} twice")
                seen.add(label.casefold())
            if self.kind == "multi_label":
                for label in (*self.labels, *self.aliases):
                    if any(c in label for c in _SEPARATORS):
                        raise ValueError(f"output {self.name!r}: the multi-label label {label!r} holds one of "
                                         f"{' '.join(_SEPARATORS)}, which separate the labels of a set")
            for alias, target in self.aliases.items():
                if self.labels and target not in self.labels:
                    raise ValueError(f"output {self.name!r}: alias {alias!r} points to {target!r}, "
                                     "which is not a label")
        return self

    @property
    def field(self) -> str:
        """Where the output lives in the JSON answer."""
        return self.path or self.name

    @property
    def scale(self) -> str:
        """Krippendorff's level of measurement of the output."""
        return {"ordinal": "ordinal", "numeric": "interval"}.get(self.kind, "nominal")

    @property
    def edges(self) -> tuple[float, ...]:
        """The bin edges of a numeric output (empty for the other kinds)."""
        if self.kind != "numeric" or self.range is None:
            return ()
        low, high = self.range
        if self._per_value:
            return tuple(low - 0.5 + i for i in range(int(high - low) + 2))
        n = self.bins or 10
        return tuple(low + (high - low) * i / n for i in range(n + 1))

    @property
    def categories(self) -> tuple[str, ...]:
        """The classes soft labels are over: the labels, or a numeric output's bins."""
        if self.kind != "numeric":
            return self.labels
        low = (self.range or (0.0, 1.0))[0]
        edges = self.edges
        if self._per_value:
            return tuple(str(int(low) + i) for i in range(len(edges) - 1))
        for digits in range(4, 18):  # as few significant digits as keep the bins' names apart
            names = tuple(f"{a:.{digits}g}..{b:.{digits}g}" for a, b in pairwise(edges))
            if len(set(names)) == len(names):
                return names
        return tuple(f"{a!r}..{b!r}" for a, b in pairwise(edges))

    @property
    def midpoints(self) -> tuple[float, ...]:
        """Each bin's value for a numeric output: the integer, or the bin's middle."""
        edges = self.edges
        return tuple((a + b) / 2 for a, b in pairwise(edges))

    def bin_of(self, value: float) -> str:
        """The category (bin) of a number on this output's scale: bins are [lo, hi), the top
        end in the last. The bin's index is computed from the value's position on the scale
        (with a tolerance of 1e-9 bins), so a round answer on an edge (0.6 of bins 0.4..0.6,
        0.6..0.8) is in the bin it starts, whatever the edges' floating-point sums."""
        names = self.categories
        low, high = self.range or (0.0, 1.0)
        if self._per_value:
            index = round(value - low)
        else:
            index = math.floor((value - low) / (high - low) * len(names) + 1e-9)
        return names[min(max(index, 0), len(names) - 1)]

    @property
    def _per_value(self) -> bool:
        low, high = self.range or (0.0, 1.0)
        return self.integer and high - low + 1 <= MAX_INTEGER_BINS and self.bins is None


#: The most bins a numeric output may declare.
MAX_BINS = 1000
#: What separates the labels of a set written as text.
_SEPARATORS = (",", ";", "|")


__all__ = ["KINDS", "MAX_BINS", "MAX_INTEGER_BINS", "Kind", "OutputSpec", "label_tuple"]

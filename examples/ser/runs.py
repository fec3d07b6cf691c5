"""Targets from one output of an llm_annotator run directory.

    python -m examples.ser.train --run RUN_DIR --output NAME --audio-dir D --speaker-column speaker ...

The run's items are the clips: an input column names each clip's file (``--file-column``),
or ``--file-template`` builds the name from the item's columns (MELD's
``dia{Dialogue_ID}_utt{Utterance_ID}.wav``), relative to ``--audio-dir``. Its votes give
the targets of the output chosen, by the output's kind:

- ``categorical`` and ``ordinal``: the soft label over the output's categories (the
  models' votes, each annotator's share of valid samples, annotators weighted equally:
  ``result.output(name).soft_labels()``), in the output's order (low to high for ordinal).
- ``numeric``: one number per clip, :func:`numeric_targets`.
- ``multi_label``: refused; the trainer learns one answer per clip.

Clips without a valid vote for the output are left out.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from .data import Table

#: Kinds of output the trainer learns, and what it learns for each.
TRAINABLE = {"categorical": "classification", "ordinal": "classification", "numeric": "regression"}


def numeric_targets(votes: Any) -> Any:
    """Each item's target on a numeric output: ``t_i = (1/|A_i|) Σ_a mean(v_{i,a,s})``.

    The mean of each annotator's valid values (``value`` of the votes with a ``label``,
    over its samples s), then the mean over the annotators ``A_i`` with at least one valid
    value, each weighing the same whatever its number of valid samples. Returns a Series
    indexed by ``item_id``; items with no valid value are absent.
    """
    valid = votes[votes["label"].notna() & votes["value"].notna()]
    per_annotator = valid.assign(value=valid["value"].astype(float)).groupby(["item_id", "annotator"])["value"].mean()
    return per_annotator.groupby(level="item_id").mean()


def file_names(items: Any, template: str) -> list[str]:
    """Each item's file name: ``template`` with every ``{COLUMN}`` replaced by the item's value."""
    fields = re.findall(r"{([^{}]*)}", template)
    unknown = [f for f in fields if f not in items.columns or f == "item_id"]
    if not fields or unknown:
        raise SystemExit(f"--file-template {template!r}: {'no {COLUMN} in it' if not fields else 'no column '}"
                         f"{', '.join(map(repr, unknown))}; the run's items have {', '.join(map(str, items.columns[1:]))}")
    names = []
    for row in items.to_dict(orient="records"):
        def value(match: re.Match[str], row: dict[str, Any] = row) -> str:
            return str(row[match.group(1)])

        names.append(re.sub(r"{([^{}]*)}", value, template))
    return names


def read_run(run_dir: str | Path, audio_dir: str | Path, *, output: str | None = None, file_column: str = "file",
             file_template: str | None = None, speaker_column: str | None = None,
             split_column: str | None = None) -> Table:
    """The table of one output of a run: the run's clips with that output's targets.

    ``output=None`` takes the run's primary output. The targets are the models' (reviewers'
    ``human:`` votes are left out, as in the run's own soft labels).
    """
    from llm_annotator.core.errors import AnnotatorError
    from llm_annotator.outputs.result import AnnotationResult

    try:
        result = AnnotationResult.load(run_dir)
    except AnnotatorError as exc:
        raise SystemExit(str(exc)) from None
    names = result.output_names
    name = names[0] if output is None else output
    if name not in names:
        raise SystemExit(f"{run_dir}: the run has no output {name!r}; its outputs are {', '.join(names)} "
                         "(choose one with --output)")
    spec = result.task.output_spec(name)
    if spec.kind not in TRAINABLE:
        trainable = [n for n in names if result.task.output_spec(n).kind in TRAINABLE]
        raise SystemExit(f"{run_dir}: output {name!r} is {spec.kind}, which train does not learn (one answer per "
                         f"clip); fix: choose a categorical, ordinal or numeric output with --output "
                         f"({', '.join(trainable) or 'this run has none'})")
    items = result.items
    for column in (None if file_template else file_column, speaker_column, split_column):
        if column and column not in items.columns:
            raise SystemExit(f"{run_dir}: the run's items have no column {column!r}; they have "
                             f"{', '.join(map(str, items.columns[1:]))}")
    chosen = result.models_only().output(name)
    order = items["item_id"].tolist()
    if spec.kind == "numeric":
        assert spec.range is not None  # a numeric output always has one
        values = numeric_targets(chosen.votes).reindex(order).to_numpy(dtype=float)
        keep = np.isfinite(values)
        targets, labels, scale = values[keep, None], [name], (float(spec.range[0]), float(spec.range[1]))
    else:
        labels = list(chosen.task.labels)
        probs = np.nan_to_num(chosen.soft_labels().reindex(order)[labels].to_numpy(dtype=float))
        sums = probs.sum(axis=1)
        keep = sums > 0
        targets, scale = probs[keep] / sums[keep, None], None
    if not keep.any():
        raise SystemExit(f"{run_dir}: no item has a valid vote for output {name!r}")
    kept = items[keep]
    names = file_names(kept, file_template) if file_template else [str(f) for f in kept[file_column]]
    return Table(files=[Path(audio_dir) / f for f in names], targets=targets, labels=labels,
                 speakers=kept[speaker_column].astype(str).tolist() if speaker_column else None,
                 parts=kept[split_column].astype(str).tolist() if split_column else None,
                 kind=spec.kind, range=scale, output=name)

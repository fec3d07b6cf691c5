"""Existing label columns as annotators: human labels, published labels, other tools' labels.

Any column of a table becomes the votes of one annotator (sample 0), so MELD's human
``Emotion``, MELT's published ``llm_label`` and a new run's models sit in one votes table
and one agreement computation. A value outside the label set is an invalid vote
(``out_of_label_set:VALUE``), an empty cell a missing one: neither is coerced.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from llm_annotator.core.data import assign_ids, load_dataset
from llm_annotator.core.errors import DataError
from llm_annotator.core.parse import normalise, read_value
from llm_annotator.core.task import Task
from llm_annotator.core.votes import Vote, votes_frame


def label_votes(task: Task) -> Any:
    """A function ``(item_id, annotator, text, model) -> Vote`` that reads a given label.

    A label of the task (by its normalised form, or an alias) is a valid vote; any other
    text an invalid one, ``out_of_label_set:TEXT``, kept with the text as it was written.
    """
    lookup = {normalise(label): label for label in task.labels}
    lookup.update({normalise(alias): target for alias, target in task.aliases.items()})
    spec = task.primary
    if spec.kind in ("numeric", "multi_label"):  # a number on the scale, or labels separated by , ; |
        def read(item_id: str, annotator: str, text: str, model: str) -> Vote:
            parsed = read_value(text, spec)
            data = list(parsed.data) if isinstance(parsed.data, tuple) else parsed.data
            cell = {k: v for k, v in (("label", parsed.label), ("value", data), ("error", parsed.error))
                    if v is not None}
            return Vote(item_id=item_id, annotator=annotator, sample_index=0, label=parsed.label,
                        error=parsed.error, raw=text, distribution=None, model=model, prompt_hash="",
                        template_hash="", outputs={spec.name: cell})

        return read

    def vote(item_id: str, annotator: str, text: str, model: str) -> Vote:
        label = lookup.get(normalise(text))
        return Vote(item_id=item_id, annotator=annotator, sample_index=0, label=label,
                    error=None if label else f"out_of_label_set:{text.strip()[:60]}", raw=text,
                    distribution=None, model=model, prompt_hash="", template_hash="")

    return vote


def column_votes(rows: Sequence[dict[str, Any]], item_ids: Sequence[str], column: str, task: Task,
                 *, source: str = "<data>") -> list[Vote]:
    """One vote per row with a value in ``column``; annotator = the column name."""
    vote = label_votes(task)
    votes = []
    for row, item_id in zip(rows, item_ids, strict=True):
        if column not in row:
            raise DataError(f"{source}: column {column!r} does not exist", fix="name an existing column")
        value = row[column]
        if value is None or (isinstance(value, str) and not value.strip()):
            continue
        votes.append(vote(item_id, column, str(value), f"column:{column}"))
    return votes


def result_from_columns(data: Any, columns: Sequence[str], *, labels: Sequence[str] | None = None,
                        id_column: str | None = None, task: Task | None = None) -> Any:
    """An :class:`AnnotationResult` whose annotators are label columns of ``data``.

    The label set is ``labels``, else the task's, else every value seen in the columns
    (sorted) — in that last case nothing can be out of the set.

    Item ids come from ``id_column``; else from an ``item_id`` column, as in a run's own
    ``labels.csv``; else from a hash of each row. With another ``id_column``, its values
    take the place of the table's ``item_id`` column.
    """
    import pandas as pd

    from llm_annotator.outputs.result import AnnotationResult

    dataset = load_dataset(data, id_column=id_column)
    item_ids = dataset.item_ids
    if id_column is None and "item_id" in dataset.columns:
        try:
            item_ids = assign_ids(dataset.rows, dataset.source, "item_id")
        except DataError as exc:
            raise DataError(exc.message, fix="give every row a unique item_id, or name a column of unique ids "
                                             "with --id-column (id_column=)") from None
    missing = [c for c in columns if c not in dataset.columns]
    if missing:
        raise DataError(f"{dataset.source}: column {missing[0]!r} does not exist",
                        fix=f"use one of {', '.join(dataset.columns[:15])}"
                            + (f", … ({len(dataset.columns)} columns)" if len(dataset.columns) > 15 else ""))
    if task is None:
        if labels is None:
            seen = {str(r[c]).strip() for r in dataset.rows for c in columns
                    if r.get(c) is not None and str(r[c]).strip()}
            if not seen:
                raise DataError(f"{dataset.source}: the columns {', '.join(map(repr, columns))} hold no label",
                                fix="name the columns that hold labels, or pass the label set (--labels a,b,c)")
            labels = sorted(seen)
        task = Task(name="columns", labels=tuple(labels), template="", source=dataset.source)
    elif labels is not None:
        task = task.with_labels(labels)
    votes: list[Vote] = []
    for column in columns:
        votes += column_votes(dataset.rows, item_ids, column, task, source=dataset.source)
    names = [c for c in dataset.columns if c != "item_id"]
    items = pd.DataFrame([{c: r.get(c) for c in names} for r in dataset.rows], columns=names)
    items.insert(0, "item_id", item_ids)
    return AnnotationResult(votes_frame(votes), task, items, samples=1, annotators=list(columns),
                            manifest={"data": {"source": dataset.source}})


__all__ = ["column_votes", "label_votes", "result_from_columns"]

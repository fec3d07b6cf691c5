"""The items a person should look at first, for the tools people already use.

Items are ranked by the consensus confidence (top probability of the combined soft
label), lowest first, then by margin; items where annotators' own labels disagree are
flagged. Exports: a CSV and Label Studio pre-annotations (tasks with predictions, the
consensus label as a ``choices`` result and its probability as the prediction ``score``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from llm_annotator.core.errors import ConfigError
from llm_annotator.store.files import write_atomic


def review_queue(result: Any, n: int = 100) -> Any:
    """The ``n`` items most in need of review, with inputs, consensus and each annotator's label."""
    from llm_annotator.analysis.agreement import annotator_labels

    order = result.items["item_id"].tolist()
    table = annotator_labels(result.votes, result.task.labels, order)
    consensus = result.labels()
    frame = result.items.merge(consensus, on="item_id")
    for name in table.columns:
        frame[f"label_{name}"] = table[name].reindex(order).to_numpy()
    frame["annotators_disagree"] = table.nunique(axis=1, dropna=True).reindex(order).to_numpy() > 1
    ranked = frame.sort_values(["confidence", "margin"], na_position="first", kind="stable")
    return ranked.head(n).reset_index(drop=True)


def label_studio_tasks(queue: Any, labels: list[str], text_column: str) -> list[dict[str, Any]]:
    """Label Studio tasks with predictions (import with a Choices control named ``label``)."""
    tasks = []
    for _, row in queue.iterrows():
        prediction: dict[str, Any] = {"model_version": "llm_annotator", "result": []}
        if isinstance(row["label"], str):
            prediction["score"] = float(row["confidence"])
            prediction["result"] = [{"from_name": "label", "to_name": "text", "type": "choices",
                                     "value": {"choices": [row["label"]]}}]
        tasks.append({
            "data": {"text": str(row[text_column]), "item_id": str(row["item_id"]),
                     "soft_label": {label: _float(row[f"p_{label}"]) for label in labels}},
            "predictions": [prediction],
        })
    return tasks


def _float(value: Any) -> float | None:
    value = float(value)
    return None if value != value else value


def export_review(result: Any, prefix: str | Path, *, n: int = 100, text_column: str | None = None) -> list[Path]:
    """Write ``PREFIX.csv`` and ``PREFIX.label_studio.json``; return their paths."""
    queue = review_queue(result, n)
    inputs = [c for c in result.items.columns if c != "item_id"]
    if text_column is None:
        text_column = next((c for c in inputs if c.lower() in ("utterance", "text", "sentence")),
                           inputs[0] if inputs else "item_id")
    if text_column not in queue.columns:
        raise ConfigError(f"text column {text_column!r} is not an input column",
                          fix=f"use one of {', '.join(inputs)}")
    prefix = Path(prefix)
    csv_path = prefix.with_name(prefix.name + ".csv")
    from llm_annotator.outputs.result import safe_cell

    table = queue.copy()
    for column in table.columns:
        if table[column].dtype == object or str(table[column].dtype) in ("str", "string"):
            table[column] = table[column].map(safe_cell)
    write_atomic(csv_path, table.to_csv(index=False))
    json_path = prefix.with_name(prefix.name + ".label_studio.json")
    tasks = label_studio_tasks(queue, list(result.task.labels), text_column)
    write_atomic(json_path, json.dumps(tasks, indent=2, ensure_ascii=False) + "\n")
    return [csv_path, json_path]


__all__ = ["export_review", "label_studio_tasks", "review_queue"]

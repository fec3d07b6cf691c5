"""The labels files' cells and tables: how an item's row is named, built and written.

The labels files (``labels.csv``, ``labels.jsonl``) hold each item's input columns
beside the columns of the labels table (:data:`LABEL_COLUMNS` and ``p_<label>``), and
for a task of several outputs one column group per other output: that output's table
(:func:`output_columns`) with every column prefixed ``<output>_`` (``loudness_label``,
``arousal_mean``). An input column whose name the labels table uses is written as
``input_<name>`` (with one more ``input_`` while that name is taken too): nothing is
overwritten, nothing is suffixed at random. Cells JSON cannot hold are written by one
rule (:func:`json_cell`). ``explanations.csv`` holds the free-text fields of each vote
(:func:`explanation_table`).
"""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import json
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from llm_annotator.analysis.kinds import label_table
from llm_annotator.store import rundir

if TYPE_CHECKING:
    from llm_annotator.core.outputs import OutputSpec
    from llm_annotator.core.task import Task

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")

#: The columns the labels table puts beside the input's, besides one ``p_<label>`` per label.
LABEL_COLUMNS = ("item_id", "label", "confidence", "margin", "entropy_confidence", "n_valid", "n_requested",
                 "valid_share", "soft_label",
                 # after reviews are imported: the reviewers' label and the calibrated consensus
                 "review_label", "cal_label", "cal_confidence")


#: The columns of an output's table after its ``p_<category>`` columns, by the output's
#: kind (:func:`llm_annotator.analysis.kinds.output_table`; a categorical output's is
#: :func:`label_table`'s), ``soft_label`` last.
TABLE_COLUMNS: dict[str, tuple[str, ...]] = {
    "categorical": ("label", "confidence", "margin", "entropy_confidence", "n_valid", "n_requested", "valid_share",
                    "soft_label"),
    "ordinal": ("label", "confidence", "margin", "entropy_confidence", "n_valid", "n_requested", "valid_share",
                "median", "spread", "soft_label"),
    "numeric": ("label", "confidence", "margin", "entropy_confidence", "n_valid", "n_requested", "valid_share",
                "mean", "sd", "median", "soft_label"),
    "multi_label": ("set", "label", "expected_size", "confidence", "n_valid", "n_requested", "valid_share",
                    "soft_label"),
}


def output_columns(spec: OutputSpec) -> tuple[str, ...]:
    """The columns of one output's table but ``item_id``: ``p_<category>`` per category
    (a numeric output's bins), then :data:`TABLE_COLUMNS` of its kind."""
    return (*(f"p_{x}" for x in spec.categories), *TABLE_COLUMNS[spec.kind])


def group_columns(task: Task) -> tuple[str, ...]:
    """Every column the labels table of ``task`` holds besides :data:`LABEL_COLUMNS` and the
    primary's ``p_<label>``: the primary output's own (:func:`output_columns`), then each
    other output's as ``<output>_<column>``."""
    primary, *others = task.output_specs
    return (*output_columns(primary), *(f"{spec.name}_{c}" for spec in others for c in output_columns(spec)))


def output_names(columns: Iterable[str], labels: Sequence[str] = (), taken: Iterable[str] = ()) -> dict[str, str]:
    """Input column -> its name in the labels files: itself, or ``input_<name>`` (more
    ``input_`` while the name is taken by the labels table, by the names in ``taken``
    (:func:`group_columns`) or by another input column)."""
    columns = list(columns)
    taken = {*LABEL_COLUMNS, *(f"p_{x}" for x in labels), *(f"cal_p_{x}" for x in labels), *taken}
    names: dict[str, str] = {}
    for column in columns:
        name = column
        while name in taken or (name != column and name in columns):
            name = f"input_{name}"
        names[column] = name
        taken.add(name)
    return names


def items_frame(rows: Sequence[Mapping[str, Any]], item_ids: Sequence[str], columns: Sequence[str]) -> Any:
    """The items table: ``item_id``, then the input ``columns`` of ``rows`` by their names,
    an input column called ``item_id`` itself as ``input_item_id`` (see :func:`output_names`).
    Values stay as read (object columns): an integer column with a gap is not made float."""
    import pandas as pd

    own = output_names(columns)["item_id"] if "item_id" in columns else None
    names = [own if c == "item_id" else c for c in columns]
    items = pd.DataFrame([[r.get(c) for c in columns] for r in rows], columns=pd.Index(names, dtype=object),
                         dtype=object)
    items.insert(0, "item_id", list(item_ids))
    return items


def json_cell(value: Any) -> Any:
    """A cell as JSON holds it: text, numbers, booleans, lists and objects as they are;
    missing values (None, NaN, NaT, NA) as null; infinities as ``"Infinity"``/``"-Infinity"``;
    dates, times and timestamps in ISO 8601 (with their offset); durations in ISO 8601
    (``P0DT0H1M0S``, ``-P0DT0H0M1S``); decimals as their exact text; bytes in base64; object keys as text;
    anything else as its ``str``."""
    if value is None or isinstance(value, str | bool | int):
        return value
    if isinstance(value, float):
        if math.isfinite(value):
            return value
        return None if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, Mapping):
        return {str(k): json_cell(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset | np.ndarray):
        return [json_cell(v) for v in value]
    import pandas as pd

    if value is pd.NA or value is pd.NaT or (isinstance(value, np.datetime64 | np.timedelta64) and np.isnat(value)):
        return None
    if isinstance(value, pd.Timedelta) and value.nanoseconds:
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return _duration(value)
    if isinstance(value, np.datetime64 | np.timedelta64):
        try:
            return (pd.Timestamp(value) if isinstance(value, np.datetime64) else pd.Timedelta(value)).isoformat()
        except (OverflowError, ValueError):  # outside pandas' nanosecond range
            return str(value)
    if isinstance(value, np.generic):
        return json_cell(value.item())
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode("ascii")
    return str(value)


def _duration(value: dt.timedelta) -> str:
    """ISO 8601: ``P1DT2H3M4.5S``; a negative duration with a leading minus, ``-P0DT0H0M1S``."""
    sign, value = ("-", -value) if value < dt.timedelta(0) else ("", value)
    minutes, seconds = divmod(value.seconds, 60)
    fraction = f".{value.microseconds:06d}".rstrip("0") if value.microseconds else ""
    return f"{sign}P{value.days}DT{minutes // 60}H{minutes % 60}M{seconds}{fraction}S"


def text_cell(value: Any) -> Any:
    """A cell as ``labels.csv`` writes it: text and numbers as they are, lists and objects
    as their JSON, anything else as :func:`json_cell` gives it; never a spreadsheet formula."""
    if not (value is None or isinstance(value, str | bool | int | float)):
        value = json_cell(value)
        if isinstance(value, list | dict):
            value = json.dumps(value, ensure_ascii=False)
    return safe_cell(value)


def safe_cell(value: Any) -> Any:
    """Neutralise spreadsheet formulas: a text cell starting with = + - @ gets a leading '."""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        try:
            float(value)
            return value
        except ValueError:
            return "'" + value
    return value


def item_table(items: Any, labels: Any, order: Sequence[str], groups: Mapping[str, Any] | None = None) -> Any:
    """Input columns joined to the labels table, plus ``soft_label`` (a list per item), then
    one column group per other output: ``groups`` maps each output's name to its table
    (``item_id`` and its columns), written ``<output>_<column>`` with its own
    ``<output>_soft_label``. Input columns whose names the labels table uses are renamed
    (:func:`output_names`)."""
    grouped = [_group(name, table) for name, table in (groups or {}).items()]
    taken = [str(c) for frame in (labels, *grouped) for c in frame.columns]
    names = output_names([str(c) for c in items.columns[1:]], order, taken)
    items = items.set_axis(["item_id", *names.values()], axis=1)
    table = items.merge(labels, on="item_id", how="left")
    table["soft_label"] = [list(row) for row in labels[[f"p_{x}" for x in order]].to_numpy()]
    for group in grouped:
        table = table.merge(group, on="item_id", how="left")
    return table


def _group(name: str, table: Any) -> Any:
    """One output's table as its column group: ``soft_label`` added (its ``p_`` columns as a
    list) when the table has none, every column but ``item_id`` prefixed ``<name>_``."""
    table = table.copy()
    if "soft_label" not in table.columns:
        probs = [c for c in table.columns if str(c).startswith("p_")]
        table["soft_label"] = [list(row) for row in table[probs].to_numpy(dtype=float)]
    return table.rename(columns={c: f"{name}_{c}" for c in table.columns if c != "item_id"})


def soft_label_columns(task: Task) -> tuple[str, ...]:
    """The labels table's list columns that ``labels.csv`` leaves out (its ``p_`` columns
    hold them): ``soft_label`` and each other output's ``<output>_soft_label``."""
    return ("soft_label", *(f"{spec.name}_soft_label" for spec in task.output_specs[1:]))


def write_csv_rows(frame: Any, out: Any, *, header: bool, drop: Sequence[str] = ("soft_label",)) -> None:
    """``labels.csv`` rows without the columns of ``drop`` it has (``soft_label``, the
    lists the ``p_`` columns hold): cells by :func:`text_cell`, so text never starts a formula and lists and objects are
    JSON. Rows end in ``\\n``; a chunk whose text holds a carriage return is written with
    every text field quoted, so that the carriage return cannot end a row for a reader."""
    import csv

    import pandas as pd

    frame = frame.drop(columns=[c for c in drop if c in frame.columns])
    carriage_return = any("\r" in str(c) for c in frame.columns)
    for n in range(frame.shape[1]):
        column = frame.iloc[:, n]
        if not pd.api.types.is_numeric_dtype(column):
            cells = column.astype(object).map(text_cell)
            carriage_return = carriage_return or bool(cells.map(lambda v: isinstance(v, str) and "\r" in v).any())
            frame.isetitem(n, cells)
    frame.to_csv(out, index=False, header=header, lineterminator="\n",
                 quoting=csv.QUOTE_NONNUMERIC if carriage_return else csv.QUOTE_MINIMAL)


#: The file of a run directory that holds the votes' explanations (named where the run directory's files are).
EXPLANATIONS = rundir.EXPLANATIONS
#: The columns of ``explanations.csv`` before the task's explanation fields.
EXPLANATION_KEYS = ("item_id", "annotator", "sample_index")
#: The provider's reasoning content, kept in a vote's explanation under this key.
REASONING = "reasoning"


def explanation_fields(task: Task, keys: Iterable[str] = ()) -> list[str]:
    """The explanation columns: the task's ``explanations``, then ``reasoning`` when one of
    the votes' explanations has that key (``keys``: the keys they have)."""
    fields = list(task.explanations)
    return [*fields, REASONING] if REASONING in set(keys) and REASONING not in fields else fields


def explanation_rows(votes: Iterable[Mapping[str, Any]], fields: Sequence[str]) -> Iterator[list[Any]]:
    """One row per vote that has an explanation: item_id, annotator, sample_index, then
    each of ``fields`` (None where the vote's explanation lacks it)."""
    for vote in votes:
        explanation = vote.get("explanation")
        if isinstance(explanation, Mapping) and explanation:
            yield [*(vote[k] for k in EXPLANATION_KEYS), *(explanation.get(f) for f in fields)]


def explanation_table(rows: Iterable[Sequence[Any]], fields: Sequence[str]) -> Any:
    """The explanations table (:func:`explanation_rows`) as a DataFrame."""
    import pandas as pd

    table = pd.DataFrame(list(rows), columns=pd.Index([*EXPLANATION_KEYS, *fields], dtype=object), dtype=object)
    return table.astype({"sample_index": "int64"})


def write_jsonl_rows(frame: Any, out: Any) -> None:
    """``labels.jsonl`` rows: one JSON object per item, cells by :func:`json_cell`. Line
    separators other than ``\\n`` (U+0085, U+2028, U+2029) and text UTF-8 cannot hold (a
    lone surrogate) are written as JSON escapes, so every tool finds the same lines."""
    names = [str(c) for c in frame.columns]
    for values in frame.itertuples(index=False, name=None):
        record = {name: json_cell(value) for name, value in zip(names, values, strict=True)}
        line = json.dumps(record, ensure_ascii=False)
        if not line.isascii():
            line = line.translate(_SEPARATORS)
            if not _utf8(line):
                line = json.dumps(record)
        out.write(line + "\n")


_SEPARATORS = {0x85: "\\u0085", 0x2028: "\\u2028", 0x2029: "\\u2029"}


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


__all__ = ["EXPLANATIONS", "EXPLANATION_KEYS", "LABEL_COLUMNS", "REASONING", "TABLE_COLUMNS", "explanation_fields",
           "explanation_rows", "explanation_table", "group_columns", "item_table", "items_frame", "json_cell",
           "label_table", "output_columns", "output_names", "safe_cell", "soft_label_columns", "text_cell",
           "write_csv_rows", "write_jsonl_rows"]

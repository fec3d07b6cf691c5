"""The labels files' cells and tables: how an item's row is named, built and written.

The labels files (``labels.csv``, ``labels.jsonl``) hold each item's input columns
beside the columns of the labels table (:data:`LABEL_COLUMNS` and ``p_<label>``). An
input column whose name the labels table uses is written as ``input_<name>`` (with one
more ``input_`` while that name is taken too): nothing is overwritten, nothing is
suffixed at random. Cells JSON cannot hold are written by one rule (:func:`json_cell`).
"""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from llm_annotator.analysis import aggregate

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")

#: The columns the labels table puts beside the input's, besides one ``p_<label>`` per label.
LABEL_COLUMNS = ("item_id", "label", "confidence", "margin", "entropy_confidence", "n_valid", "n_requested",
                 "valid_share", "soft_label",
                 # after reviews are imported: the reviewers' label and the calibrated consensus
                 "review_label", "cal_label", "cal_confidence")


def output_names(columns: Iterable[str], labels: Sequence[str] = ()) -> dict[str, str]:
    """Input column -> its name in the labels files: itself, or ``input_<name>`` (more
    ``input_`` while the name is taken by the labels table or by another input column)."""
    columns = list(columns)
    taken = {*LABEL_COLUMNS, *(f"p_{x}" for x in labels), *(f"cal_p_{x}" for x in labels)}
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


def label_table(order: Sequence[str], matrix: np.ndarray, n_valid: np.ndarray, n_requested: int,
                labels: Sequence[str]) -> Any:
    """The labels table: item_id, p_LABEL per label, label, confidence, margin, entropy
    confidence, n_valid, n_requested, valid_share, from item x label probabilities."""
    import pandas as pd

    out = pd.DataFrame({"item_id": list(order)})
    for k, label in enumerate(labels):
        out[f"p_{label}"] = matrix[:, k]
    out["label"] = aggregate.argmax_labels(matrix, labels)
    for name, values in aggregate.confidence(matrix).items():
        out[name] = values
    out["n_valid"] = np.asarray(n_valid, dtype=int)
    out["n_requested"] = n_requested
    out["valid_share"] = out["n_valid"] / out["n_requested"]
    return out


def item_table(items: Any, labels: Any, order: Sequence[str]) -> Any:
    """Input columns joined to the labels table, plus ``soft_label`` (a list per item);
    input columns whose names the labels table uses are renamed (:func:`output_names`)."""
    names = output_names([str(c) for c in items.columns[1:]], order)
    items = items.set_axis(["item_id", *names.values()], axis=1)
    table = items.merge(labels, on="item_id", how="left")
    table["soft_label"] = [list(row) for row in labels[[f"p_{x}" for x in order]].to_numpy()]
    return table


def write_csv_rows(frame: Any, out: Any, *, header: bool) -> None:
    """``labels.csv`` rows (no ``soft_label``): cells by :func:`text_cell`, so text never
    starts a formula and lists and objects are JSON. Rows end in ``\\n``; a chunk whose
    text holds a carriage return is written with every text field quoted, so that the
    carriage return cannot end a row for a reader."""
    import csv

    import pandas as pd

    frame = frame.drop(columns=["soft_label"])
    carriage_return = any("\r" in str(c) for c in frame.columns)
    for n in range(frame.shape[1]):
        column = frame.iloc[:, n]
        if not pd.api.types.is_numeric_dtype(column):
            cells = column.astype(object).map(text_cell)
            carriage_return = carriage_return or bool(cells.map(lambda v: isinstance(v, str) and "\r" in v).any())
            frame.isetitem(n, cells)
    frame.to_csv(out, index=False, header=header, lineterminator="\n",
                 quoting=csv.QUOTE_NONNUMERIC if carriage_return else csv.QUOTE_MINIMAL)


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


__all__ = ["LABEL_COLUMNS", "item_table", "items_frame", "json_cell", "label_table", "output_names", "safe_cell",
           "text_cell", "write_csv_rows", "write_jsonl_rows"]

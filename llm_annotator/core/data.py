"""Datasets in: files, lists of dicts, DataFrames, HF datasets; item ids; dialogue context.

What a reader accepts, annotate carries to the end; what it cannot carry it refuses,
naming the file, the row and the fix: a CSV row with more or fewer fields than the
header (never shifted into other columns), a header with an unnamed or repeated
column, JSON with a key twice in one object, nested deeper than Python reads or with
numbers longer than it converts, and text UTF-8 cannot hold (a lone surrogate such as
JSON's ``"\\ud800"``). Missing values of every kind (NaN, NaT, NA) read as None,
arrays as lists, column names as text.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llm_annotator.core.errors import DataError
from llm_annotator.core.readers import Row, file_chunks, record, unique_names

#: Column names recognised (case-insensitively) for dialogue context, MELD's first.
DIALOGUE_COLUMNS = ("Dialogue_ID", "dialogue_id", "dialogue", "scene_id", "conversation_id")
TURN_COLUMNS = ("Utterance_ID", "utterance_id", "turn", "turn_id")
SPEAKER_COLUMNS = ("Speaker", "speaker")
TEXT_COLUMNS = ("Utterance", "utterance", "text")


@dataclass(frozen=True)
class Dataset:
    """Rows with stable item ids, in input order."""

    rows: list[Row]
    item_ids: list[str]
    columns: list[str]
    source: str
    offset: int = 0  # rows of the input before this one (a chunk of a streamed input)
    positions: list[int] | None = None  # each row's 0-based input row, where rows were left out

    def where(self, index: int) -> str:
        """Human name of a row for error messages: file and 1-based data row."""
        return f"{self.source} row {self.input_row(index) + 1}"

    def input_row(self, index: int) -> int:
        """The 0-based input row of row ``index``."""
        return self.positions[index] if self.positions is not None else self.offset + index


def read_table(data: Any, *, columns: Mapping[str, str] | None = None) -> tuple[list[Row], list[str], str]:
    """Rows, column names and a source name from any supported input."""
    source = "<data>"
    if isinstance(data, str | Path):
        path = Path(data)
        source = str(path)
        records, names = _read_file(path)
    elif isinstance(data, list):
        source = "<list>"
        if not all(isinstance(r, Mapping) for r in data):
            raise DataError("list input must hold one dict per row", fix="pass [{'column': value, ...}, ...]")
        records = [record(r, source, n) for n, r in enumerate(data, start=1)]
        names = list(dict.fromkeys(k for r in records for k in r))
    elif hasattr(data, "to_dict") and hasattr(data, "columns"):  # pandas DataFrame
        source = "<DataFrame>"
        names = unique_names(source, [str(c) for c in data.columns])
        records = [record(r, source, n) for n, r in enumerate(data.to_dict(orient="records"), start=1)]
    elif hasattr(data, "column_names") and hasattr(data, "to_list"):  # datasets.Dataset
        source = "<Dataset>"
        names = [str(c) for c in data.column_names]
        records = [record(r, source, n) for n, r in enumerate(data.to_list(), start=1)]
    else:
        raise DataError(f"cannot read data of type {type(data).__name__}",
                        fix="pass a path (.csv, .jsonl, .parquet), a list of dicts, a DataFrame or a datasets.Dataset")
    if columns:
        names = map_columns(records, names, source, columns)
    if not records:
        raise DataError(f"{source}: no data rows", fix="give a file with a header and at least one row")
    return records, names, source


def map_columns(records: list[Row], names: list[str], source: str, columns: Mapping[str, str]) -> list[str]:
    """Give every row the template fields of ``columns`` (field -> input column); the new names."""
    missing = [src for src in columns.values() if src not in names]
    if missing:
        raise DataError(f"{source}: column {missing[0]!r} named in the column map does not exist",
                        fix=f"use one of {', '.join(names[:12])}")
    for row in records:
        for field, src in columns.items():
            row[field] = row.get(src)
    return names + [f for f in columns if f not in names]


def _read_file(path: Path) -> tuple[list[Row], list[str]]:
    """A whole file: its chunks (see :func:`read_chunks`) put together."""
    records: list[Row] = []
    names: dict[str, None] = {}
    for chunk, chunk_names in file_chunks(path, 1 << 62):
        records.extend(chunk)
        names.update(dict.fromkeys(chunk_names))
    return records, list(names)


def read_chunks(data: Any, *, columns: Mapping[str, str] | None = None,
                chunk_rows: int = 10_000) -> tuple[str, Iterator[tuple[list[Row], list[str]]]]:
    """A source name, and the input as chunks of at most ``chunk_rows`` rows with their
    column names: files are read piece by piece (CSV/TSV in pandas chunks, JSONL line by
    line, Parquet by row group batches), iterables of dicts (a streaming
    ``datasets.IterableDataset``) item by item. Call again to read the input again."""
    if isinstance(data, str | Path):
        source, chunks = str(data), file_chunks(Path(data), chunk_rows)
    elif isinstance(data, list) or (hasattr(data, "to_dict") and hasattr(data, "columns")) \
            or (hasattr(data, "column_names") and hasattr(data, "to_list")):
        source = "<list>" if isinstance(data, list) else "<DataFrame>" if hasattr(data, "columns") else "<Dataset>"
        chunks = _memory_chunks(data, chunk_rows)  # read when iterated: naming the source reads nothing
    elif isinstance(data, Iterable):
        source, chunks = f"<{type(data).__name__}>", _iterable_chunks(data, chunk_rows)
    else:
        raise DataError(f"cannot stream data of type {type(data).__name__}",
                        fix="pass a path (.csv, .jsonl, .parquet), or an iterable of dicts such as a streaming dataset")
    return source, _mapped(chunks, source, columns)


def _memory_chunks(data: Any, chunk_rows: int) -> Iterator[tuple[list[Row], list[str]]]:
    records, names, _ = read_table(data)
    for i in range(0, len(records), chunk_rows):
        yield records[i:i + chunk_rows], names


def _mapped(chunks: Iterator[tuple[list[Row], list[str]]], source: str,
            columns: Mapping[str, str] | None) -> Iterator[tuple[list[Row], list[str]]]:
    seen = False
    for records, names in chunks:
        if not records:
            continue
        seen = True
        yield records, map_columns(records, names, source, columns) if columns else names
    if not seen:
        raise DataError(f"{source}: no data rows", fix="give a file with a header and at least one row")


def _iterable_chunks(data: Iterable[Any], chunk_rows: int) -> Iterator[tuple[list[Row], list[str]]]:
    records: list[Row] = []
    for number, row in enumerate(data, start=1):
        if not isinstance(row, Mapping):
            raise DataError(f"<{type(data).__name__}> row {number}: a row must be a dict of column values",
                            fix="yield one dict per row")
        records.append(record(row, f"<{type(data).__name__}>", number))
        if len(records) >= chunk_rows:
            yield records, list(dict.fromkeys(k for r in records for k in r))
            records = []
    if records:
        yield records, list(dict.fromkeys(k for r in records for k in r))


def row_hash(row: Mapping[str, Any]) -> str:
    """A stable id from a row's content: sha256 of its canonical JSON, 16 hex digits."""
    text = json.dumps({str(k): row[k] for k in sorted(row)}, sort_keys=True,
                      ensure_ascii=False, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def row_id(row: Row, index: int, source: str, id_column: str | None) -> str:
    """The id of row ``index`` (0-based) before repeats are told apart: its id column's value,
    else its content hash (:func:`row_hash`)."""
    if id_column is None:
        return row_hash(row)
    value = row.get(id_column)
    if value is None or value == "":
        if id_column not in row:
            raise DataError(f"{source}: id column {id_column!r} does not exist",
                            fix="name an existing column with --id-column, or omit it to hash rows")
        raise DataError(f"{source} row {index + 1}: id column {id_column!r} is empty", fix="give every row an id")
    return str(value)


def duplicate_id(source: str, id_column: str, key: str, first: int, second: int) -> DataError:
    """The error for an id column whose value ``key`` is at rows ``first`` and ``second`` (0-based)."""
    return DataError(f"{source} rows {first + 1} and {second + 1}: duplicate id {key!r} in column {id_column!r}",
                     fix="make the ids unique, or omit --id-column to hash rows")


class IdAssigner:
    """Item ids for rows given in order, in one list or chunk after chunk.

    With an id column its values (unique, non-empty); else the row hash, identical rows
    getting the suffixes ``~1``, ``~2`` ... in input order. Remembers the ids it gave
    (row number per id). A streamed input gives ids by the same rules from an index on
    disk (:class:`llm_annotator.store.item_index.ItemIndex`).
    """

    def __init__(self, source: str, id_column: str | None) -> None:
        self.source = source
        self.id_column = id_column
        self.rows: dict[str, int] = {}   # id -> 0-based input row
        self._repeats: dict[str, int] = {}  # row hash -> next suffix, for repeated rows only

    def __call__(self, records: Iterable[Row], offset: int = 0) -> list[str]:
        ids: list[str] = []
        for index, row in enumerate(records, start=offset):
            key = row_id(row, index, self.source, self.id_column)
            if key in self.rows:
                if self.id_column is not None:
                    raise duplicate_id(self.source, self.id_column, key, self.rows[key], index)
                n = self._repeats.get(key, 1)  # an identical row came before
                self._repeats[key] = n + 1
                key = f"{key}~{n}"
            self.rows[key] = index
            ids.append(key)
        return ids


def assign_ids(records: list[Row], source: str, id_column: str | None) -> list[str]:
    """Item ids of ``records`` (see :class:`IdAssigner`)."""
    return IdAssigner(source, id_column)(records)


def _find(names: Iterable[str], candidates: tuple[str, ...]) -> str | None:
    lowered = {n.lower(): n for n in names}
    for cand in candidates:
        if cand.lower() in lowered:
            return lowered[cand.lower()]
    return None


def _order_key(value: Any) -> tuple[int, Any]:
    try:
        return (0, float(value))
    except (TypeError, ValueError):
        return (1, str(value))


def add_context(records: list[Row], names: list[str], source: str, window: int) -> None:
    """Give each row ``context``: the previous ``window`` turns of its dialogue.

    Each turn is ``{"speaker": ..., "utterance": ...}``; dialogues are grouped by a
    dialogue column (MELD: ``Dialogue_ID``) and ordered by a turn column (``Utterance_ID``).
    """
    if "context" in names:
        raise DataError(f"{source}: the input has a column 'context', where dialogue context goes",
                        fix="rename that column (or map it: --map FIELD=context), or set --context 0 to use it as it is")
    dialogue = _find(names, DIALOGUE_COLUMNS)
    turn = _find(names, TURN_COLUMNS)
    text = _find(names, TEXT_COLUMNS)
    if dialogue is None or turn is None or text is None:
        raise DataError(f"{source}: context needs a dialogue column ({DIALOGUE_COLUMNS[0]}), a turn column "
                        f"({TURN_COLUMNS[0]}) and a text column ({TEXT_COLUMNS[0]})",
                        fix="add those columns, map them with --map, or set --context 0")
    speaker = _find(names, SPEAKER_COLUMNS)
    scenes: dict[Any, list[int]] = defaultdict(list)
    for index, row in enumerate(records):
        scenes[row.get(dialogue)].append(index)
    for members in scenes.values():
        members.sort(key=lambda i: _order_key(records[i].get(turn)))
        for position, index in enumerate(members):
            previous = members[max(0, position - window):position]
            records[index]["context"] = [
                {"speaker": records[j].get(speaker, "") if speaker else "", "utterance": records[j].get(text, "")}
                for j in previous
            ]


def load_dataset(data: Any, *, id_column: str | None = None, context: int = 0,
                 columns: Mapping[str, str] | None = None) -> Dataset:
    """Read ``data`` into a :class:`Dataset` with item ids and, if asked, dialogue context."""
    records, names, source = read_table(data, columns=columns)
    ids = assign_ids(records, source, id_column)
    if context > 0:
        add_context(records, names, source, context)
    return Dataset(rows=records, item_ids=ids, columns=names, source=source)


__all__ = ["Dataset", "IdAssigner", "add_context", "assign_ids", "duplicate_id", "load_dataset", "read_table",
           "row_hash", "row_id"]

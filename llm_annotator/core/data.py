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

import csv
import gzip
import hashlib
import json
import math
import re
import sys
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llm_annotator.core.errors import DataError

Row = dict[str, Any]

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

    def where(self, index: int) -> str:
        """Human name of a row for error messages: file and 1-based data row."""
        return f"{self.source} row {self.offset + index + 1}"


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
        records = [_record(r, source, n) for n, r in enumerate(data, start=1)]
        names = list(dict.fromkeys(k for r in records for k in r))
    elif hasattr(data, "to_dict") and hasattr(data, "columns"):  # pandas DataFrame
        source = "<DataFrame>"
        names = _unique_names(source, [str(c) for c in data.columns])
        records = [_record(r, source, n) for n, r in enumerate(data.to_dict(orient="records"), start=1)]
    elif hasattr(data, "column_names") and hasattr(data, "to_list"):  # datasets.Dataset
        source = "<Dataset>"
        names = [str(c) for c in data.column_names]
        records = [_record(r, source, n) for n, r in enumerate(data.to_list(), start=1)]
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


def _clean(value: Any) -> Any:
    """A cell as the rows hold it: NaN, NaT and NA as None, arrays as lists, NumPy scalars
    as Python's; everything else as it is."""
    if value is None or type(value) in (str, int, bool):
        return value
    if isinstance(value, float):
        return None if math.isnan(value) else value
    kind = type(value).__name__
    if kind in ("NAType", "NaTType"):
        return None
    if kind == "ndarray":
        return [_clean(v) for v in value.tolist()]
    if type(value).__module__ == "numpy" and kind not in ("datetime64", "timedelta64") and hasattr(value, "item"):
        return _clean(value.item())
    return value


def _record(row: Mapping[Any, Any], source: str, number: int) -> Row:
    """One row of an in-memory input: names as text (two keys may not become one), cells
    cleaned (:func:`_clean`), no lone surrogate."""
    out: Row = {}
    for key, value in row.items():
        name = key if type(key) is str else str(key)
        if name in out:
            first = next(k for k in row if str(k) == name)
            raise DataError(f"{source} row {number}: keys {first!r} and {key!r} both name column {name!r}",
                            fix="give every column a distinct name")
        out[name] = _clean(value)
    _check_text(out, f"{source} row {number}")
    return out


_SURROGATE = re.compile("[\ud800-\udfff]")
_ESCAPED_SURROGATE = re.compile(r"\\u[dD][89a-fA-F]")


def _has_surrogate(value: Any) -> bool:
    """Whether a lone surrogate is anywhere in ``value`` (nested lists and dicts too)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if not item.isascii() and _SURROGATE.search(item):
                return True
        elif isinstance(item, Mapping):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list | tuple):
            stack.extend(item)
    return False


def _check_text(row: Row, where: str) -> None:
    """Refuse a row holding a lone surrogate: text UTF-8 cannot write, so no prompt, cache
    entry or labels file could hold it."""
    for name, value in row.items():
        if _has_surrogate(name) or _has_surrogate(value):
            char = _SURROGATE.search(name if _has_surrogate(name) else json.dumps(value, default=str,
                                                                                 ensure_ascii=False))
            code = f"\\u{ord(char.group()):04x}" if char else "a surrogate"
            raise DataError(f"{where}: field {name!r} holds a lone surrogate ({code}), which is half of a "
                            "UTF-16 pair and no character",
                            fix="write the character itself, or both halves of its pair (\\ud83d\\ude00), "
                                "or remove it")


def _unique_names(source: str, names: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    for position, name in enumerate(names, start=1):
        if name in seen:
            raise DataError(f"{source}: the header names column {name!r} twice (columns {seen[name]} and {position})",
                            fix="give every column a distinct name")
        seen[name] = position
    return names


def _read_file(path: Path) -> tuple[list[Row], list[str]]:
    """A whole file: its chunks (see :func:`read_chunks`) put together."""
    records: list[Row] = []
    names: dict[str, None] = {}
    for chunk, chunk_names in _file_chunks(path, 1 << 62):
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
        source, chunks = str(data), _file_chunks(Path(data), chunk_rows)
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


def _file_chunks(path: Path, chunk_rows: int) -> Iterator[tuple[list[Row], list[str]]]:

    if not path.exists():
        raise DataError(f"data file {path} does not exist", fix="check the path")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: the file is empty", fix="give a file with a header and at least one row")
    suffix = "".join(path.suffixes[-2:]).lower() if path.suffix == ".gz" else path.suffix.lower()
    try:
        if suffix in (".csv", ".tsv", ".csv.gz", ".tsv.gz"):
            yield from _csv_chunks(path, chunk_rows, "\t" if "tsv" in suffix else ",")
        elif suffix in (".jsonl", ".ndjson", ".jsonl.gz"):
            yield from _jsonl_chunks(path, chunk_rows)
        elif suffix == ".parquet":
            import pyarrow.parquet as pq

            parquet = pq.ParquetFile(path)
            names = _unique_names(str(path), [str(n) for n in parquet.schema_arrow.names])
            for batch in parquet.iter_batches(batch_size=chunk_rows):
                yield [dict(zip(names, map(_clean, r.values()), strict=True)) for r in batch.to_pylist()], names
        elif suffix == ".json":
            loaded = _json_value(path.read_text(encoding="utf-8-sig"), str(path))
            if not isinstance(loaded, list) or not all(isinstance(r, Mapping) for r in loaded):
                raise DataError(f"{path}: a .json file must hold a list of objects",
                                fix="write a JSON array of rows, or use .jsonl")
            records = [_record(r, str(path), n) for n, r in enumerate(loaded, start=1)]
            names = list(dict.fromkeys(k for r in records for k in r))
            for i in range(0, len(records), chunk_rows):
                yield records[i:i + chunk_rows], names
        else:
            raise DataError(f"{path}: unknown file type {suffix!r}", fix="use .csv, .tsv, .jsonl, .json or .parquet")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text (byte {exc.start} is {exc.object[exc.start:exc.start + 1]!r})",
                        fix="re-save the file as UTF-8") from None


def _csv_chunks(path: Path, chunk_rows: int, delimiter: str) -> Iterator[tuple[list[Row], list[str]]]:
    """A CSV/TSV file read as text: every cell a string as written (empty cells ""), blank
    lines skipped; a row with more or fewer fields than the header, or a quote left open,
    is refused with its data row and the line it starts on."""
    csv.field_size_limit(max(csv.field_size_limit(), 2**31 - 1))  # a long document is one field
    opener = gzip.open if path.suffix == ".gz" else open
    header: list[str] | None = None
    records: list[Row] = []
    number, line = 0, 1  # data rows read; the line the next record starts on
    with opener(path, "rt", encoding="utf-8-sig", newline="") as handle:
        reader = csv.reader(handle, delimiter=delimiter, strict=True)
        try:
            for fields in reader:
                if not fields:
                    line = reader.line_num + 1
                    continue
                if header is None:
                    header = _csv_header(path, fields)
                    line = reader.line_num + 1
                    continue
                number += 1
                if len(fields) != len(header):
                    raise DataError(
                        f"{path} row {number} (line {line}): {len(fields)} field{'s' if len(fields) != 1 else ''} "
                        f"where the header has {len(header)}",
                        fix="quote fields that hold the delimiter or a line break, and give every row one field "
                            "per header column")
                records.append(dict(zip(header, fields, strict=True)))
                line = reader.line_num + 1
                if len(records) >= chunk_rows:
                    yield records, header
                    records = []
        except csv.Error as exc:
            why = {"unexpected end of data": "a quoted field is not closed",
                   f"'{delimiter}' expected after '\"'": "text follows the closing quote of a field"}
            raise DataError(f"{path} row {number + 1} (line {line}): {why.get(str(exc), str(exc))}",
                            fix='close every quoted field, and double the quotes inside one ("")') from None
    if header is None:
        raise DataError(f"{path}: the file is empty", fix="give a file with a header and at least one row")
    if records:
        yield records, header


def _csv_header(path: Path, fields: list[str]) -> list[str]:
    for position, name in enumerate(fields, start=1):
        if not name:
            raise DataError(f"{path}: column {position} of the header has no name",
                            fix="name every column in the first line (a trailing delimiter makes an unnamed one)")
    return _unique_names(str(path), fields)


class _DuplicateKey(Exception):
    def __init__(self, key: str) -> None:
        self.key = key


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    value = dict(pairs)
    if len(value) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _DuplicateKey(key)
            seen.add(key)
    return value


def _json_value(text: str, where: str) -> Any:
    """``json.loads`` that names what Python cannot read instead of raising its own errors."""
    try:
        return json.loads(text, object_pairs_hook=_unique_keys)
    except json.JSONDecodeError as exc:
        raise DataError(f"{where}: not valid JSON ({exc.msg})", fix="write one JSON object per line") from None
    except _DuplicateKey as exc:
        raise DataError(f"{where}: key {exc.key!r} appears twice in one object",
                        fix="give each field one value per row") from None
    except RecursionError:
        raise DataError(f"{where}: nested deeper than Python reads ({sys.getrecursionlimit()} levels)",
                        fix="flatten the nested values, or store them as text") from None
    except ValueError:  # int("1" * 5000): Python's limit on integer digits
        raise DataError(f"{where}: a number with more than {sys.get_int_max_str_digits()} digits",
                        fix="write such numbers as strings") from None


def _jsonl_chunks(path: Path, chunk_rows: int) -> Iterator[tuple[list[Row], list[str]]]:
    records: list[Row] = []
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8-sig") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            records.append(_jsonl_record(path, number, line))
            if len(records) >= chunk_rows:
                yield records, list(dict.fromkeys(k for r in records for k in r))
                records = []
    if records:
        yield records, list(dict.fromkeys(k for r in records for k in r))


def _iterable_chunks(data: Iterable[Any], chunk_rows: int) -> Iterator[tuple[list[Row], list[str]]]:
    records: list[Row] = []
    for number, row in enumerate(data, start=1):
        if not isinstance(row, Mapping):
            raise DataError(f"<{type(data).__name__}> row {number}: a row must be a dict of column values",
                            fix="yield one dict per row")
        records.append(_record(row, f"<{type(data).__name__}>", number))
        if len(records) >= chunk_rows:
            yield records, list(dict.fromkeys(k for r in records for k in r))
            records = []
    if records:
        yield records, list(dict.fromkeys(k for r in records for k in r))


def _jsonl_record(path: Path, number: int, line: str) -> Row:
    value = _json_value(line, f"{path} line {number}")
    if not isinstance(value, dict):
        raise DataError(f"{path} line {number}: a line must hold a JSON object", fix="write one JSON object per line")
    for key, cell in value.items():
        if isinstance(cell, float) and math.isnan(cell):
            value[key] = None
    if _ESCAPED_SURROGATE.search(line):  # only an escape can put a surrogate into decoded UTF-8
        _check_text(value, f"{path} line {number}")
    return value


def row_hash(row: Mapping[str, Any]) -> str:
    """A stable id from a row's content: sha256 of its canonical JSON, 16 hex digits."""
    text = json.dumps({str(k): row[k] for k in sorted(row)}, sort_keys=True,
                      ensure_ascii=False, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class IdAssigner:
    """Item ids for rows given in order, in one list or chunk after chunk.

    With an id column its values (unique, non-empty); else the row hash, identical rows
    getting the suffixes ``~1``, ``~2`` ... in input order. Remembers the ids it gave
    (row number per id), which is what a streamed input keeps per item.
    """

    def __init__(self, source: str, id_column: str | None) -> None:
        self.source = source
        self.id_column = id_column
        self.rows: dict[str, int] = {}   # id -> 0-based input row
        self._repeats: dict[str, int] = {}  # row hash -> next suffix, for repeated rows only
        self._replay_repeats: dict[str, int] = {}

    def __call__(self, records: Iterable[Row], offset: int = 0) -> list[str]:
        ids: list[str] = []
        for index, row in enumerate(records, start=offset):
            if self.id_column is not None:
                value = row.get(self.id_column)
                if value is None or value == "":
                    if self.id_column not in row:
                        raise DataError(f"{self.source}: id column {self.id_column!r} does not exist",
                                        fix="name an existing column with --id-column, or omit it to hash rows")
                    raise DataError(f"{self.source} row {index + 1}: id column {self.id_column!r} is empty",
                                    fix="give every row an id")
                key = str(value)
                if key in self.rows:
                    raise DataError(f"{self.source} rows {self.rows[key] + 1} and {index + 1}: duplicate id {key!r} "
                                    f"in column {self.id_column!r}",
                                    fix="make the ids unique, or omit --id-column to hash rows")
            else:
                key = base = row_hash(row)
                if base in self.rows:  # an identical row came before
                    n = self._repeats.get(base, 1)
                    self._repeats[base] = n + 1
                    key = f"{base}~{n}"
            self.rows[key] = index
            ids.append(key)
        return ids

    def replay(self, records: Iterable[Row], offset: int = 0) -> list[str]:
        """The ids given earlier to these rows, found again without storing anything (a
        streamed input's later passes); a row that no longer has its id is an error."""
        ids: list[str] = []
        for index, row in enumerate(records, start=offset):
            if self.id_column is not None:
                key = str(row.get(self.id_column))
            else:
                key = base = row_hash(row)
                if self.rows.get(base) != index:
                    n = self._replay_repeats.get(base, 1)
                    self._replay_repeats[base] = n + 1
                    key = f"{base}~{n}"
            if self.rows.get(key) != index:
                raise DataError(f"{self.source} row {index + 1} changed while it was annotated",
                                fix="do not edit the input during a run; re-run to resume")
            ids.append(key)
        return ids

    def restart(self) -> None:
        """Begin another replay from the first row."""
        self._replay_repeats = {}


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


__all__ = ["Dataset", "add_context", "assign_ids", "load_dataset", "read_table", "row_hash"]

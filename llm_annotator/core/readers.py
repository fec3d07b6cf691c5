"""File readers: CSV/TSV (also gzipped), JSONL, JSON and Parquet read in chunks of rows,
and the rules every row of any input obeys (cells cleaned, names unique, text UTF-8 can hold).

What a reader accepts, annotate carries to the end; what it cannot carry it refuses,
naming the file, the row and the fix (see :mod:`llm_annotator.core.data`).
"""

from __future__ import annotations

import csv
import gzip
import json
import math
import re
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from llm_annotator.core.errors import DataError

Row = dict[str, Any]


def clean(value: Any) -> Any:
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
        return [clean(v) for v in value.tolist()]
    if type(value).__module__ == "numpy" and kind not in ("datetime64", "timedelta64") and hasattr(value, "item"):
        return clean(value.item())
    return value


def record(row: Mapping[Any, Any], source: str, number: int) -> Row:
    """One row of an in-memory input: names as text (two keys may not become one), cells
    cleaned (:func:`clean`), no lone surrogate."""
    out: Row = {}
    for key, value in row.items():
        name = key if type(key) is str else str(key)
        if name in out:
            first = next(k for k in row if str(k) == name)
            raise DataError(f"{source} row {number}: keys {first!r} and {key!r} both name column {name!r}",
                            fix="give every column a distinct name")
        out[name] = clean(value)
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


def unique_names(source: str, names: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    for position, name in enumerate(names, start=1):
        if name in seen:
            raise DataError(f"{source}: the header names column {name!r} twice (columns {seen[name]} and {position})",
                            fix="give every column a distinct name")
        seen[name] = position
    return names


def file_chunks(path: Path, chunk_rows: int) -> Iterator[tuple[list[Row], list[str]]]:

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
            names = unique_names(str(path), [str(n) for n in parquet.schema_arrow.names])
            for batch in parquet.iter_batches(batch_size=chunk_rows):
                yield [dict(zip(names, map(clean, r.values()), strict=True)) for r in batch.to_pylist()], names
        elif suffix == ".json":
            loaded = _json_value(path.read_text(encoding="utf-8-sig"), str(path))
            if not isinstance(loaded, list) or not all(isinstance(r, Mapping) for r in loaded):
                raise DataError(f"{path}: a .json file must hold a list of objects",
                                fix="write a JSON array of rows, or use .jsonl")
            records = [record(r, str(path), n) for n, r in enumerate(loaded, start=1)]
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
    return unique_names(str(path), fields)


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


__all__ = ["Row", "clean", "file_chunks", "record", "unique_names"]

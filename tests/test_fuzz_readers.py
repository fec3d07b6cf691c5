"""What a reader accepts, annotate carries to the end; what it cannot carry, it refuses
before the first call. Every column type pandas and pyarrow give, names that collide with
the labels table's, any Unicode a file can hold, malformed rows; tables fuzzed with hypothesis."""

import csv
import datetime as dt
import decimal
import json
import uuid

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from llm_annotator import annotate, annotate_stream
from llm_annotator.core.data import load_dataset
from llm_annotator.core.errors import DataError
from llm_annotator.outputs.result import LABEL_COLUMNS, json_cell, output_names
from llm_annotator.testing import FakeOpenAI, sampling_responder

LABELS = ["positive", "negative", "neutral"]
MODELS = [{"model": "openai/fake", "concurrency": 4}]
FILES = ("labels.csv", "labels.jsonl", "votes.jsonl", "run.json")


def run(data, url, out, *, stream=False, **options):
    if stream:
        annotate_stream(data, "sentiment", MODELS, api_base=url, out=out, progress=False, chunk_rows=2, **options)
    else:
        annotate(data, "sentiment", MODELS, api_base=url, out=out, progress=False, **options)
    return finished(out)


def finished(out):
    """Every output file written, run.json complete; labels.jsonl strict JSON, one object per item."""
    assert all((out / name).exists() for name in FILES), sorted(p.name for p in out.iterdir())
    manifest = json.loads((out / "run.json").read_text(encoding="utf-8"))
    assert manifest["status"] == "complete" and manifest["counts"]["valid"] == manifest["counts"]["votes"]
    text = (out / "labels.jsonl").read_text(encoding="utf-8")
    records = [json.loads(line, parse_constant=pytest.fail) for line in text.split("\n")[:-1]]
    assert len(records) == manifest["data"]["n_items"]
    assert all(r["label"] in LABELS for r in records)
    with (out / "labels.csv").open(encoding="utf-8", newline="") as handle:
        table = list(csv.reader(handle))
    assert len(table) == len(records) + 1 and {len(r) for r in table} == {len(table[0])}
    return records


@pytest.fixture
def server(fake_server):
    return fake_server(sampling_responder(LABELS, "sentiment"))


# -- every column type pandas and pyarrow give ---------------------------------------------------
TZ = dt.timezone(dt.timedelta(hours=-3, minutes=-30))
TEXT = ["a good day", "a bad day", "a day"]
COLUMNS = {
    "int": [1, 2, 3],
    "float_nan": [1.5, float("nan"), -0.0],
    "inf": [float("inf"), -float("inf"), 1e300],
    "bool": [True, False, True],
    "none": [None, None, None],
    "big_int": [2**63 - 1, -(2**63), 0],
    "date": [dt.date(2024, 1, 1), dt.date(1900, 2, 28), None],
    "time": [dt.time(12, 30), dt.time(0, 0, 0, 1), None],
    "datetime": pd.to_datetime(["2024-01-01 10:00", "2024-02-29 00:00", None]),
    "datetime_tz": pd.to_datetime(["2024-01-01", "2024-06-01", "2024-12-31"]).tz_localize("Europe/Paris"),
    "datetime_fixed_tz": [dt.datetime(2024, 1, 1, tzinfo=TZ), dt.datetime(2024, 1, 2, tzinfo=dt.UTC), None],
    "timedelta": pd.to_timedelta([1, -90, 86400 * 3], unit="s"),
    "decimal": [decimal.Decimal("1.10"), decimal.Decimal("-2E+3"), None],
    "bytes": [b"\x00\xff", b"abc", None],
    "list": [[1, 2], [], None],
    "list_of_text": [["a", "b,c"], ["\"q\""], []],
    "struct": [{"a": 1, "b": "x"}, {"a": 2, "b": None}, None],
    "nested": [[{"a": [1.5]}], [{"a": []}], []],
    "categorical": pd.Categorical(["x", "y", None]),
    "nullable_int": pd.array([1, None, 3], dtype="Int64"),
    "nullable_bool": pd.array([True, None, False], dtype="boolean"),
    "string_dtype": pd.array(["a", None, "c"], dtype="string"),
    "period": pd.period_range("2024-01", periods=3, freq="M"),
    "interval": pd.interval_range(0, 3),
}
PYTHON_ONLY = {"uuid": [uuid.UUID(int=k) for k in range(3)], "complex": [1 + 2j, 0j, None],
               "tuple": [(1, "a"), (), None], "set": [{1}, set(), None], "ndarray": [np.arange(2), np.zeros(0), None],
               "numpy_scalar": [np.int8(3), np.float32(0.5), np.datetime64("2024-01-01T00:00")]}


def dtype_frame(extra=()):
    return pd.DataFrame({"text": TEXT, **COLUMNS, **dict(extra)})


def write(frame, path):
    if path.suffix == ".parquet":
        frame.to_parquet(path)
    elif path.suffix == ".jsonl":  # pandas cannot write bytes as JSON
        frame = frame.drop(columns=["bytes"], errors="ignore")
        frame.to_json(path, orient="records", lines=True, date_format="iso", default_handler=str)
    else:
        frame.to_csv(path, index=False)
    return path


@pytest.mark.parametrize("form", ["DataFrame", "list of dicts", ".parquet", ".jsonl", ".csv"])
@pytest.mark.parametrize("stream", [False, True], ids=["memory", "stream"])
def test_every_column_type_goes_through_annotate_to_the_end(tmp_path, server, form, stream):
    if form == "DataFrame":
        data = dtype_frame(PYTHON_ONLY)
    elif form == "list of dicts":
        data = dtype_frame(PYTHON_ONLY).to_dict(orient="records")
    else:
        data = write(dtype_frame(), tmp_path / f"input{form}")
    records = run(data, server.url, tmp_path / "run", stream=stream)
    rows = load_dataset(data).rows
    for record, row in zip(records, rows, strict=True):
        for column, value in row.items():
            assert record[column] == json_cell(value), column


def test_cells_reach_the_labels_files_by_one_rule(tmp_path, server):
    records = run(dtype_frame(PYTHON_ONLY), server.url, tmp_path / "run")
    first = records[0]
    assert first["datetime_tz"] == "2024-01-01T00:00:00+01:00" and first["datetime_fixed_tz"] == \
        "2024-01-01T00:00:00-03:30"
    assert (first["date"], first["time"], first["decimal"], first["bytes"]) == ("2024-01-01", "12:30:00", "1.10",
                                                                                "AP8=")
    assert (first["timedelta"], records[1]["timedelta"]) == ("P0DT0H0M1S", "-P0DT0H1M30S")
    assert (first["inf"], first["float_nan"], records[1]["float_nan"]) == ("Infinity", 1.5, None)
    assert first["struct"] == {"a": 1, "b": "x"} and first["list"] == [1, 2] and first["ndarray"] == [0, 1]
    assert (first["big_int"], records[1]["big_int"]) == (2**63 - 1, -(2**63))


# -- names the labels table uses -----------------------------------------------------------------
COLLIDING = [c for c in LABEL_COLUMNS if c != "item_id"] + ["p_positive", "input_label", "labels", ""]


@pytest.mark.parametrize("form", ["list of dicts", ".jsonl", ".csv"])
@pytest.mark.parametrize("stream", [False, True], ids=["memory", "stream"])
def test_input_columns_named_like_label_columns_survive_under_a_predictable_name(tmp_path, server, form, stream):
    names = [c for c in COLLIDING if c or form != ".csv"]  # a CSV header cannot leave a column unnamed
    rows = [{"text": f"text {k}", **{c: f"{c or 'blank'}-{k}" for c in names}} for k in range(3)]
    data = rows if form == "list of dicts" else write(pd.DataFrame(rows), tmp_path / f"input{form}")
    records = run(data, server.url, tmp_path / "run", stream=stream)
    written = output_names(["text", *names], LABELS)
    assert written["label"] == "input_input_label" and written["p_positive"] == "input_p_positive"
    for k, record in enumerate(records):
        assert {record[written[c]] for c in names} == {f"{c or 'blank'}-{k}" for c in names}
        assert record["label"] in LABELS and record["text"] == f"text {k}"


@pytest.mark.parametrize("stream", [False, True], ids=["memory", "stream"])
def test_an_input_column_called_item_id_is_kept_as_input_item_id(tmp_path, server, stream):
    rows = [{"text": f"t{k}", "item_id": f"mine-{k}"} for k in range(3)]
    path = write(pd.DataFrame(rows), tmp_path / "input.csv")
    records = run(path, server.url, tmp_path / "run", stream=stream)
    assert [r["input_item_id"] for r in records] == ["mine-0", "mine-1", "mine-2"]
    assert len({r["item_id"] for r in records}) == 3


def test_an_input_column_called_context_reaches_the_labels_files(tmp_path, server):
    records = run([{"text": "hi", "context": "mine"}], server.url, tmp_path / "run")
    assert records[0]["context"] == "mine"


# -- any Unicode a file can hold ----------------------------------------------------------------
UNICODE = {
    "emoji and ZWJ sequence": "😀 👩‍👩‍👧 ok", "right-to-left with marks": "مرحبا\u200f עברית\u202e",
    "combining marks": "e\u0301 n\u0303", "NUL": "a\x00b", "escape sequence": "a\x1b[31mb", "inner BOM": "\ufeffx",
    "noncharacters": "\ufdd0\uffff\U0010ffff", "private use": "\ue000\U000f0000", "line and paragraph separators":
    "a\u2028b\u2029c\x85d", "bare CR": "a\rb", "CRLF": "a\r\nb", "formula": "=1+2", "leading tab": "\tx",
    "quotes and commas": 'a "b", c', "fullwidth and CJK": "ＡＢＣ 日本語 한국어", "astral math": "𝔘𝔫𝔦𝔠𝔬𝔡𝔢",
    "long": "x" * 150_000,
}


@pytest.mark.parametrize("form", ["list of dicts", ".jsonl", ".csv", ".parquet"])
def test_any_unicode_a_file_can_hold_goes_through_unchanged(tmp_path, server, form):
    row = {"text": "hello", **UNICODE}
    rows = [row, {**{k: "plain" for k in row}, "text": "bye"}]
    data = rows if form == "list of dicts" else tmp_path / f"input{form}"
    if form == ".jsonl":
        data.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    elif form == ".csv":
        with data.open("w", encoding="utf-8", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(row))
            writer.writeheader()
            writer.writerows(rows)
    elif form == ".parquet":
        pq.write_table(pa.Table.from_pylist(rows), data)
    records = run(data, server.url, tmp_path / "run")
    assert {k: records[0][k] for k in UNICODE} == UNICODE
    with (tmp_path / "run" / "labels.csv").open(encoding="utf-8", newline="") as handle:
        first = next(csv.DictReader(handle))
    assert {k: first[k] for k in UNICODE if k not in ("formula", "leading tab")} == \
        {k: v for k, v in UNICODE.items() if k not in ("formula", "leading tab")}
    assert (first["formula"], first["leading tab"]) == ("'=1+2", "'\tx")


@pytest.mark.parametrize("stream", [False, True], ids=["memory", "stream"])
def test_a_lone_surrogate_is_refused_before_any_call_and_nothing_is_written(tmp_path, server, stream):
    path = tmp_path / "input.jsonl"
    path.write_text('{"text": "fine"}\n{"text": "half \\ud83d of an emoji"}\n')
    with pytest.raises(DataError, match=r"input.jsonl line 2: field 'text' holds a lone surrogate \(\\ud83d\)"):
        run(path, server.url, tmp_path / "run", stream=stream)
    assert server.calls == 0 and not (tmp_path / "run" / "labels.csv").exists()


@pytest.mark.parametrize("stream", [False, True], ids=["memory", "stream"])
def test_a_malformed_csv_row_is_refused_before_any_call(tmp_path, server, stream):
    path = tmp_path / "input.csv"
    path.write_text("id,text\n1,good\n2,bad,extra\n")
    with pytest.raises(DataError, match=r"input.csv row 2 \(line 3\): 3 fields where the header has 2"):
        run(path, server.url, tmp_path / "run", stream=stream, id_column="id")
    assert server.calls == 0 and not (tmp_path / "run" / "labels.csv").exists()


# -- fuzzed tables -------------------------------------------------------------------------------
FUZZ = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                       HealthCheck.function_scoped_fixture])
TEXTS = st.text(st.characters(codec="utf-8"), max_size=10)
NAMES = st.one_of(st.sampled_from([*LABEL_COLUMNS, "p_positive", "input_label", "context"]), TEXTS)


def names(min_size=1):
    return st.lists(NAMES.filter(bool), min_size=min_size, max_size=5, unique=True)


@st.composite
def text_tables(draw):
    columns = draw(names())
    return columns, [{c: draw(TEXTS) for c in columns} for _ in range(draw(st.integers(1, 4)))]


@FUZZ
@given(table=text_tables())
def test_a_csv_reads_back_as_written(tmp_path_factory, table):
    columns, rows = table
    path = tmp_path_factory.mktemp("csv") / "t.csv"
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    if all(not any(r.values()) for r in rows) and len(columns) == 1:
        rows = [r for r in rows if r[columns[0]]]  # a one-column row left empty is a blank line
    if not rows:
        return
    assert load_dataset(path).rows == rows


JSON_VALUES = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), TEXTS),
                           lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                   st.dictionaries(TEXTS, inner, max_size=3)), max_leaves=8)


@FUZZ
@given(columns=names(), data=st.data(), ascii_only=st.booleans())
def test_a_jsonl_file_reads_back_as_written(tmp_path_factory, columns, data, ascii_only):
    rows = [{c: data.draw(JSON_VALUES) for c in columns} for _ in range(data.draw(st.integers(1, 4)))]
    path = tmp_path_factory.mktemp("jsonl") / "t.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=ascii_only) + "\n" for r in rows), encoding="utf-8")
    assert load_dataset(path).rows == rows


PARQUET_COLUMNS = st.sampled_from([
    (pa.string(), TEXTS), (pa.int64(), st.integers(-(2**63), 2**63 - 1)), (pa.float64(), st.floats(allow_nan=False)),
    (pa.bool_(), st.booleans()), (pa.date32(), st.dates()), (pa.timestamp("us", tz="UTC"), st.datetimes(
        timezones=st.just(dt.UTC))), (pa.decimal128(12, 3), st.decimals(allow_nan=False, allow_infinity=False,
                                                                         places=3, min_value=-10**8, max_value=10**8)),
    (pa.binary(), st.binary(max_size=5)), (pa.list_(pa.int32()), st.lists(st.integers(-5, 5), max_size=3)),
    (pa.struct([("a", pa.string())]), st.fixed_dictionaries({"a": TEXTS})),
])


@FUZZ
@given(columns=names(), data=st.data())
def test_a_parquet_file_reads_back_as_written(tmp_path_factory, columns, data):
    n = data.draw(st.integers(1, 4))
    arrays, expected = [], [{} for _ in range(n)]
    for column in columns:
        kind, values = data.draw(PARQUET_COLUMNS)
        cells = [data.draw(st.one_of(st.none(), values)) for _ in range(n)]
        arrays.append(pa.array(cells, type=kind))
        for row, cell in zip(expected, cells, strict=True):
            row[column] = cell
    path = tmp_path_factory.mktemp("parquet") / "t.parquet"
    pq.write_table(pa.Table.from_arrays(arrays, names=columns), path)
    assert load_dataset(path).rows == expected


CELLS = st.one_of(st.none(), TEXTS, st.integers(), st.floats(), st.booleans(), st.dates(), st.datetimes(
    timezones=st.sampled_from([None, dt.UTC, TZ])), st.decimals(places=2, allow_nan=False), st.binary(max_size=4),
    st.lists(st.integers(), max_size=2), st.dictionaries(TEXTS, st.integers(), max_size=2), st.timedeltas())


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
@given(columns=names(0), data=st.data(), stream=st.booleans())
def test_any_table_goes_through_annotate_to_the_end(tmp_path_factory, columns, data, stream):
    columns = [c for c in columns if c not in ("text", "item_id", "context")]
    rows = [{"text": f"row {k}", **{c: data.draw(CELLS) for c in columns}} for k in range(data.draw(st.integers(1, 3)))]
    with FakeOpenAI(sampling_responder(LABELS, "sentiment")) as server:
        out = tmp_path_factory.mktemp("run")
        records = run(rows, server.url, out, stream=stream)
    written = output_names(["text", *columns], LABELS)
    for record, row in zip(records, rows, strict=True):
        assert {c: record[written[c]] for c in row} == {c: json_cell(v) for c, v in row.items()}

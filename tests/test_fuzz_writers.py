"""Writers: every file whole or not at all; labels.csv and labels.jsonl hold what the result holds."""

import csv
import datetime as dt
import decimal
import errno
import io
import json
import math
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from llm_annotator.core.errors import RunDirError
from llm_annotator.core.task import Task
from llm_annotator.core.votes import Vote, votes_frame
from llm_annotator.outputs.result import (
    LABEL_COLUMNS,
    AnnotationResult,
    items_frame,
    json_cell,
    output_names,
    write_csv_rows,
    write_jsonl_rows,
)
from llm_annotator.store import files as files_module
from llm_annotator.store.files import write_atomic


def leftovers(directory):
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".tmp"))


class Boom(Exception):
    pass


@pytest.mark.parametrize("failure", [TypeError("Object of type date is not JSON serializable"), KeyboardInterrupt(),
                                     SystemExit(3), Boom("a serializer's own error"), MemoryError()],
                         ids=lambda e: type(e).__name__)
def test_a_writer_that_fails_in_any_way_leaves_the_old_file_and_no_temporary_file(tmp_path, failure):
    path = tmp_path / "labels.jsonl"
    path.write_text("old\n")

    def write(out):
        out.write("half a line")
        raise failure

    with pytest.raises(type(failure)):
        write_atomic(path, write)
    assert path.read_text() == "old\n"
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("step", ["fsync", "replace"])
def test_a_full_disk_at_any_step_is_one_clear_error_and_no_temporary_file(tmp_path, monkeypatch, step):
    path = tmp_path / "run.json"
    path.write_text("{}")

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(files_module.os, step, full)
    with pytest.raises(RunDirError, match=r"cannot write .*run\.json: No space left on device; fix: free disk space"):
        write_atomic(path, "{\"status\": \"complete\"}")
    monkeypatch.undo()
    assert path.read_text() == "{}" and leftovers(tmp_path) == []


@pytest.mark.parametrize("failure", [TypeError("not serializable"), OSError(errno.ENOSPC, "No space left on device")],
                         ids=["TypeError", "ENOSPC"])
def test_a_removal_that_fails_too_does_not_hide_the_first_error(tmp_path, monkeypatch, failure):
    path = tmp_path / "labels.csv"
    real_unlink = type(path).unlink
    calls = []

    def refused_unlink(self, missing_ok=False):
        calls.append(self.name)
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(type(path), "unlink", refused_unlink)

    def write(out):
        raise failure

    expected = RunDirError if isinstance(failure, OSError) else TypeError
    with pytest.raises(expected, match=r"No space left on device|not serializable"):
        write_atomic(path, write)
    monkeypatch.undo()
    assert calls and not path.exists()
    for name in leftovers(tmp_path):
        real_unlink(tmp_path / name)


def test_files_get_the_usual_mode(tmp_path):
    write_atomic(tmp_path / "a.txt", "x")
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o666 & ~umask


# -- labels.csv and labels.jsonl hold what the result holds ------------------------------------
FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
LABELS = ("pos", "neg", "Neutral?")
TEXT = st.text(st.characters(codec="utf-8"), max_size=12)
TZ = st.sampled_from([None, dt.UTC, dt.timezone(dt.timedelta(hours=5, minutes=30)), dt.timezone(-dt.timedelta(hours=8))])
CELL = st.one_of(
    st.none(), TEXT, st.sampled_from(["=1+2", "+x", "-", "@a", "\tx", "\r", "-1.5"]), st.integers(), st.booleans(),
    st.floats(allow_nan=True, allow_infinity=True), st.dates(), st.times(), st.datetimes(timezones=TZ),
    st.timedeltas(), st.decimals(allow_nan=False, places=3), st.binary(max_size=6),
    st.lists(st.one_of(st.integers(), TEXT, st.none()), max_size=3), st.dictionaries(TEXT, st.integers(), max_size=2),
)
NAMES = st.one_of(st.sampled_from([*LABEL_COLUMNS, *(f"p_{x}" for x in LABELS), "input_label", "text", ""]), TEXT)


@st.composite
def results(draw):
    columns = draw(st.lists(NAMES, max_size=6, unique=True))
    n = draw(st.integers(1, 5))
    rows = [{c: draw(CELL) for c in columns} for _ in range(n)]
    ids = [f"i{k}" for k in range(n)]
    votes = [Vote(item_id=i, annotator="m", sample_index=0, label=draw(st.sampled_from([*LABELS, None])), error=None,
                  raw="x", distribution=None, model="m", prompt_hash="h", template_hash="t") for i in ids]
    votes = [v if v.label else Vote(**{**{f: getattr(v, f) for f in v.__slots__}, "error": "unparseable"})
             for v in votes]
    task = Task(name="t", labels=LABELS, template="{{ text }}")
    return rows, columns, AnnotationResult(votes_frame(votes), task, items_frame(rows, ids, columns), samples=1,
                                           annotators=["m"])


def same(a, b):
    return a == b or (isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b))


@FUZZ
@given(case=results())
def test_labels_jsonl_holds_every_input_cell_and_the_labels(case):
    rows, columns, result = case
    out = io.StringIO()
    write_jsonl_rows(result.to_frame(), out)
    assert out.getvalue().endswith("\n")
    lines = out.getvalue()[:-1].split("\n")
    assert not any(c in out.getvalue() for c in "\r\x85\u2028\u2029")  # any line splitter finds the same lines
    names = output_names(columns, LABELS)
    expected = ["item_id", *names.values(), *(f"p_{x}" for x in LABELS), "label", "confidence", "margin",
                "entropy_confidence", "n_valid", "n_requested", "valid_share", "soft_label"]
    labels = result.labels()
    assert len(lines) == len(rows)
    for line, row, (_, label_row) in zip(lines, rows, labels.iterrows(), strict=True):
        record = json.loads(line)  # strict JSON: no NaN, no Infinity tokens
        json.loads(line, parse_constant=lambda token: pytest.fail(f"non-standard JSON {token}"))
        assert list(record) == expected
        for column in columns:
            assert record[names[column]] == json_cell(row[column])
        assert record["label"] == (label_row["label"] if isinstance(label_row["label"], str) else None)
        assert record["label"] is None or record["label"] in LABELS


@FUZZ
@given(case=results())
def test_labels_csv_has_one_row_per_item_every_input_column_and_no_formula(case):
    rows, columns, result = case
    out = io.StringIO()
    write_csv_rows(result.to_frame(), out, header=True)
    table = list(csv.reader(io.StringIO(out.getvalue(), newline="")))
    names = output_names(columns, LABELS)
    assert table[0][:1 + len(columns)] == ["item_id", *names.values()]
    assert len(table) == len(rows) + 1 and all(len(r) == len(table[0]) for r in table)
    for line, row in zip(table[1:], rows, strict=True):
        for k, column in enumerate(columns, start=1):
            value = row[column]
            if isinstance(value, str):
                assert line[k] == value if not value.startswith(("=", "+", "-", "@", "\t", "\r")) or \
                    _number(value) else line[k] == "'" + value
            elif isinstance(value, list | dict):
                assert json.loads(line[k]) == json_cell(value)
            elif isinstance(value, dt.date | dt.time):
                assert line[k] == value.isoformat()
            elif isinstance(value, decimal.Decimal):
                assert decimal.Decimal(line[k]) == value


def _number(text):
    try:
        float(text)
    except ValueError:
        return False
    return True


def test_cells_json_cannot_hold_follow_one_rule():
    import numpy as np
    import pandas as pd

    tz = dt.timezone(dt.timedelta(hours=2))
    assert json_cell(dt.datetime(2024, 5, 1, 12, 0, tzinfo=tz)) == "2024-05-01T12:00:00+02:00"
    assert json_cell(pd.Timestamp("2024-05-01", tz="Europe/Paris")) == "2024-05-01T00:00:00+02:00"
    assert json_cell(np.datetime64("2024-05-01T01:02:03")) == "2024-05-01T01:02:03"
    assert json_cell(dt.time(9, 30)) == "09:30:00" and json_cell(dt.date(2024, 1, 2)) == "2024-01-02"
    assert json_cell(dt.timedelta(minutes=1)) == "P0DT0H1M0S"
    assert json_cell(decimal.Decimal("1.10")) == "1.10" and json_cell(b"\x00\xff") == "AP8="
    assert json_cell(float("nan")) is None and json_cell(pd.NaT) is None and json_cell(pd.NA) is None
    assert json_cell(np.datetime64("NaT")) is None
    assert (json_cell(float("inf")), json_cell(-float("inf"))) == ("Infinity", "-Infinity")
    assert json_cell({1: np.int64(2), "x": [np.float64("nan"), (1, 2)]}) == {"1": 2, "x": [None, [1, 2]]}
    assert json_cell(np.array([1, 2])) == [1, 2] and json_cell(pd.Period("2024-01", "M")) == "2024-01"


def test_an_input_column_named_as_a_label_column_is_renamed_predictably():
    assert output_names(["text", "label", "input_label", "p_pos", "item_id"], ["pos"]) == {
        "text": "text", "label": "input_input_label", "input_label": "input_label", "p_pos": "input_p_pos",
        "item_id": "input_item_id"}
    items = items_frame([{"item_id": 7, "label": "x"}], ["a"], ["item_id", "label"])
    assert list(items.columns) == ["item_id", "input_item_id", "label"] and items["input_item_id"].tolist() == [7]


def test_a_carriage_return_in_a_cell_cannot_end_a_csv_row():
    import pandas as pd

    for frame in (pd.DataFrame({"item_id": ["a", "b"], "text": ["x\ry", "z"], "soft_label": [[1.0], [1.0]]}),
                  pd.DataFrame({"item_id": ["a"], "te\rxt": ["x"], "soft_label": [[1.0]]})):
        out = io.StringIO()
        write_csv_rows(frame, out, header=True)
        table = list(csv.reader(io.StringIO(out.getvalue(), newline="")))
        assert table == [[str(c) for c in frame.columns[:2]], *frame.iloc[:, :2].astype(str).values.tolist()]
        assert pd.read_csv(io.StringIO(out.getvalue())).shape == (len(frame), 2)


def test_a_lone_surrogate_in_a_cell_is_written_as_a_json_escape():
    import pandas as pd

    out = io.StringIO()
    write_jsonl_rows(pd.DataFrame({"item_id": ["a"], "raw": ["x\ud800"]}, dtype=object), out)
    assert out.getvalue() == '{"item_id": "a", "raw": "x\\ud800"}\n'
    out.getvalue().encode("utf-8")

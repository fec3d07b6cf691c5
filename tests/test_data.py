import pandas as pd
import pytest

from llm_annotator.core.data import load_dataset, read_chunks, row_hash
from llm_annotator.core.errors import DataError

MELD_LIKE = (
    "Sr No.,Utterance,Speaker,Dialogue_ID,Utterance_ID\r\n"
    "1,Hi there,Ross,0,0\r\n"
    "2,\"Oh, hi\",Rachel,0,1\r\n"
    "3,What’s up?,Joey,0,2\r\n"
    "4,New scene,Monica,1,0\r\n"
)


def test_csv_with_bom_crlf_and_curly_quotes(tmp_path):
    path = tmp_path / "meld.csv"
    path.write_bytes(b"\xef\xbb\xbf" + MELD_LIKE.encode())
    data = load_dataset(path, id_column="Sr No.")
    assert data.columns[0] == "Sr No."
    assert data.item_ids == ["1", "2", "3", "4"]
    assert data.rows[2]["Utterance"] == "What’s up?"


def test_every_input_kind_gives_the_same_rows(tmp_path):
    rows = [{"id": "a", "text": "x", "n": 1}, {"id": "b", "text": "y", "n": 2}]
    frame = pd.DataFrame(rows)
    frame.to_csv(tmp_path / "d.csv", index=False)
    frame.to_json(tmp_path / "d.jsonl", orient="records", lines=True)
    frame.to_parquet(tmp_path / "d.parquet")
    from datasets import Dataset

    for source in (rows, frame, Dataset.from_list(rows), tmp_path / "d.csv", tmp_path / "d.jsonl",
                   tmp_path / "d.parquet"):
        data = load_dataset(source, id_column="id")
        assert data.item_ids == ["a", "b"]
        assert [str(r["text"]) for r in data.rows] == ["x", "y"]


def test_row_hash_is_stable_and_identical_rows_get_suffixes():
    rows = [{"text": "same"}, {"text": "same"}, {"text": "other"}]
    data = load_dataset(rows)
    assert data.item_ids[0] == row_hash({"text": "same"})
    assert data.item_ids[1] == data.item_ids[0] + "~1"
    assert load_dataset(list(reversed(rows))).item_ids[0] == row_hash({"text": "other"})


def test_context_takes_previous_turns_of_the_same_dialogue(tmp_path):
    path = tmp_path / "meld.csv"
    path.write_text(MELD_LIKE)
    data = load_dataset(path, context=2)
    assert data.rows[0]["context"] == []
    assert [t["speaker"] for t in data.rows[2]["context"]] == ["Ross", "Rachel"]
    assert data.rows[3]["context"] == []  # a new dialogue starts afresh


@pytest.mark.parametrize(("content", "message"), [
    (b"", "the file is empty"),
    (b"text,label\n", "no data rows"),
    (b"text\n\xff\xfe broken\n", "not UTF-8 text"),
])
def test_unusable_files_are_refused_with_the_fix(tmp_path, content, message):
    path = tmp_path / "bad.csv"
    path.write_bytes(content)
    with pytest.raises(DataError, match=message) as info:
        load_dataset(path)
    assert str(path) in str(info.value) and "fix:" in str(info.value)


def test_duplicate_and_missing_ids_name_the_rows():
    with pytest.raises(DataError, match=r"rows 1 and 3: duplicate id 'a'"):
        load_dataset([{"id": "a"}, {"id": "b"}, {"id": "a"}], id_column="id")
    with pytest.raises(DataError, match=r"id column 'key' does not exist"):
        load_dataset([{"id": "a"}], id_column="key")


def test_missing_file_and_unknown_type(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_dataset(tmp_path / "nope.csv")
    (tmp_path / "x.xlsx").write_text("x")
    with pytest.raises(DataError, match=r"unknown file type '.xlsx'"):
        load_dataset(tmp_path / "x.xlsx")


def test_column_map_feeds_template_fields():
    data = load_dataset([{"sentence": "hi"}], columns={"text": "sentence"})
    assert data.rows[0]["text"] == "hi"
    with pytest.raises(DataError, match="column 'nope' named in the column map"):
        load_dataset([{"sentence": "hi"}], columns={"text": "nope"})


# -- malformed tables are refused, naming the file and the row; nothing shifts ----------------

MALFORMED_CSV = {
    "a row with a field more": ("id,text\n1,a\n2,b,c\n3,d\n", r"row 2 \(line 3\): 3 fields where the header has 2"),
    "the first row with a field more": ("id,text\n1,a,x\n2,b\n", r"row 1 \(line 2\): 3 fields where the header has 2"),
    "every row with a field more": ("id,text\n1,a,x\n2,b,y\n", r"row 1 \(line 2\): 3 fields where the header has 2"),
    "a row with a field less": ("id,text,o\n1,a,x\n2,b\n3,c,z\n", r"row 2 \(line 3\): 2 fields where the header has 3"),
    "a last row with one field": ("id,text\n1,a\n2\n", r"row 2 \(line 3\): 1 field where the header has 2"),
    "after a quoted line break": ('id,text\n1,"a\nb"\n2,c,d\n', r"row 2 \(line 4\): 3 fields where the header has 2"),
    "a quote left open": ('id,text\n1,"a\n2,b\n', r"row 1 \(line 2\): a quoted field is not closed"),
    "a duplicate column name": ("id,text,text\n1,a,b\n", r"the header names column 'text' twice \(columns 2 and 3\)"),
    "an unnamed column": ("id,text,\n1,a,\n", r"column 3 of the header has no name"),
}


@pytest.mark.parametrize("case", list(MALFORMED_CSV), ids=list(MALFORMED_CSV))
@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".csv.gz"])
def test_a_malformed_table_is_refused_naming_file_and_row(tmp_path, case, suffix):
    import gzip

    content, message = MALFORMED_CSV[case]
    if suffix == ".tsv":
        content = content.replace(",", "\t")
    path = tmp_path / f"bad{suffix}"
    path.write_bytes(gzip.compress(content.encode()) if suffix.endswith(".gz") else content.encode())
    for read in (lambda: load_dataset(path), lambda: [c for c in read_chunks(path, chunk_rows=1)[1]]):
        with pytest.raises(DataError, match=message) as info:
            read()
        text = str(info.value)
        assert text.startswith(f"{path} row ") or text.startswith(f"{path}: ")
        assert "fix:" in text and "\n" not in text


def test_csv_cells_are_read_as_written(tmp_path):
    path = tmp_path / "d.csv"
    path.write_bytes(b'id,text,n\r\n1, spaced ,NA\r\n\r\n2,"line\nbreak",null\r3,"say ""hi""",\r\n')
    data = load_dataset(path, id_column="id")
    assert data.rows == [{"id": "1", "text": " spaced ", "n": "NA"}, {"id": "2", "text": "line\nbreak", "n": "null"},
                         {"id": "3", "text": 'say "hi"', "n": ""}]


def test_a_long_csv_field_is_read_whole(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("text\n" + "x" * 300_000 + "\n")
    assert len(load_dataset(path).rows[0]["text"]) == 300_000


# -- text a file can hold but UTF-8 cannot: refused at the row ---------------------------------
@pytest.mark.parametrize(("line", "field"), [
    ('{"text": "\\ud800"}', "text"),
    ('{"text": "ok", "other": "x\\udfff"}', "other"),
    ('{"text": "ok", "\\ud800": 1}', "\ud800"),
    ('{"text": "ok", "meta": {"a": ["\\udc00"]}}', "meta"),
], ids=["high", "low in another field", "in a key", "nested"])
def test_a_lone_surrogate_in_json_is_refused_naming_line_and_field(tmp_path, line, field):
    path = tmp_path / "d.jsonl"
    path.write_text('{"text": "fine"}\n' + line + "\n")
    with pytest.raises(DataError, match="lone surrogate") as info:
        load_dataset(path)
    assert f"{path} line 2: field {field!r}" in str(info.value) and "fix:" in str(info.value)


def test_a_surrogate_pair_in_json_is_one_character(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text('{"text": "\\ud83d\\ude00"}\n')
    assert load_dataset(path).rows == [{"text": "😀"}]


def test_a_lone_surrogate_in_memory_is_refused_naming_the_row():
    with pytest.raises(DataError, match=r"<list> row 2: field 'text' holds a lone surrogate"):
        load_dataset([{"text": "a"}, {"text": "b\ud800"}])


@pytest.mark.parametrize(("line", "message"), [
    ('{"text": "a", "n": ' + "1" * 5000 + "}", r"line 1: a number with more than 4300 digits"),
    ("[" * 100_000, r"line 1: nested deeper than"),
    ('{"text": "a", "text": "b"}', r"line 1: key 'text' appears twice"),
], ids=["5000-digit number", "deep nesting", "duplicate key"])
def test_json_beyond_what_python_reads_is_refused_naming_the_line(tmp_path, line, message):
    for suffix in (".jsonl", ".json"):
        path = tmp_path / f"d{suffix}"
        path.write_text(line + "\n" if suffix == ".jsonl" else f"[{line}]")
        expected = message if suffix == ".jsonl" else message.replace("line 1: ", "")
        with pytest.raises(DataError, match=expected) as info:
            load_dataset(path)
        assert str(path) in str(info.value) and "fix:" in str(info.value)


# -- names: never silently merged, overwritten or dropped ---------------------------------------
def test_keys_that_are_not_text_become_text_and_may_not_collide():
    assert load_dataset([{"text": "a", 1: "x"}]).rows == [{"text": "a", "1": "x"}]
    with pytest.raises(DataError, match=r"<list> row 1: keys 1 and '1' both name column '1'"):
        load_dataset([{"text": "a", 1: "x", "1": "y"}])


def test_duplicate_column_names_in_a_dataframe_or_parquet_are_refused(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    frame = pd.DataFrame([["a", "b"]], columns=["text", "text"])
    with pytest.raises(DataError, match=r"<DataFrame>: the header names column 'text' twice"):
        load_dataset(frame)
    pq.write_table(pa.table([["a"], ["b"]], names=["text", "text"]), tmp_path / "d.parquet")
    with pytest.raises(DataError, match=r"d.parquet: the header names column 'text' twice"):
        load_dataset(tmp_path / "d.parquet")


def test_an_input_column_called_context_is_not_overwritten_by_dialogue_context():
    rows = [{"text": "hi", "context": "mine", "Dialogue_ID": 1, "Utterance_ID": 0}]
    with pytest.raises(DataError, match=r"<list>: the input has a column 'context', where dialogue context goes"):
        load_dataset(rows, context=2)
    assert load_dataset(rows).rows[0]["context"] == "mine"


def test_missing_values_of_every_kind_read_as_none_and_arrays_as_lists():
    import numpy as np

    frame = pd.DataFrame({"text": ["a", "b"], "when": pd.to_datetime(["2024-01-01", None]),
                          "n": pd.array([1, None], dtype="Int64"), "s": pd.array(["x", None], dtype="string"),
                          "v": [np.array([1, 2]), None], "f": [float("nan"), 1.5]})
    rows = load_dataset(frame).rows
    assert [rows[1][c] for c in ("when", "n", "s", "v")] == [None, None, None, None]
    assert rows[0]["v"] == [1, 2] and rows[0]["f"] is None and rows[0]["n"] == 1

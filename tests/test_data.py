import pandas as pd
import pytest

from llm_annotator.core.data import load_dataset, row_hash
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

"""A streamed run's memory does not grow with its input: the per-item index is on disk.

Measured with tracemalloc (Python's allocations; SQLite's page cache is bounded by its
own setting): a streamed input indexed, read again chunk by chunk, and its labels summed
and written from a votes log, at 1,000 and at 12,000 rows. Before the index went to disk
every row kept an id in a dict and a row number (about 200 bytes), and every item a
float array row of sums: 2.6 MB more at 20,000 rows than at 2,000 (old code, this test).
"""

import json
import tracemalloc

from llm_annotator.core.models import as_specs
from llm_annotator.core.task import load_task
from llm_annotator.core.votes import Vote
from llm_annotator.engine.inputs import StreamInput
from llm_annotator.engine.jobs import JobBuilder
from llm_annotator.outputs.labels import sum_votes, write_labels

LABELS = ["positive", "negative", "neutral"]


def write_input(path, n):
    with path.open("w", encoding="utf-8") as handle:
        handle.write("id,text\n")
        handle.writelines(f"item-{i:08d},sentence number {i} about topic {i % 7}\n" for i in range(n))


def write_votes(path, source, builder):
    annotator = builder.annotators[0]
    with path.open("w", encoding="utf-8") as handle:
        for dataset, hashes in source.chunks():
            for n, item_id in enumerate(dataset.item_ids):
                label = LABELS[(dataset.offset + n) % 3]
                vote = Vote(item_id=item_id, annotator=annotator.name, sample_index=0, label=label, error=None,
                            raw=json.dumps({"sentiment": label}), distribution=None, model="openai/fake",
                            prompt_hash=hashes[n][0], template_hash=builder.task.template_hash,
                            fingerprint=annotator.fingerprint(hashes[n][0], 0))
                handle.write(vote.to_json() + "\n")


def streamed_peak(tmp_path, n):
    """Peak of Python's allocations over index, chunks, sums and labels of ``n`` rows."""
    data, votes, out = tmp_path / f"d{n}.csv", tmp_path / f"votes{n}.jsonl", tmp_path / f"run{n}"
    out.mkdir()
    write_input(data, n)
    task = load_task("sentiment")
    builder = JobBuilder(task, as_specs(["openai/fake"]), 1)
    probe = StreamInput(str(data), builder, id_column="id", chunk_rows=1000)
    write_votes(votes, probe, builder)
    probe.close()
    tracemalloc.start()
    try:
        source = StreamInput(str(data), builder, id_column="id", chunk_rows=1000)
        sums = sum_votes(votes, source.index, task, builder.names)
        write_labels(source.chunks(), source.columns, sums, task, 1, out)
        source.close()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    lines = (out / "labels.csv").read_text(encoding="utf-8").splitlines()
    assert len(lines) == n + 1 and lines[1].startswith("item-00000000,")
    assert sums.tally["votes"] == n and sums.tally["valid"] == n
    return peak


def test_a_streamed_input_peaks_at_twelve_times_the_rows_where_it_did_at_one(tmp_path):
    streamed_peak(tmp_path, 100)  # what is imported on first use is not counted
    small, large = streamed_peak(tmp_path, 1_000), streamed_peak(tmp_path, 12_000)
    assert large - small < 500_000, f"{small / 1e6:.2f} MB at 1,000 rows, {large / 1e6:.2f} MB at 12,000"


def test_an_index_that_cannot_be_written_is_one_line_that_says_where_and_what_to_do():
    import sqlite3

    import pytest

    from llm_annotator.core.errors import RunDirError
    from llm_annotator.store.item_index import writable

    with pytest.raises(RunDirError) as error, writable():
        raise sqlite3.OperationalError("database or disk is full")
    text = str(error.value)
    assert "item index in the temporary folder (database or disk is full)" in text and "TMPDIR" in text
    assert "\n" not in text

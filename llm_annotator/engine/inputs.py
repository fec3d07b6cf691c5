"""Inputs of the one pipeline: a dataset in memory, or a corpus read in chunks.

Both are read first in full (pass 1): every row is given its id, rendered and checked
(bad input fails here, naming the row, before any call), and its prompt hash is kept
with the data digest of the job's identity. Then :meth:`chunks` gives the rows again,
chunk by chunk, with their prompt hashes. A dataset in memory is one chunk.

The streamed input holds nothing per item in memory: each row's id and prompt hashes
(64-bit, one per distinct prompt of the job) go into an index on disk
(:class:`llm_annotator.store.item_index.ItemIndex`: a temporary file SQLite unlinks as it
opens it, so it ends with :meth:`StreamInput.close` or with the process).
A file must not change between the passes (size and modification time are checked), and
an iterable must yield the same rows each time it is iterated (a streaming
``datasets.IterableDataset`` does).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from llm_annotator.core.data import Dataset, Row, read_chunks
from llm_annotator.core.errors import DataError
from llm_annotator.core.identity import DataDigest
from llm_annotator.core.shard import shard_of
from llm_annotator.engine.jobs import Hashes, JobBuilder
from llm_annotator.store.item_index import ItemHashes, ItemIndex

#: Rows read, rendered and annotated at a time by a streamed input.
CHUNK_ROWS = 10_000


class MemoryInput:
    """A dataset held in memory (dialogue context needs this): one chunk."""

    def __init__(self, dataset: Dataset, builder: JobBuilder, shard: tuple[int, int] | None = None) -> None:
        if shard is not None:
            keep = [n for n, item in enumerate(dataset.item_ids) if shard_of(item, shard[1]) == shard[0]]
            dataset = Dataset([dataset.rows[n] for n in keep], [dataset.item_ids[n] for n in keep],
                              dataset.columns, dataset.source)
        self.dataset = dataset
        self.source = dataset.source
        self.columns = list(dataset.columns)
        self._hashes = builder.prompt_hashes(dataset)
        self.hashes: Mapping[str, Hashes] = dict(zip(dataset.item_ids, self._hashes, strict=True))
        digest = DataDigest()
        digest.add_many((item_id, ",".join(found)) for item_id, found in zip(dataset.item_ids, self._hashes, strict=True))
        self.data = digest.finish()
        self.n_items = len(dataset.rows)

    def chunks(self) -> Iterator[tuple[Dataset, list[Hashes]]]:
        yield self.dataset, self._hashes


class StreamInput:
    """A file or re-iterable of dicts, read chunk by chunk; its per-row index on disk."""

    def __init__(self, data: Any, builder: JobBuilder, *, id_column: str | None,
                 columns: Mapping[str, str] | None = None, shard: tuple[int, int] | None = None,
                 chunk_rows: int = CHUNK_ROWS, part: tuple[int, int] | None = None) -> None:
        """``part`` (i, N): only the job's items at positions i, i + N, ... (a worker's share)."""
        self.raw, self.column_map, self.chunk_rows = data, columns, chunk_rows
        self.stamp = self._stamp()
        self.source, _ = read_chunks(data, columns=columns, chunk_rows=chunk_rows)
        self.index = ItemIndex(self.source, id_column, len(builder.prompts))
        try:
            self._index(builder, shard, part)
        except BaseException:
            self.index.close()
            raise
        self.hashes = ItemHashes(self.index)

    def close(self) -> None:
        """Close the index, which frees its file (the input cannot be read again after)."""
        self.index.close()

    def _stamp(self) -> tuple[int, int] | None:
        if isinstance(self.raw, str | Path):
            try:
                stat = os.stat(self.raw)
            except OSError:
                return None
            return stat.st_size, stat.st_mtime_ns
        return None

    def _records(self) -> Iterator[tuple[list[Row], list[str], int]]:
        """(rows, column names, rows before this chunk), in input order."""
        if self._stamp() != self.stamp:
            raise DataError(f"{self.raw} changed during the run",
                            fix="do not edit the input while it is annotated; re-run to resume")
        _, chunks = read_chunks(self.raw, columns=self.column_map, chunk_rows=self.chunk_rows)
        offset = 0
        for records, names in chunks:
            yield records, names, offset
            offset += len(records)

    def _index(self, builder: JobBuilder, shard: tuple[int, int] | None, part: tuple[int, int] | None) -> None:
        """Pass 1: ids, rendering and prompt hashes of every row; the first bad row stops it."""
        columns: dict[str, None] = {}
        digest = DataDigest()
        items = 0  # the job's items so far
        for records, names, offset in self._records():
            columns.update(dict.fromkeys(names))
            found = []
            for position, (row, item_id) in enumerate(zip(records, self.index.assign(records, offset), strict=True)):
                if shard is not None and shard_of(item_id, shard[1]) != shard[0]:
                    continue
                items += 1
                if part is not None and (items - 1) % part[1] != part[0]:
                    continue
                hashes = builder.row_hashes(row, item_id, f"{self.source} row {offset + position + 1}")
                found.append((offset + position, hashes))
                digest.add(item_id, ",".join(hashes))
            self.index.put_hashes(found)
        self.columns = list(columns)
        self.data = digest.finish()
        self.n_items = digest.n_items

    def chunks(self) -> Iterator[tuple[Dataset, list[Hashes]]]:
        """Pass 2 (and 3): the rows of the job, chunk by chunk, with their ids and prompt hashes."""
        total = 0
        for records, _, offset in self._records():
            total = offset + len(records)
            ids, found = self.index.replay(records, offset)
            keep = [n for n, hashes in enumerate(found) if hashes is not None]
            if not keep:
                continue
            yield Dataset([records[n] for n in keep], [ids[n] for n in keep], self.columns, self.source,
                          offset, [offset + n for n in keep]), [found[n] or () for n in keep]
        if total != self.n_rows:
            raise DataError(f"{self.source} gave {total} rows on a later reading, {self.n_rows} on the first",
                            fix="pass an input that reads the same each time (a file, or a re-iterable dataset)")

    @property
    def n_rows(self) -> int:
        return self.index.n_rows


__all__ = ["CHUNK_ROWS", "MemoryInput", "StreamInput"]

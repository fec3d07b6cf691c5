"""A streamed input's per-row index, on disk: item ids, prompt hashes, resumed votes.

A streamed run keeps nothing per item in memory, so 10 million rows peak where 1 million
do. What it must remember of every row goes into a private SQLite database on disk (57 MB
for a million rows with 13-character ids): the row's item id (unique: a repeated id is
refused, naming both rows), its prompt hashes when the row is in the job, and the keys of
votes read back from an earlier run. SQLite makes it a temporary file in ``SQLITE_TMPDIR``
or ``TMPDIR`` (else ``/var/tmp``, ``/tmp``) and unlinks the file as it opens it, so no
index outlives its process, however that process ends (a kill included). Its page cache
is bounded (:data:`CACHE_KIB`), its sorts spill to temporary files too, and lookups by id
go through its B-tree: a few microseconds each.

Ids come as :class:`llm_annotator.core.data.IdAssigner` gives them: an id column's values,
else the row's content hash with ``~1``, ``~2`` ... for repeated rows in input order.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterable, Iterator, Mapping, MutableMapping, Sequence
from typing import Any

from llm_annotator.core.data import Row, duplicate_id, row_hash, row_id
from llm_annotator.core.errors import DataError, RunDirError

#: SQLite's page cache per index (KiB): what the index holds in memory, however many rows.
CACHE_KIB = 8_192

_SCHEMA = """
CREATE TABLE items (row INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE);
CREATE TABLE hashes (row INTEGER PRIMARY KEY, codes BLOB NOT NULL);
"""


@contextlib.contextmanager
def writable() -> Iterator[None]:
    """SQLite's failures to write the index (no usable temporary folder, a full disk) as one
    line that says where the index goes and what to do."""
    try:
        yield
    except sqlite3.OperationalError as exc:
        raise RunDirError(f"cannot write the streamed run's item index in the temporary folder ({exc})",
                          fix="set TMPDIR (or SQLITE_TMPDIR) to a writable folder with free space, about 60 MB "
                              "per million rows") from None


class ItemIndex:
    """Row number -> item id and prompt hashes, and back, for one reading of an input.

    ``width``: prompt hashes per row (one per distinct prompt of the job); a hash is 16
    hex digits, kept as 8 bytes.
    """

    def __init__(self, source: str, id_column: str | None, width: int) -> None:
        self.source, self.id_column, self.width = source, id_column, width
        self.db = sqlite3.connect("", isolation_level=None, check_same_thread=False)  # "": private, temporary
        for pragma in ("journal_mode = OFF", "synchronous = OFF", f"cache_size = -{CACHE_KIB}", "temp_store = FILE"):
            self.db.execute(f"PRAGMA {pragma}")
        self.db.executescript(_SCHEMA)
        self.db.execute("BEGIN")  # one transaction for the index's life: no commit per statement
        self.n_rows = 0
        self.n_items = 0
        self._repeats: dict[str, int] = {}  # row hash -> next suffix, for repeated rows only
        self._tables = 0
        self._memo: tuple[str, tuple[str, ...] | None] | None = None

    def close(self) -> None:
        """Close the index (SQLite frees its file)."""
        self.db.close()

    # -- pass 1: ids and hashes ------------------------------------------------------------
    def assign(self, records: Sequence[Row], offset: int) -> list[str]:
        """The item ids of the rows ``offset``, ``offset + 1`` ... (given in order, chunk
        after chunk), recorded; a repeated id of an id column is a :class:`DataError`."""
        keys = [row_id(row, offset + n, self.source, self.id_column) for n, row in enumerate(records)]
        with writable():
            try:
                self.db.executemany("INSERT INTO items (row, id) VALUES (?, ?)", enumerate(keys, start=offset))
            except sqlite3.IntegrityError:  # an id seen before: the chunk's rows again, one by one
                self.db.execute("DELETE FROM items WHERE row >= ?", (offset,))  # no journal, so no rollback
                keys = self._repeated(keys, offset)
                self.db.executemany("INSERT INTO items (row, id) VALUES (?, ?)", enumerate(keys, start=offset))
        self.n_rows = offset + len(keys)
        return keys

    def _repeated(self, keys: list[str], offset: int) -> list[str]:
        """Keys of a chunk with an id seen before: the id column's first repeat is an error,
        a repeated row's hash gets the next suffix."""
        seen: dict[str, int] = {}
        out = []
        for index, key in enumerate(keys, start=offset):
            before = seen.get(key)
            if before is None:
                before = self.row_of(key)
            if before is not None:
                if self.id_column is not None:
                    raise duplicate_id(self.source, self.id_column, key, before, index)
                n = self._repeats.get(key, 1)
                self._repeats[key] = n + 1
                key = f"{key}~{n}"
            seen[key] = index
            out.append(key)
        return out

    def put_hashes(self, found: Iterable[tuple[int, Sequence[str]]]) -> None:
        """Record the prompt hashes of rows in the job: (row number, hashes) pairs."""
        rows = [(row, b"".join(bytes.fromhex(h) for h in hashes)) for row, hashes in found]
        with writable():
            self.db.executemany("INSERT INTO hashes (row, codes) VALUES (?, ?)", rows)
        self.n_items += len(rows)
        self._memo = None

    # -- later passes ------------------------------------------------------------------------
    def replay(self, records: Sequence[Row], offset: int) -> tuple[list[str], list[tuple[str, ...] | None]]:
        """The ids given earlier to these rows and their prompt hashes (None: the row is
        not in the job); a row that no longer has its id is a :class:`DataError`."""
        end = offset + len(records)
        ids = [i for (i,) in self.db.execute("SELECT id FROM items WHERE row >= ? AND row < ? ORDER BY row",
                                             (offset, end))]
        codes: list[tuple[str, ...] | None] = [None] * len(records)
        for row, blob in self.db.execute("SELECT row, codes FROM hashes WHERE row >= ? AND row < ?", (offset, end)):
            codes[row - offset] = _hexes(blob)
        if len(ids) != len(records):
            raise DataError(f"{self.source} gave more rows on a later reading than on the first",
                            fix="pass an input that reads the same each time (a file, or a re-iterable dataset)")
        for index, (row, given) in enumerate(zip(records, ids, strict=True), start=offset):
            if self.id_column is not None:
                same = str(row.get(self.id_column)) == given
            else:
                base = row_hash(row)
                same = given == base or given.startswith(base + "~")
            if not same:
                raise DataError(f"{self.source} row {index + 1} changed while it was annotated",
                                fix="do not edit the input during a run; re-run to resume")
        return ids, codes

    def row_of(self, item_id: str) -> int | None:
        """The input row number of an item id (None: no such id)."""
        found = self.db.execute("SELECT row FROM items WHERE id = ?", (item_id,)).fetchone()
        return found[0] if found is not None else None

    def hashes_of(self, item_id: str) -> tuple[str, ...] | None:
        """The prompt hashes of an item of the job (None: not an item of the job)."""
        memo = self._memo
        if memo is not None and memo[0] == item_id:  # an item's votes come together
            return memo[1]
        found = self.db.execute("SELECT h.codes FROM items i JOIN hashes h ON h.row = i.row WHERE i.id = ?",
                                (item_id,)).fetchone()
        hashes = _hexes(found[0]) if found is not None else None
        self._memo = (item_id, hashes)
        return hashes

    def item_ids(self) -> Iterator[str]:
        """The ids of the job's items, in input order."""
        cursor = self.db.execute("SELECT i.id FROM hashes h JOIN items i ON i.row = h.row ORDER BY h.row")
        return (item_id for (item_id,) in cursor)

    def key_set(self) -> DiskKeys:
        """A new, empty set of vote keys kept in this index's file."""
        self._tables += 1
        return DiskKeys(self.db, f"keys{self._tables}")

    def row_order(self) -> RowOrder:
        """A new, empty :class:`RowOrder` kept in this index's file."""
        self._tables += 1
        return RowOrder(self.db, f"order{self._tables}")


def _hexes(blob: bytes) -> tuple[str, ...]:
    return tuple(blob[k:k + 8].hex() for k in range(0, len(blob), 8))


class ItemHashes(Mapping[str, tuple[str, ...]]):
    """item id -> prompt hashes of the job's items, answered from an :class:`ItemIndex`."""

    def __init__(self, index: ItemIndex) -> None:
        self.index = index

    def __getitem__(self, item_id: str) -> tuple[str, ...]:
        found = self.index.hashes_of(item_id)
        if found is None:
            raise KeyError(item_id)
        return found

    def get(self, item_id: str, default: Any = None) -> Any:
        found = self.index.hashes_of(item_id)
        return default if found is None else found

    def __contains__(self, item_id: object) -> bool:
        return isinstance(item_id, str) and self.index.hashes_of(item_id) is not None

    def __iter__(self) -> Iterator[str]:
        return self.index.item_ids()

    def __len__(self) -> int:
        return self.index.n_items


class DiskKeys(MutableMapping[tuple[str, str, int], Any]):
    """A set of vote keys (item id, annotator, sample) in a table of an index file, as a
    mapping whose values are all None (what a streamed run's read-back keeps)."""

    def __init__(self, db: sqlite3.Connection, table: str) -> None:
        self.db, self.table, self._n = db, table, 0
        db.execute(f"CREATE TABLE {table} (item TEXT, annotator TEXT, sample INTEGER, "
                   "PRIMARY KEY (item, annotator, sample)) WITHOUT ROWID")

    def __setitem__(self, key: tuple[str, str, int], value: Any) -> None:
        if value is not None:
            raise ValueError("DiskKeys keeps vote keys only (value None)")
        with writable():
            self._n += self.db.execute(f"INSERT OR IGNORE INTO {self.table} VALUES (?, ?, ?)", key).rowcount

    def __delitem__(self, key: tuple[str, str, int]) -> None:
        if key not in self:
            raise KeyError(key)
        self.db.execute(f"DELETE FROM {self.table} WHERE item = ? AND annotator = ? AND sample = ?", key)
        self._n -= 1

    def __getitem__(self, key: tuple[str, str, int]) -> None:
        if key not in self:
            raise KeyError(key)

    def __contains__(self, key: object) -> bool:
        if not self._n or not isinstance(key, tuple) or len(key) != 3:
            return False
        return self.db.execute(f"SELECT 1 FROM {self.table} WHERE item = ? AND annotator = ? AND sample = ?",
                               key).fetchone() is not None

    def __len__(self) -> int:
        return self._n

    def __iter__(self) -> Iterator[tuple[str, str, int]]:
        return ((item, name, sample) for item, name, sample in
                self.db.execute(f"SELECT item, annotator, sample FROM {self.table}"))


class RowOrder:
    """(row, value) pairs added in any order, given back sorted by row (then as added):
    a table of an index file, sorted by SQLite (which spills to disk), not in memory."""

    def __init__(self, db: sqlite3.Connection, table: str) -> None:
        self.db, self.table = db, table
        self._batch: list[tuple[int, int]] = []
        db.execute(f"CREATE TABLE {table} (row INTEGER NOT NULL, value INTEGER NOT NULL)")

    def add(self, row: int, value: int) -> None:
        self._batch.append((row, value))
        if len(self._batch) >= 10_000:
            self._flush()

    def _flush(self) -> None:
        with writable():
            self.db.executemany(f"INSERT INTO {self.table} VALUES (?, ?)", self._batch)
        self._batch = []

    def __iter__(self) -> Iterator[tuple[int, int]]:
        self._flush()
        with writable():  # the sort spills to temporary files
            return iter(self.db.execute(f"SELECT row, value FROM {self.table} ORDER BY row, rowid"))


__all__ = ["CACHE_KIB", "DiskKeys", "ItemHashes", "ItemIndex", "RowOrder", "writable"]

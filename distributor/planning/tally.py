"""The segment as ``plan`` reads it: its valid members counted the way a run counts them, de-duplicated in a
private temporary SQLite file (bounded memory whatever the size of the export)."""

from __future__ import annotations

import sqlite3
from collections import Counter
from collections.abc import Iterator
from operator import itemgetter

from ..segment import Segment, refuse_unusable, validated_batches

_READ_BATCH = 20_000


class SegmentTally:
    """The segment's valid members, de-duplicated in a private temporary SQLite file (bounded memory whatever the
    size of the export), counted the way a run counts them."""

    def __init__(self) -> None:
        self._db = sqlite3.connect("", isolation_level=None)  # "": a private temporary database, removed on close
        self._db.execute("CREATE TABLE members (identity TEXT PRIMARY KEY) WITHOUT ROWID")  # one B-tree, no rowid
        self.rows = 0
        self.members = 0
        self.duplicates = 0
        self.invalid: Counter[str] = Counter()

    def __enter__(self) -> SegmentTally:
        return self

    def __exit__(self, *exc: object) -> None:
        self._db.close()

    def read(self, segment: Segment) -> None:
        for rows, valid, skipped in validated_batches(segment, _READ_BATCH):  # judged a batch at a time, as a load
            self.rows += rows
            self.invalid.update(reason for _, _, reason, _ in skipped)
            before = self._db.total_changes
            self._db.execute("BEGIN")
            self._db.executemany("INSERT OR IGNORE INTO members VALUES (?)", zip(map(itemgetter(2), valid)))
            self._db.execute("COMMIT")
            added = self._db.total_changes - before
            self.members += added
            self.duplicates += len(valid) - added
        refuse_unusable(segment, rows=self.rows, members=self.members, skipped=self.invalid)

    def identities(self) -> Iterator[str]:
        for (identity,) in self._db.execute("SELECT identity FROM members"):
            yield identity

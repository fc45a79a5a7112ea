"""What every part of :class:`~distributor.journal.Journal` stands on: its connection, committed transactions,
consistent reads, ``meta``, and which segment a run's members are marked with."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from ..errors import StorageError


class JournalBase:
    """The connection and the plumbing every part of the journal uses."""

    path: Path
    _db: sqlite3.Connection

    @contextmanager
    def snapshot(self) -> Iterator[None]:
        """Read everything inside the block from one consistent state of the journal (a deferred read
        transaction): a run committing meanwhile is neither blocked nor seen half-way."""
        self._db.execute("BEGIN DEFERRED")
        try:
            yield
        finally:
            self._db.execute("COMMIT")

    def meta(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, **values: str) -> None:
        with self._transaction():
            self._db.executemany(
                "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                list(values.items()),
            )

    def _has_table(self, name: str) -> bool:
        found = self._db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)).fetchone()
        return found is not None

    def _counted(self) -> bool:
        """Whether the journal keeps counts (schema 7; a read-only journal may be older)."""
        return self._has_table("member_counts")

    def _has_column(self, table: str, column: str) -> bool:
        return any(row[1] == column for row in self._db.execute(f"PRAGMA table_info({table})"))

    def segment_of(self, run_id: int) -> int:
        """The run whose ``seen_run`` marks run ``run_id``'s segment: itself, or the run that read the same export
        when this one took it over (:meth:`Journal.adopt_load`)."""
        if not self._has_column("runs", "segment_run"):
            return run_id
        row = self._db.execute("SELECT segment_run FROM runs WHERE id = ?", (run_id,)).fetchone()
        return run_id if row is None or row[0] is None else int(row[0])

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        """One committed transaction.  A storage failure (disk full, read-only, I/O error) raises
        :class:`StorageError`: what was committed before stays, and a rerun resumes from it."""
        try:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
        except sqlite3.OperationalError as exc:
            if (exc.sqlite_errorcode & 0xFF) not in _STORAGE_FAILURES:
                raise
            if self._db.in_transaction:
                with suppress(sqlite3.Error):
                    self._db.execute("ROLLBACK")
            raise StorageError(
                f"cannot write the journal {self.path}: {exc}; what it holds is safe: free space (or make the folder "
                "writable), then run the same command again to resume"
            ) from None



#: SQLite's primary result codes of a storage failure: BUSY, LOCKED, READONLY, IOERR, FULL, CANTOPEN, PROTOCOL.
_STORAGE_FAILURES = frozenset({5, 6, 8, 10, 13, 14, 15})



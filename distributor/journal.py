"""The journal: a SQLite file that holds every member's state and code, and every API call made.

It is the source of truth of a distribution; the CSV files are views of it.  Its rules:

* A member moves ``pending → sending → done(code) | failed(reason)``.  ``sending`` is written (and committed)
  *before* each publication call, with a row in ``calls``; the answer is committed as soon as it arrives.  A
  member found ``sending`` on resume may or may not have been published: it is sent again with the *same*
  publication ``source_id``, and Voucherify hands back the code it committed the first time.  That key is stored
  in the member's row (``members.source_id``) when its first call is logged, and reused for ever after: a later
  change of how keys are made (or of the campaign's resolution) never gives a called member a second key.
* ``failed`` is only for Voucherify's definite refusals; a member whose calls failed only transiently stays
  ``sending`` and is served by the next run.
* Every API call is logged in ``calls`` before it is sent, so a resumed run knows how much of the server's rate
  window the dead run used, and the summary can count calls per code.
* One process at a time: :meth:`Journal.lock` takes an exclusive ``flock`` on ``<journal>.lock`` beside the
  journal's *real* file (symlinks and ``..`` resolved) and on the journal file itself (so a hard link is caught
  too), released by the kernel when the process dies (kill -9 included), so an overlapping cron run refuses
  instead of publishing twice, whatever name it reaches the journal by.
* One Voucherify project: the journal records the API host and a digest of the app id it was made against
  (:meth:`Journal.bind_project`), so sandbox codes never pass for real ones.
* WAL mode with ``synchronous=NORMAL``: a process crash at any moment leaves a consistent file; a power loss can
  lose the last commits, which is harmless because re-sending a publication is idempotent.

Identities are stored as TEXT exactly as read; SQLite compares them byte for byte.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Self

from .config import MEMBERS, publication_source_id_v1
from .errors import JournalError, JournalLocked, StorageError

SCHEMA_VERSION = 6

#: Skipped rows kept as examples per run and reason; the rest are only counted (``skipped_counts``), so a file of
#: billions of blank or repeated lines costs a few rows, not one per line.
SKIPPED_EXAMPLES = 1000

#: A row of the segment as messages and reports name it: its number, or ``file:number`` in a segment of several
#: parts (stored as TEXT in the INTEGER columns ``seen_row`` and ``skipped.row``, which SQLite allows).
RowLabel = int | str

PENDING = "pending"
SENDING = "sending"
DONE = "done"
FAILED = "failed"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY,
    started_at REAL NOT NULL,
    ended_at REAL,
    pid INTEGER NOT NULL,
    segment TEXT,
    exit_code INTEGER,
    reason TEXT,
    summary TEXT,
    loaded_at REAL               -- when the run had read its whole segment (NULL: interrupted while reading)
);
CREATE TABLE IF NOT EXISTS members (
    id INTEGER PRIMARY KEY,
    identity TEXT NOT NULL UNIQUE,
    state TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'sending', 'done', 'failed')),
    code TEXT,
    publication_id TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    error_status INTEGER,
    error_key TEXT,
    error_message TEXT,
    request_id TEXT,
    first_run INTEGER NOT NULL,
    seen_run INTEGER NOT NULL,   -- the last run whose segment held this member
    seen_seq INTEGER NOT NULL,   -- its position in that run's segment (dispatch order)
    seen_row INTEGER NOT NULL,   -- its row in that run's segment file ('file:row' in a segment of several parts)
    done_run INTEGER,
    updated_at REAL NOT NULL,
    watched_run INTEGER,         -- deliver_to=leavers: the last complete run whose segment held this member
    owed_run INTEGER,            -- deliver_to=leavers: the run that found this member gone (it is owed a code)
    source_id TEXT,              -- the publication key its first call was made with (NULL: never called)
    CHECK (state <> 'done' OR code IS NOT NULL)
);
CREATE INDEX IF NOT EXISTS members_by_run ON members (seen_run, seen_seq);
CREATE TABLE IF NOT EXISTS skipped (   -- at most SKIPPED_EXAMPLES rows per run and reason, in file order
    run_id INTEGER NOT NULL,
    row INTEGER NOT NULL,        -- the row number, or 'file:row' in a segment of several parts
    value TEXT NOT NULL,
    reason TEXT NOT NULL,
    detail TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS skipped_by_run ON skipped (run_id, row);
CREATE TABLE IF NOT EXISTS skipped_counts (   -- every skipped row, counted
    run_id INTEGER NOT NULL,
    reason TEXT NOT NULL,
    count INTEGER NOT NULL,
    PRIMARY KEY (run_id, reason)
);
CREATE TABLE IF NOT EXISTS calls (
    id INTEGER PRIMARY KEY,
    run_id INTEGER NOT NULL,
    at REAL NOT NULL,            -- Unix time the call was about to be sent
    kind TEXT NOT NULL,          -- publish | lookup | campaign
    member_id INTEGER,
    outcome TEXT,                -- ok | refused | rate_limited | server_error | timeout | connection | ...; NULL: no answer recorded
    status INTEGER,              -- the HTTP status of the answer
    request_id TEXT              -- Voucherify's request_id, when its answer gave one
);
CREATE INDEX IF NOT EXISTS calls_by_time ON calls (at);
"""

# MIGRATION(h7-clevertap): schema 6 adds the table `pushes`, each member's CleverTap push state, and the table
# `code_expiry`, the expiration date of each member's voucher (when it has one), both keyed on the member; nothing
# else changes and no existing row is touched.  New journals get them with the rest of the schema;
# older journals get them from the `version < 6` step of Journal._migrate.  Both statements are idempotent.
_PUSH_TABLES = (
    """CREATE TABLE IF NOT EXISTS pushes (
    member_id INTEGER PRIMARY KEY,
    code TEXT NOT NULL,          -- the code this state is about (a member's code never changes; checked anyway)
    state TEXT NOT NULL CHECK (state IN ('pushed', 'failed', 'again')),  -- again: `push --all` asked to resend
    attempts INTEGER NOT NULL DEFAULT 0,
    error_code INTEGER,          -- CleverTap's code (per record or HTTP status) of a final failure
    error_message TEXT,
    pushed_at REAL,              -- Unix time CleverTap confirmed it holds the code
    updated_at REAL NOT NULL
)""",
    """CREATE TABLE IF NOT EXISTS code_expiry (
    member_id INTEGER PRIMARY KEY,
    expires_at REAL NOT NULL     -- Unix time the member's voucher expires (Voucherify's expiration_date)
)""",
)
_PUSH_SCHEMA = "".join(f"{statement};\n" for statement in _PUSH_TABLES)


@dataclass(frozen=True)
class Member:
    id: int
    identity: str
    state: str
    attempts: int
    seen_seq: int
    seen_row: RowLabel
    #: the publication ``source_id`` of its first call; ``None`` until a call was logged
    source_id: str | None = None


@dataclass(frozen=True)
class LoadResult:
    """What one batch of segment rows did to the journal."""

    added: int
    #: rows whose identity appeared earlier in the same segment: ``(row, identity, first_row)``
    duplicates: list[tuple[RowLabel, str, RowLabel]]


@dataclass(frozen=True)
class Failure:
    identity: str
    row: RowLabel
    status: int | None
    key: str | None
    message: str | None
    request_id: str | None
    attempts: int


class Journal:
    """One distribution's SQLite journal.  Not shared between threads; open one per thread."""

    def __init__(self, path: Path, connection: sqlite3.Connection, readonly: bool) -> None:
        self.path = path
        self._db = connection
        self._readonly = readonly
        self._lock_handles: list[int] = []

    # ------------------------------------------------------------------ opening
    @classmethod
    def open(cls, path: Path | str, *, readonly: bool = False, lock: bool = False) -> Journal:
        """Open (or create) the journal at ``path``.  ``lock``: take it for this process *before* SQLite opens it
        (:class:`JournalLocked` when another process holds it): SQLite names its WAL after the path, so a second
        writer reaching the file under another name (a hard link) must never open it while the first writes."""
        path = Path(path)
        handles: list[int] = []
        if lock and not readonly:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                handles = _take_locks(path)
            except OSError as exc:
                raise JournalError(f"journal {path} cannot be opened: {exc.strerror or exc}") from None
        try:
            journal = cls._open(path, readonly)
        except BaseException:
            _release(handles)
            raise
        journal._lock_handles = handles
        return journal

    @classmethod
    def _open(cls, path: Path, readonly: bool) -> Journal:
        if readonly:
            if not path.exists():
                raise JournalError(f"journal {path} does not exist")
            uri = f"file:{path.resolve()}?mode=ro"
            connection = _connect(uri, uri=True)
        else:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                connection = _connect(str(path))
            except (OSError, sqlite3.Error) as exc:
                raise JournalError(f"journal {path} cannot be opened: {getattr(exc, 'strerror', None) or exc}") from None
        journal = cls(path, connection, readonly)
        try:
            journal._prepare()
        except StorageError as exc:
            connection.close()
            raise JournalError(str(exc)) from None
        except sqlite3.DatabaseError as exc:
            connection.close()
            raise JournalError(f"journal {path} is not a usable SQLite journal: {exc}") from None
        return journal

    def _prepare(self) -> None:
        if self._readonly:
            self._check_version()
            return
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA + _PUSH_SCHEMA)
        self._check_version()

    def _check_version(self) -> None:
        try:
            row = self._db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        except sqlite3.OperationalError:
            raise JournalError(f"{self.path} is not a distributor journal") from None
        if row is None:
            if self._readonly:
                raise JournalError(f"{self.path} is not a distributor journal")
            self.set_meta(schema_version=str(SCHEMA_VERSION))
        elif int(row[0]) > SCHEMA_VERSION:
            raise JournalError(
                f"journal {self.path} was written by a newer distributor (schema {row[0]}); upgrade distributor"
            )
        elif int(row[0]) < SCHEMA_VERSION and not self._readonly:
            self._migrate(int(row[0]))

    def _migrate(self, version: int) -> None:
        """Bring an older journal up to :data:`SCHEMA_VERSION`, one step at a time, each in one transaction."""
        with self._transaction():
            if version < 2:
                # v2: runs.loaded_at; earlier runs that ended other than "unusable input" had read their segment
                self._db.execute("ALTER TABLE runs ADD COLUMN loaded_at REAL")
                self._db.execute("UPDATE runs SET loaded_at = started_at WHERE exit_code IS NULL OR exit_code <> 2")
            if version < 3:
                self._migrate_leavers_and_call_outcomes()
            if version < 4:
                self._migrate_skipped_counts()
            if version < 5:
                self._migrate_publication_keys()
            if version < 6:
                # MIGRATION(h7-clevertap): v6 adds the CleverTap push-state and code-expiry tables (_PUSH_SCHEMA)
                for statement in _PUSH_TABLES:
                    self._db.execute(statement)
            self._db.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION),))

    def _migrate_leavers_and_call_outcomes(self) -> None:
        # MIGRATION(h6-leavers): v3 adds
        #   members.watched_run, members.owed_run  (deliver_to=leavers: the watch list and the leavers owed a code);
        #   calls.outcome, calls.status, calls.request_id  (how each API call ended, for `export --calls`).
        # Existing rows keep NULL: an older journal has no watch list (its runs delivered to members) and its
        # calls' outcomes were never recorded (exported as "unknown").
        for table, column, kind in (
            ("members", "watched_run", "INTEGER"),
            ("members", "owed_run", "INTEGER"),
            ("calls", "outcome", "TEXT"),
            ("calls", "status", "INTEGER"),
            ("calls", "request_id", "TEXT"),
        ):
            self._add_column(table, column, kind)

    def _add_column(self, table: str, column: str, kind: str) -> None:
        """``ALTER TABLE … ADD COLUMN`` unless the column is there: a migration step may meet a journal that
        already has it (created by this version's schema, or a step that ran before its version was recorded)."""
        present = {row[1] for row in self._db.execute(f"PRAGMA table_info({table})")}
        if column not in present:
            self._db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")

    # MIGRATION(h2-segment): v4 counts skipped rows in ``skipped_counts`` (created by _SCHEMA, as for a new
    # journal) and keeps only SKIPPED_EXAMPLES of them per run and reason in ``skipped``.  An older journal's
    # skipped rows are all kept and counted here, so its reports and counts stay what they were.
    def _migrate_skipped_counts(self) -> None:
        self._db.execute(
            """INSERT OR REPLACE INTO skipped_counts (run_id, reason, count)
               SELECT run_id, reason, count(*) FROM skipped GROUP BY run_id, reason"""
        )

    def _migrate_publication_keys(self) -> None:
        """# MIGRATION(h1-voucherify): v5 adds members.source_id, and transient failures are not final.

        1. Add ``members.source_id``.  Every member already called (``attempts > 0``) was called under the old key,
           ``publication_source_id_v1(distribution, identity)``: store it, so that a ``sending`` member whose
           first answer was lost is re-sent under that same key (and gets the code Voucherify committed), never
           under the new campaign-bound key.  (No distribution in the journal: no call was ever made.)
        2. Members that old versions marked ``failed`` only because their transient retries ran out
           (``error_key`` ``retries_exhausted…``) become ``sending`` again, so the next run serves them without
           ``--retry-failed``; their last error stays in the row for the record.
        """
        self._add_column("members", "source_id", "TEXT")
        row = self._db.execute("SELECT value FROM meta WHERE key = 'distribution'").fetchone()
        distribution = row[0] if row is not None and row[0] else None
        if distribution is not None:
            called = self._db.execute("SELECT id, identity FROM members WHERE attempts > 0").fetchall()
            self._db.executemany(
                "UPDATE members SET source_id = ? WHERE id = ? AND source_id IS NULL",
                [(publication_source_id_v1(distribution, identity), member_id) for member_id, identity in called],
            )
        self._db.execute(
            "UPDATE members SET state = 'sending' WHERE state = 'failed' AND error_key LIKE 'retries_exhausted%'"
        )

    def close(self) -> None:
        self._db.close()
        self.unlock()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ one process at a time
    @property
    def lock_path(self) -> Path:
        """``<journal>.lock`` beside the journal's real file: every name of the journal finds the same lock."""
        real = Path(os.path.realpath(self.path))
        return real.with_name(real.name + ".lock")

    def lock(self) -> None:
        """Take the journal for this process, or raise :class:`JournalLocked` naming the holder (see
        :func:`_take_locks`).  Prefer ``Journal.open(path, lock=True)``, which locks before SQLite opens the file."""
        if not self._lock_handles:
            self._lock_handles = _take_locks(self.path)

    def unlock(self) -> None:
        _release(self._lock_handles)
        self._lock_handles = []

    # ------------------------------------------------------------------ meta
    def meta(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else row[0]

    def set_meta(self, **values: str) -> None:
        with self._transaction():
            self._db.executemany(
                "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                list(values.items()),
            )

    def bind_project(self, *, host: str, project: str) -> str | None:
        """Bind this journal to the Voucherify ``host`` and ``project`` (a digest of the app id) of this run.

        Refuses (:class:`JournalError`) a journal bound to another host or project: its codes exist only there.
        A journal made before journals recorded their project adopts this one; the returned note says so (else
        ``None``).
        """
        known_host, known_project = self.meta("api_host"), self.meta("project")
        if known_host is None or known_project is None:
            adopted = self.meta("distribution") is not None or bool(self.runs())
            self.set_meta(api_host=host, project=project)
            if adopted:
                return f"journal {self.path} did not record its Voucherify project: it is now bound to {host} ({project})"
            return None
        self.check_project(host=host, project=project)
        return None

    def check_project(self, *, host: str, project: str) -> None:
        """Refuse (:class:`JournalError`) a run aimed at another Voucherify host or project than the journal's."""
        known_host, known_project = self.meta("api_host"), self.meta("project")
        if known_host is None or known_project is None or (known_host, known_project) == (host, project):
            return
        if known_host != host:
            what = f"was made against {_host_name(known_host)}, but this run is aimed at {_host_name(host)}"
        else:
            what = f"was made with the keys of project {known_project} on {known_host}, but this run uses project {project}"
        raise JournalError(
            f"journal {self.path} {what}: its codes exist only there. To start afresh there, give this run a fresh "
            "journal: another --output (or --state)"
        )

    def check_belongs(self, *, key: str, distribution: str | None, campaign: str, segment: object) -> None:
        """Refuse (:class:`JournalError`) a journal written for another key kind, distribution or campaign."""
        known_key = self.meta("key")
        if known_key and known_key != key:
            raise JournalError(
                f"journal {self.path} holds CleverTap {known_key}s, but {segment} is keyed on {key}: "
                "use another --state for another kind of key"
            )
        known_distribution = self.meta("distribution")
        if distribution and known_distribution and distribution != known_distribution:
            raise JournalError(
                f"journal {self.path} belongs to distribution {known_distribution!r}, not {distribution!r}: "
                "give a new distribution its own --output (or --state)"
            )
        known_campaign, known_campaign_id = self.meta("campaign"), self.meta("campaign_id")
        if known_campaign and campaign not in (known_campaign, known_campaign_id):
            raise JournalError(
                f"journal {self.path} belongs to campaign {known_campaign!r} ({known_campaign_id}), not "
                f"{campaign!r}: give another campaign its own --output (or --state)"
            )

    # ------------------------------------------------------------------ runs
    def start_run(self, segment: str) -> int:
        with self._transaction():
            cursor = self._db.execute(
                "INSERT INTO runs (started_at, pid, segment) VALUES (?, ?, ?)", (time.time(), os.getpid(), segment)
            )
        return int(cursor.lastrowid or 0)

    def finish_run(self, run_id: int, *, exit_code: int, reason: str, summary: str) -> None:
        with self._transaction():
            self._db.execute(
                "UPDATE runs SET ended_at = ?, exit_code = ?, reason = ?, summary = ? WHERE id = ?",
                (time.time(), exit_code, reason, summary, run_id),
            )

    def mark_loaded(self, run_id: int) -> None:
        """Record that run ``run_id`` has read its whole segment (its skipped and left reports are complete)."""
        with self._transaction():
            self._db.execute("UPDATE runs SET loaded_at = ? WHERE id = ?", (time.time(), run_id))

    def runs(self) -> list[sqlite3.Row]:
        return self._db.execute("SELECT * FROM runs ORDER BY id").fetchall()

    # ------------------------------------------------------------------ loading the segment
    def load(self, run_id: int, rows: Sequence[tuple[int, RowLabel, str]]) -> LoadResult:
        """Record one batch of valid segment rows ``(seq, row, identity)`` as members of ``run_id``.

        New identities become ``pending`` members; known ones (from earlier runs) are marked as seen in this run
        and keep their state and code; an identity seen earlier *in this run* is a duplicate, returned to be
        reported.  One transaction per batch.
        """
        now = time.time()
        added = 0
        duplicates: list[tuple[RowLabel, str, RowLabel]] = []
        with self._transaction():
            for seq, row, identity in rows:
                returned = self._db.execute(
                    """INSERT INTO members (identity, first_run, seen_run, seen_seq, seen_row, updated_at)
                       VALUES (?, ?, ?, ?, ?, ?)
                       ON CONFLICT (identity) DO UPDATE
                       SET seen_run = excluded.seen_run, seen_seq = excluded.seen_seq, seen_row = excluded.seen_row
                       WHERE members.seen_run <> excluded.seen_run
                       RETURNING first_run""",
                    (identity, run_id, run_id, seq, row, now),
                ).fetchall()
                if not returned:  # already seen in this very run: a duplicate row
                    first = self._db.execute("SELECT seen_row FROM members WHERE identity = ?", (identity,)).fetchone()
                    duplicates.append((row, identity, first[0]))
                elif returned[0][0] == run_id:
                    added += 1
        return LoadResult(added, duplicates)

    def record_skipped(self, run_id: int, rows: Iterable[tuple[RowLabel, str, str, str]]) -> None:
        """Count invalid or duplicate rows ``(row, value, reason, detail)`` of this run's segment, given in file
        order, and keep the first :data:`SKIPPED_EXAMPLES` of each reason as examples.  One transaction."""
        with self._transaction():
            counts = dict(
                self._db.execute("SELECT reason, count FROM skipped_counts WHERE run_id = ?", (run_id,)).fetchall()
            )
            kept: list[tuple[RowLabel, str, str, str]] = []
            for row in rows:
                reason = row[2]
                if counts.get(reason, 0) < SKIPPED_EXAMPLES:
                    kept.append(row)
                counts[reason] = counts.get(reason, 0) + 1
            self._db.executemany(
                "INSERT INTO skipped (run_id, row, value, reason, detail) VALUES (?, ?, ?, ?, ?)",
                [(run_id, *row) for row in kept],
            )
            self._db.executemany(
                "INSERT OR REPLACE INTO skipped_counts (run_id, reason, count) VALUES (?, ?, ?)",
                [(run_id, reason, count) for reason, count in counts.items()],
            )

    def skipped(self, run_id: int) -> Iterator[tuple[RowLabel, str, str, str]]:
        """``(row, value, reason, detail)`` of the rows this run's segment skipped, in file order, as far as they
        are kept; then, for a reason with more rows than were kept, one line ``("", "", reason, "N more …")``
        saying how many are not listed."""
        for row in self._db.execute(
            "SELECT row, value, reason, detail FROM skipped WHERE run_id = ? ORDER BY rowid", (run_id,)
        ):
            yield tuple(row)
        listed = dict(
            self._db.execute("SELECT reason, count(*) FROM skipped WHERE run_id = ? GROUP BY reason", (run_id,))
        )
        for reason, count in sorted(self.skipped_counts(run_id).items()):
            unlisted = count - listed.get(reason, 0)
            if unlisted > 0:
                detail = f"{unlisted:,} more rows not listed: only the first {SKIPPED_EXAMPLES:,} of each reason are kept"
                yield "", "", reason, detail

    def skipped_unlisted(self, run_id: int) -> int:
        """Skipped rows of this run's segment counted but not kept as examples (not listed in the report)."""
        listed = self._db.execute("SELECT count(*) FROM skipped WHERE run_id = ?", (run_id,)).fetchone()[0]
        return sum(self.skipped_counts(run_id).values()) - int(listed)

    def skipped_counts(self, run_id: int) -> dict[str, int]:
        """Every skipped row of this run's segment, counted by reason (listed or not)."""
        if not self._has_table("skipped_counts"):  # an older journal opened read-only: not migrated yet
            rows = self._db.execute("SELECT reason, count(*) FROM skipped WHERE run_id = ? GROUP BY reason", (run_id,))
        else:
            rows = self._db.execute("SELECT reason, count FROM skipped_counts WHERE run_id = ?", (run_id,))
        return {reason: count for reason, count in rows}

    def _has_table(self, name: str) -> bool:
        found = self._db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)).fetchone()
        return found is not None

    # ------------------------------------------------------------------ the work
    def work(self, run_id: int, *, after_seq: int, limit: int, retry_failed: bool = False) -> list[Member]:
        """Members of this run's segment still without a code, in segment order, after position ``after_seq``."""
        states = (PENDING, SENDING, FAILED) if retry_failed else (PENDING, SENDING)
        marks = ",".join("?" * len(states))
        rows = self._db.execute(
            f"""SELECT id, identity, state, attempts, seen_seq, seen_row, source_id FROM members
                WHERE seen_run = ? AND seen_seq > ? AND state IN ({marks})
                ORDER BY seen_seq LIMIT ?""",
            (run_id, after_seq, *states, limit),
        ).fetchall()
        return [Member(*row) for row in rows]

    def log_call(
        self,
        run_id: int,
        kind: str,
        member_id: int | None = None,
        at: float | None = None,
        *,
        source_id: str | None = None,
    ) -> int:
        """Record an API call about to be sent; a publication also marks its member ``sending`` and pins its key
        (``source_id``) unless it already has one.  Commits.  Returns the call's id, for
        :meth:`record_call_outcome`."""
        at = time.time() if at is None else at
        with self._transaction():
            cursor = self._db.execute(
                "INSERT INTO calls (run_id, at, kind, member_id) VALUES (?, ?, ?, ?)", (run_id, at, kind, member_id)
            )
            if kind == "publish" and member_id is not None:
                self._db.execute(
                    """UPDATE members SET state = 'sending', attempts = attempts + 1, updated_at = ?,
                           source_id = coalesce(source_id, ?)
                       WHERE id = ? AND state <> 'done'""",
                    (at, source_id, member_id),
                )
        return int(cursor.lastrowid or 0)

    def record_call_outcome(self, call_id: int, *, outcome: str, status: int | None, request_id: str | None) -> None:
        """Record how call ``call_id`` ended: ``outcome`` (``ok``, ``refused``, ``timeout``, …), the HTTP status and
        Voucherify's ``request_id``.  Commits."""
        with self._transaction():
            self._db.execute(
                "UPDATE calls SET outcome = ?, status = ?, request_id = ? WHERE id = ?",
                (outcome, status, request_id, call_id),
            )

    def source_id(self, member_id: int) -> str | None:
        """The publication key this member's calls are made with (``None``: never called)."""
        row = self._db.execute("SELECT source_id FROM members WHERE id = ?", (member_id,)).fetchone()
        return None if row is None else row[0]

    def complete(
        self, member_id: int, run_id: int, *, code: str, publication_id: str | None, expires_at: float | None = None
    ) -> None:
        """Save the code Voucherify holds for this member (and when it expires, if it does).  Commits."""
        with self._transaction():
            if expires_at is not None:  # h7-clevertap: --expiry-property
                self._db.execute(
                    "INSERT OR REPLACE INTO code_expiry (member_id, expires_at) VALUES (?, ?)", (member_id, expires_at)
                )
            self._db.execute(
                """UPDATE members SET state = 'done', code = ?, publication_id = ?, done_run = ?,
                       error_status = NULL, error_key = NULL, error_message = NULL, request_id = NULL, updated_at = ?
                   WHERE id = ?""",
                (code, publication_id, run_id, time.time(), member_id),
            )

    def fail(
        self,
        member_id: int,
        *,
        status: int | None,
        key: str | None,
        message: str | None,
        request_id: str | None,
    ) -> None:
        """Record a failure that retrying will not mend (Voucherify's ``key``, ``message``, ``request_id``)."""
        with self._transaction():
            self._db.execute(
                """UPDATE members SET state = 'failed', error_status = ?, error_key = ?, error_message = ?,
                       request_id = ?, updated_at = ?
                   WHERE id = ? AND state <> 'done'""",
                (status, key, message, request_id, time.time(), member_id),
            )

    # ------------------------------------------------------------------ deliver_to = leavers
    # A leavers distribution loads its segment like any other (every member seen is recorded, new ones as
    # `pending`), but those members are the *watch list*, not recipients.  A run that completes (exit 0/1) makes its
    # segment the watch list (`watched_run`, meta `watch_run`); the next run, once it has read its whole segment,
    # records every watched member absent from it and without a code as owed a code (`owed_run`).  The owed set is
    # what a run serves and resumes: it is never recomputed from a later export.

    def check_delivery(self, deliver_to: str) -> None:
        """Refuse (:class:`JournalError`) a journal whose runs delivered to the other audience."""
        known = self.meta("deliver_to") or (MEMBERS if self.latest_run() is not None else None)
        if known and known != deliver_to:
            raise JournalError(
                f"journal {self.path} belongs to a distribution that delivers to {known}, not {deliver_to}: "
                f"give --deliver-to {deliver_to} its own --output (or --state)"
            )

    def watch_baseline(self) -> int:
        """The run whose segment is the watch list (the last complete run of a leavers distribution), or 0."""
        return int(self.meta("watch_run") or 0)

    def mark_leavers(self, run_id: int) -> int:
        """Run ``run_id`` has read its whole segment: record the watched members absent from it who hold no code as
        owed one.  Returns how many were newly recorded (0 without a watch list: the first run)."""
        baseline = self.watch_baseline()
        if not baseline:
            return 0
        with self._transaction():
            cursor = self._db.execute(
                """UPDATE members SET owed_run = ?
                   WHERE watched_run = ? AND seen_run < ? AND owed_run IS NULL AND state <> 'done'""",
                (run_id, baseline, run_id),
            )
        return cursor.rowcount

    def record_watch_list(self, run_id: int) -> None:
        """Run ``run_id`` completed: its segment becomes the watch list the next run is compared with."""
        with self._transaction():
            self._db.execute("UPDATE members SET watched_run = ? WHERE seen_run = ?", (run_id, run_id))
            self._db.execute(
                "INSERT INTO meta (key, value) VALUES ('watch_run', ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (str(run_id),),
            )

    def leaver_work(self, *, after_id: int, limit: int, retry_failed: bool = False) -> list[Member]:
        """Owed leavers still without a code, in the order they were first seen, after member ``after_id``."""
        states = (PENDING, SENDING, FAILED) if retry_failed else (PENDING, SENDING)
        marks = ",".join("?" * len(states))
        rows = self._db.execute(
            f"""SELECT id, identity, state, attempts, seen_seq, seen_row FROM members
                WHERE owed_run IS NOT NULL AND id > ? AND state IN ({marks})
                ORDER BY id LIMIT ?""",
            (after_id, *states, limit),
        ).fetchall()
        return [Member(*row) for row in rows]

    def leaver_counts(self) -> dict[str, int]:
        """The leavers owed a code, by state (``done``: served)."""
        counts = {PENDING: 0, SENDING: 0, DONE: 0, FAILED: 0}
        counts.update(
            {state: n for state, n in self._db.execute(
                "SELECT state, count(*) FROM members WHERE owed_run IS NOT NULL GROUP BY state"
            )}
        )
        return counts

    def leavers_found(self, run_id: int) -> int:
        """Leavers run ``run_id`` found (recorded as owed a code)."""
        row = self._db.execute("SELECT count(*) FROM members WHERE owed_run = ?", (run_id,)).fetchone()
        return int(row[0])

    # ------------------------------------------------------------------ reading
    def calls_since(self, since: float) -> list[float]:
        """Unix times of the calls logged after ``since`` (any run), oldest first."""
        return [row[0] for row in self._db.execute("SELECT at FROM calls WHERE at > ? ORDER BY at", (since,))]

    def call_counts(self, run_id: int) -> dict[str, int]:
        rows = self._db.execute("SELECT kind, count(*) FROM calls WHERE run_id = ? GROUP BY kind", (run_id,))
        return {kind: count for kind, count in rows}

    def state_counts(self, run_id: int | None = None) -> dict[str, int]:
        """Members by state; with ``run_id``, only the members of that run's segment."""
        where, args = ("WHERE seen_run = ?", (run_id,)) if run_id is not None else ("", ())
        rows = self._db.execute(f"SELECT state, count(*) FROM members {where} GROUP BY state", args)
        counts = {PENDING: 0, SENDING: 0, DONE: 0, FAILED: 0}
        counts.update({state: count for state, count in rows})
        return counts

    def held_before(self, run_id: int) -> int:
        """Members of this run's segment that already held a code when the run started."""
        row = self._db.execute(
            "SELECT count(*) FROM members WHERE seen_run = ? AND state = 'done' AND done_run < ?", (run_id, run_id)
        ).fetchone()
        return int(row[0])

    def left_segment(self, run_id: int) -> int:
        """Members of earlier runs that are not in this run's segment (they are reported, never touched)."""
        row = self._db.execute("SELECT count(*) FROM members WHERE seen_run < ?", (run_id,)).fetchone()
        return int(row[0])

    def codes(self) -> Iterator[tuple[str, str]]:
        """``(identity, code)`` of every member holding a code, in order of first appearance."""
        rows = self._db.execute("SELECT identity, code FROM members WHERE state = 'done' ORDER BY id")
        yield from ((identity, code) for identity, code in rows)

    def failures(self) -> Iterator[Failure]:
        yield from (
            Failure(*row)
            for row in self._db.execute(
                """SELECT identity, seen_row, error_status, error_key, error_message, request_id, attempts
                   FROM members WHERE state = 'failed' ORDER BY id"""
            )
        )

    def call_records(self) -> Iterator[sqlite3.Row]:
        """Every API call logged, oldest first: ``at`` (Unix time), ``run_id``, ``kind``, the member's ``identity``
        (NULL for a campaign check), ``outcome``, ``status``, ``request_id``."""
        yield from self._db.execute(
            """SELECT c.id, c.at, c.run_id, c.kind, m.identity, c.outcome, c.status, c.request_id
               FROM calls c LEFT JOIN members m ON m.id = c.member_id ORDER BY c.at, c.id"""
        )

    def published_member_ids(self) -> list[int]:
        """Members that hold a code or were ever sent a publication (Voucherify may hold one for them)."""
        return [row[0] for row in self._db.execute(
            "SELECT id FROM members WHERE state = 'done' OR attempts > 0 ORDER BY id"
        )]

    def members_by_id(self, ids: Sequence[int]) -> list[sqlite3.Row]:
        """The members with these ids, in id order."""
        rows: list[sqlite3.Row] = []
        for start in range(0, len(ids), 500):
            chunk = list(ids[start : start + 500])
            marks = ",".join("?" * len(chunk))
            rows += self._db.execute(f"SELECT * FROM members WHERE id IN ({marks}) ORDER BY id", chunk).fetchall()
        return sorted(rows, key=lambda row: int(row["id"]))

    def member(self, identity: str) -> sqlite3.Row | None:
        row: sqlite3.Row | None = self._db.execute("SELECT * FROM members WHERE identity = ?", (identity,)).fetchone()
        return row

    # ------------------------------------------------------------------ CleverTap push state (h7-clevertap)
    # A member needs pushing when it holds a code and CleverTap has not confirmed holding that very code.
    def unpushed(self, *, after_id: int, limit: int) -> list[tuple[int, str, str, float | None]]:
        """``(member_id, identity, code, expires_at)`` of members holding a code CleverTap has not confirmed."""
        return [
            (row[0], row[1], row[2], row[3])
            for row in self._db.execute(
                """SELECT m.id, m.identity, m.code, e.expires_at FROM members m
                   LEFT JOIN pushes p ON p.member_id = m.id LEFT JOIN code_expiry e ON e.member_id = m.id
                   WHERE m.state = 'done' AND m.id > ? AND (p.member_id IS NULL OR p.state <> 'pushed' OR p.code <> m.code)
                   ORDER BY m.id LIMIT ?""",
                (after_id, limit),
            )
        ]

    def mark_pushed(self, items: Iterable[tuple[int, str]], attempts: int) -> None:
        """CleverTap confirmed holding these ``(member_id, code)``.  Commits."""
        now = time.time()
        with self._transaction():
            self._db.executemany(
                """INSERT INTO pushes (member_id, code, state, attempts, pushed_at, updated_at)
                   VALUES (?, ?, 'pushed', ?, ?, ?)
                   ON CONFLICT (member_id) DO UPDATE SET code = excluded.code, state = 'pushed',
                       attempts = pushes.attempts + excluded.attempts, error_code = NULL, error_message = NULL,
                       pushed_at = excluded.pushed_at, updated_at = excluded.updated_at""",
                [(member_id, code, attempts, now, now) for member_id, code in items],
            )

    def mark_push_failed(self, items: Iterable[tuple[int, str, int | None, str]], attempts: int) -> None:
        """CleverTap did not take these ``(member_id, code, error_code, message)`` for good.  Commits."""
        now = time.time()
        with self._transaction():
            self._db.executemany(
                """INSERT INTO pushes (member_id, code, state, attempts, error_code, error_message, updated_at)
                   VALUES (?, ?, 'failed', ?, ?, ?, ?)
                   ON CONFLICT (member_id) DO UPDATE SET code = excluded.code, state = 'failed',
                       attempts = pushes.attempts + excluded.attempts, error_code = excluded.error_code,
                       error_message = excluded.error_message, updated_at = excluded.updated_at""",
                [(member_id, code, attempts, error_code, message, now) for member_id, code, error_code, message in items],
            )

    def push_again(self) -> int:
        """``push --all``: forget what CleverTap confirmed, so every code is sent again.  Commits."""
        with self._transaction():
            return self._db.execute("UPDATE pushes SET state = 'again', updated_at = ?", (time.time(),)).rowcount

    def push_counts(self) -> dict[str, int]:
        """``pushed``, ``failed`` (final) and ``waiting`` among the members holding a code."""
        if not self._has_table("pushes"):  # a read-only journal older than schema 3
            held = self._db.execute("SELECT count(*) FROM members WHERE state = 'done'").fetchone()[0]
            return {"pushed": 0, "failed": 0, "waiting": held}
        counts = {"pushed": 0, "failed": 0, "waiting": 0}
        for state, count in self._db.execute(
            """SELECT CASE WHEN p.code = m.code AND p.state IN ('pushed', 'failed') THEN p.state ELSE 'waiting' END,
                      count(*)
               FROM members m LEFT JOIN pushes p ON p.member_id = m.id WHERE m.state = 'done' GROUP BY 1"""
        ):
            counts[state] = count
        return counts

    def push_failures(self) -> Iterator[tuple[str, int, str, int | None, str | None, int]]:
        """``(identity, row, code, error_code, error_message, attempts)`` of each code CleverTap did not take."""
        if not self._has_table("pushes"):
            return
        yield from (
            (row[0], row[1], row[2], row[3], row[4], row[5])
            for row in self._db.execute(
                """SELECT m.identity, m.seen_row, m.code, p.error_code, p.error_message, p.attempts
                   FROM pushes p JOIN members m ON m.id = p.member_id
                   WHERE p.state = 'failed' AND p.code = m.code AND m.state = 'done' ORDER BY m.id"""
            )
        )

    def codes_with_expiry(
        self, *, after_run: int = -1, through: int | None = None
    ) -> Iterator[tuple[str, str, float | None]]:
        """``(identity, code, expires_at)`` of every member holding a code — or, as :meth:`codes_published_after`,
        only those who got it in a run after ``after_run`` and no later than ``through`` — in order of first
        appearance."""
        last = through if through is not None else 2**62
        yield from (
            (row[0], row[1], row[2])
            for row in self._db.execute(
                """SELECT m.identity, m.code, e.expires_at FROM members m LEFT JOIN code_expiry e ON e.member_id = m.id
                   WHERE m.state = 'done' AND (? < 0 OR (m.done_run > ? AND m.done_run <= ?)) ORDER BY m.id""",
                (after_run, after_run, last),
            )
        )

    # ------------------------------------------------------------------ plumbing
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
                try:
                    self._db.execute("ROLLBACK")
                except sqlite3.Error:
                    pass
            raise StorageError(
                f"cannot write the journal {self.path}: {exc}; what it holds is safe: free space (or make the folder "
                "writable), then run the same command again to resume"
            ) from None

    # ------------------------------------------------------------------ operator tools (read-only)
    # Queries for `distributor plan`, `status` and `export`.  None of them writes to the journal, so they work on a
    # journal opened with ``readonly=True`` while a run is writing to it (WAL: readers never block the writer).

    @contextmanager
    def snapshot(self) -> Iterator[None]:
        """Read everything inside the block from one consistent state of the journal (a deferred read
        transaction): a run committing meanwhile is neither blocked nor seen half-way."""
        self._db.execute("BEGIN DEFERRED")
        try:
            yield
        finally:
            self._db.execute("COMMIT")

    def latest_run(self, *, loaded: bool = False) -> sqlite3.Row | None:
        """The newest run; ``loaded``: the newest that read its whole segment (a run interrupted or refused while
        reading may have loaded only part of it, so its segment says nothing about who left)."""
        where = "WHERE loaded_at IS NOT NULL" if loaded else ""
        row: sqlite3.Row | None = self._db.execute(f"SELECT * FROM runs {where} ORDER BY id DESC LIMIT 1").fetchone()
        return row

    def recent_runs(self, limit: int) -> list[sqlite3.Row]:
        """The ``limit`` newest runs, newest first."""
        return self._db.execute("SELECT * FROM runs ORDER BY id DESC LIMIT ?", (limit,)).fetchall()

    def last_finished_run(self, before: int) -> int:
        """The newest run before ``before`` that went through its whole segment (exit 0 or 1), or 0."""
        row = self._db.execute(
            "SELECT max(id) FROM runs WHERE id < ? AND exit_code IN (0, 1)", (before,)
        ).fetchone()
        return int(row[0] or 0)

    def codes_published_after(self, run_id: int, *, through: int | None = None) -> Iterator[tuple[str, str]]:
        """``(identity, code)`` of the members who got their code in a run after ``run_id`` (and, with
        ``through``, no later than run ``through``), in order of first appearance."""
        last = through if through is not None else 2**62
        yield from self._db.execute(
            "SELECT identity, code FROM members WHERE state = 'done' AND done_run > ? AND done_run <= ? ORDER BY id",
            (run_id, last),
        )

    def run_started_at(self, run_id: int) -> float | None:
        row = self._db.execute("SELECT started_at FROM runs WHERE id = ?", (run_id,)).fetchone()
        return None if row is None else float(row[0])

    def delivered_through(self, before: int) -> int:
        """The newest run before ``before`` whose codes are all in a delta file already: one that recorded its end
        with an ``upload`` in its summary (its files were written), or — a journal of a version before delta
        files — one that went through its whole segment (exit 0 or 1), whose ``<name>.new.csv`` held them.  0 when
        there is none.  A run that died (or failed before writing its files) is not one: its codes go into the
        next run's delta."""
        rows = self._db.execute(
            "SELECT id, exit_code, summary FROM runs WHERE id < ? AND ended_at IS NOT NULL ORDER BY id DESC",
            (before,),
        )
        for run_id, exit_code, summary in rows:
            recorded = _summary_of(summary)
            if "upload" in recorded or ("files" in recorded and exit_code in (0, 1)):
                return int(run_id)
        return 0

    def entered(self, run_id: int) -> int:
        """Members first seen in run ``run_id`` (they entered the segment since the earlier runs)."""
        row = self._db.execute("SELECT count(*) FROM members WHERE first_run = ?", (run_id,)).fetchone()
        return int(row[0])

    def left_members(self, run_id: int) -> Iterator[sqlite3.Row]:
        """Members of earlier runs absent from run ``run_id``'s segment: identity, state, code, and the run that
        last saw them (``seen_run``, ``seen_at``: its start, Unix time)."""
        yield from self._db.execute(
            """SELECT m.identity, m.state, m.code, m.seen_run, r.started_at AS seen_at
               FROM members m LEFT JOIN runs r ON r.id = m.seen_run
               WHERE m.seen_run < ? ORDER BY m.seen_run, m.seen_seq""",
            (run_id,),
        )

    def left_holding_code(self, run_id: int) -> int:
        row = self._db.execute(
            "SELECT count(*) FROM members WHERE seen_run < ? AND state = 'done'", (run_id,)
        ).fetchone()
        return int(row[0])

    def calls_between(self, since: float, until: float, run_id: int | None = None) -> dict[str, int]:
        """Calls logged in ``(since, until]`` by kind (of one run, or of any)."""
        where, args = ("AND run_id = ?", (run_id,)) if run_id is not None else ("", ())
        rows = self._db.execute(
            f"SELECT kind, count(*) FROM calls WHERE at > ? AND at <= ? {where} GROUP BY kind", (since, until, *args)
        )
        return {kind: count for kind, count in rows}

    def call_span(self, run_id: int) -> tuple[float | None, float | None]:
        """Unix times of run ``run_id``'s first and last call."""
        row = self._db.execute("SELECT min(at), max(at) FROM calls WHERE run_id = ?", (run_id,)).fetchone()
        return row[0], row[1]

    def codes_between(self, run_id: int, since: float, until: float) -> int:
        """Codes saved by run ``run_id`` in ``(since, until]``."""
        row = self._db.execute(
            "SELECT count(*) FROM members WHERE state = 'done' AND done_run = ? AND updated_at > ? AND updated_at <= ?",
            (run_id, since, until),
        ).fetchone()
        return int(row[0])

    def recent_failures(self, limit: int) -> list[sqlite3.Row]:
        """The ``limit`` most recent failed members, newest first, with Voucherify's error fields."""
        return self._db.execute(
            """SELECT identity, seen_row AS row, error_status AS status, error_key AS key, error_message AS message,
                      request_id, attempts, updated_at AS at
               FROM members WHERE state = 'failed' ORDER BY updated_at DESC, id DESC LIMIT ?""",
            (limit,),
        ).fetchall()

    def publication_history(self) -> tuple[int, int]:
        """``(publish and look-up calls, members that reached done or failed)`` over the journal's whole life."""
        calls = self._db.execute("SELECT count(*) FROM calls WHERE kind IN ('publish', 'lookup')").fetchone()[0]
        served = self._db.execute("SELECT count(*) FROM members WHERE state IN ('done', 'failed')").fetchone()[0]
        return int(calls), int(served)

    def compare_segment(self, identities: Iterable[str]) -> dict[str, int]:
        """How a segment's distinct ``identities`` stand in this journal, without writing to it.

        Returns the count per state of those already known (``pending``, ``sending``, ``done``, ``failed``), ``new``
        (unknown to the journal) and ``left`` (known, but not in ``identities``).  The identities go to a TEMP table,
        which lives outside the journal file (so this works on a read-only journal) and is dropped afterwards.
        """
        with self._plan_segment(identities):
            counts = {PENDING: 0, SENDING: 0, DONE: 0, FAILED: 0, "new": 0}
            with self.snapshot():
                for state, count in self._db.execute(
                    """SELECT m.state, count(*) FROM temp.plan_segment s
                       LEFT JOIN members m ON m.identity = s.identity GROUP BY m.state"""
                ):
                    counts["new" if state is None else state] = count
                counts["left"] = self._db.execute(
                    """SELECT count(*) FROM members m
                       WHERE NOT EXISTS (SELECT 1 FROM temp.plan_segment s WHERE s.identity = m.identity)"""
                ).fetchone()[0]
        return counts

    def compare_leavers(self, identities: Iterable[str]) -> dict[str, int]:
        """What a leavers run with a segment of ``identities`` would find, without writing to the journal:
        ``leaving`` (watched members absent from it, holding no code, not yet owed one), ``owed`` (recorded earlier
        and still without a code), ``failed`` (owed, refused before) and ``baseline`` (the watch list's run, 0: none
        yet, the run would record it)."""
        baseline = self.watch_baseline()
        with self._plan_segment(identities), self.snapshot():
            leaving = self._db.execute(
                """SELECT count(*) FROM members m
                   WHERE m.watched_run = ? AND m.owed_run IS NULL AND m.state <> 'done'
                     AND NOT EXISTS (SELECT 1 FROM temp.plan_segment s WHERE s.identity = m.identity)""",
                (baseline,),
            ).fetchone()[0] if baseline else 0
            owed = self.leaver_counts()
        return {
            "leaving": int(leaving),
            "owed": owed[PENDING] + owed[SENDING],
            "failed": owed[FAILED],
            "baseline": baseline,
        }

    @contextmanager
    def _plan_segment(self, identities: Iterable[str]) -> Iterator[None]:
        """The identities in a TEMP table ``plan_segment`` for the block (outside the journal file, so this works on
        a read-only journal), dropped afterwards."""
        self._db.execute("CREATE TEMP TABLE IF NOT EXISTS plan_segment (identity TEXT PRIMARY KEY)")
        try:
            self._db.execute("DELETE FROM temp.plan_segment")
            self._db.execute("BEGIN")
            batch: list[tuple[str]] = []
            for identity in identities:
                batch.append((identity,))
                if len(batch) >= 10_000:
                    self._db.executemany("INSERT OR IGNORE INTO temp.plan_segment VALUES (?)", batch)
                    batch = []
            self._db.executemany("INSERT OR IGNORE INTO temp.plan_segment VALUES (?)", batch)
            self._db.execute("COMMIT")
            yield
        finally:
            self._db.execute("DROP TABLE IF EXISTS temp.plan_segment")


def _summary_of(text: str | None) -> dict[str, object]:
    """A run's summary as recorded in ``runs.summary`` (``{}`` when absent or unreadable)."""
    try:
        summary = json.loads(text or "{}")
    except ValueError:
        return {}
    return summary if isinstance(summary, dict) else {}


#: SQLite's primary result codes of a storage failure: BUSY, LOCKED, READONLY, IOERR, FULL, CANTOPEN, PROTOCOL.
_STORAGE_FAILURES = frozenset({5, 6, 8, 10, 13, 14, 15})


def _take_locks(path: Path) -> list[int]:
    """Exclusive locks on the journal at ``path`` for this process, or :class:`JournalLocked` naming the holder.

    Two ``flock``s: on ``<journal>.lock`` beside the journal's real file (symlinks and ``..`` resolved; it records
    the holder for ``status`` and for the refusal), and on the journal file itself, which a hard link under
    another name shares too.  The kernel releases both when the process ends, however it ends.
    """
    real = Path(os.path.realpath(path))
    note = os.open(real.with_name(real.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o644)
    if not _try_flock(note):
        holder = os.pread(note, 200, 0).decode(errors="replace").strip() or "another process"
        os.close(note)
        raise _in_use(path, holder)
    try:
        journal = os.open(real, os.O_RDONLY | os.O_CREAT, 0o644)
    except OSError:
        os.close(note)
        raise
    if not _try_flock(journal):
        _release([journal, note])
        raise _in_use(path, "another process (through another name of the same file)")
    os.ftruncate(note, 0)
    os.pwrite(note, f"pid {os.getpid()} on {socket.gethostname()} since {time.strftime('%Y-%m-%d %H:%M:%S')}".encode(), 0)
    return [note, journal]


def _in_use(path: Path, holder: str) -> JournalLocked:
    return JournalLocked(
        f"journal {path} is in use by {holder}: another run of this distribution is still going; "
        "wait for it to end (or stop it), then run again"
    )


def _release(handles: list[int]) -> None:
    for handle in handles:
        os.close(handle)  # closing the descriptor releases its flock


def _try_flock(handle: int) -> bool:
    """An exclusive ``flock`` on ``handle`` without waiting: ``False`` while another process holds one."""
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _host_name(host: str) -> str:
    return "the embedded sandbox (--api-url sandbox)" if host == "sandbox" else host


def _connect(target: str, uri: bool = False) -> sqlite3.Connection:
    # isolation_level=None: we issue BEGIN/COMMIT ourselves, so every commit point is explicit.
    connection = sqlite3.connect(target, uri=uri, isolation_level=None, timeout=10.0, check_same_thread=False)
    connection.row_factory = sqlite3.Row
    return connection

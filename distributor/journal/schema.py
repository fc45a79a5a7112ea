"""The journal's tables, and the steps that bring an older journal up to :data:`SCHEMA_VERSION`.

Every statement here is idempotent (``IF NOT EXISTS``, columns added only when missing, counts rebuilt), so a step
may meet a journal that already has what it adds.  :func:`prepare` runs on every writable open.
"""

from __future__ import annotations

import sqlite3

from ..config import publication_source_id_v1
from ..errors import JournalError

SCHEMA_VERSION = 7

#: Skipped rows kept as examples per run and reason; the rest are only counted (``skipped_counts``), so a file of
#: billions of blank or repeated lines costs a few rows, not one per line.
SKIPPED_EXAMPLES = 1000

TABLES = """
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
    loaded_at REAL,              -- when the run had read its whole segment (NULL: interrupted while reading)
    segment_run INTEGER          -- the run whose segment it took over, its export being the same file (NULL: none)
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
    seen_run INTEGER NOT NULL,   -- the last run that read this member in its segment
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
    outcome TEXT,                -- ok | refused | rate_limited | server_error | timeout | connection | ...
                                 -- (NULL: no answer recorded)
    status INTEGER,              -- the HTTP status of the answer
    request_id TEXT              -- Voucherify's request_id, when its answer gave one
);
CREATE INDEX IF NOT EXISTS calls_by_time ON calls (at);
"""

# MIGRATION(h7-clevertap): schema 6 adds the table `pushes`, each member's CleverTap push state, and the table
# `code_expiry`, the expiration date of each member's voucher (when it has one), both keyed on the member; nothing
# else changes and no existing row is touched.
PUSH_TABLES = (
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

# Schema 7 (issue 13): counts kept as the rows change, so no start, resume or `status` counts a 10M-row table, and
# the indexes the reports need.
#
# * member_counts: members per (seen_run, state).  Journal.load adds the members it inserts, in the same
#   transaction (a trigger per inserted row would cost a tenth of the ingest); the trigger below moves a member
#   whose state or seen_run changes, whoever changes it.  No code deletes members; the delete trigger keeps the
#   counts exact if one ever does.
# * call_counts: calls per (run, kind), with the first and last call's time, kept by a trigger.
# * partial indexes: codes saved in a window (status), recent failures (status), the owed leavers; each holds only
#   the rows it is about (none for a `members` distribution's owed_run).
COUNTED = """
CREATE TABLE IF NOT EXISTS member_counts (
    seen_run INTEGER NOT NULL,
    state TEXT NOT NULL,
    n INTEGER NOT NULL,
    PRIMARY KEY (seen_run, state)
) WITHOUT ROWID;
CREATE TRIGGER IF NOT EXISTS members_counted_on_change AFTER UPDATE OF state, seen_run ON members
WHEN old.state IS NOT new.state OR old.seen_run IS NOT new.seen_run
BEGIN
    UPDATE member_counts SET n = n - 1 WHERE seen_run = old.seen_run AND state = old.state;
    INSERT INTO member_counts (seen_run, state, n) VALUES (new.seen_run, new.state, 1)
        ON CONFLICT (seen_run, state) DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER IF NOT EXISTS members_counted_on_delete AFTER DELETE ON members
BEGIN
    UPDATE member_counts SET n = n - 1 WHERE seen_run = old.seen_run AND state = old.state;
END;
CREATE TABLE IF NOT EXISTS call_counts (
    run_id INTEGER NOT NULL,
    kind TEXT NOT NULL,
    n INTEGER NOT NULL,
    first_at REAL NOT NULL,
    last_at REAL NOT NULL,
    PRIMARY KEY (run_id, kind)
) WITHOUT ROWID;
CREATE TRIGGER IF NOT EXISTS calls_counted AFTER INSERT ON calls
BEGIN
    INSERT INTO call_counts (run_id, kind, n, first_at, last_at) VALUES (new.run_id, new.kind, 1, new.at, new.at)
        ON CONFLICT (run_id, kind) DO UPDATE
        SET n = n + 1, first_at = min(first_at, excluded.first_at), last_at = max(last_at, excluded.last_at);
END;
CREATE INDEX IF NOT EXISTS members_done ON members (done_run, updated_at) WHERE state = 'done';
CREATE INDEX IF NOT EXISTS members_failed ON members (updated_at) WHERE state = 'failed';
CREATE INDEX IF NOT EXISTS members_owed ON members (owed_run, state) WHERE owed_run IS NOT NULL;
"""


def prepare(db: sqlite3.Connection, path: object, *, readonly: bool) -> int | None:
    """Create a new journal at ``path``, refuse a newer one; returns the schema version of an older one that
    :func:`migrate` must bring up to date (``None``: nothing to migrate)."""
    if not readonly:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        # one transaction: a new journal's tables cost one commit (and a few WAL pages), not one per statement
        db.executescript("BEGIN;\n" + TABLES + "".join(f"{statement};\n" for statement in PUSH_TABLES) + "COMMIT;")
    try:
        row = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    except sqlite3.OperationalError:
        raise JournalError(f"{path} is not a distributor journal") from None
    if row is None:
        if readonly:
            raise JournalError(f"{path} is not a distributor journal")
        db.executescript(
            f"BEGIN;\n{COUNTED}INSERT OR REPLACE INTO meta (key, value) VALUES ('schema_version', '{SCHEMA_VERSION}');\n"  # noqa: E501 (one SQL line)
            "COMMIT;"
        )
    elif int(row[0]) > SCHEMA_VERSION:
        raise JournalError(f"journal {path} was written by a newer distributor (schema {row[0]}); upgrade distributor")
    elif int(row[0]) < SCHEMA_VERSION and not readonly:
        return int(row[0])
    return None


def migrate(db: sqlite3.Connection, version: int) -> None:
    """Bring a journal of schema ``version`` up to :data:`SCHEMA_VERSION`, one step at a time, in one transaction
    (the caller's: see ``Journal._transaction``)."""
    if version < 2:
        # v2: runs.loaded_at; earlier runs that ended other than "unusable input" had read their segment
        add_column(db, "runs", "loaded_at", "REAL")
        db.execute("UPDATE runs SET loaded_at = started_at WHERE exit_code IS NULL OR exit_code <> 2")
    if version < 3:
        _leavers_and_call_outcomes(db)
    if version < 4:
        _skipped_counts(db)
    if version < 5:
        _publication_keys(db)
    if version < 6:
        # MIGRATION(h7-clevertap): v6 adds the CleverTap push-state and code-expiry tables (PUSH_TABLES)
        for statement in PUSH_TABLES:
            db.execute(statement)
    if version < 7:
        _counts(db)
    db.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION),))


def add_column(db: sqlite3.Connection, table: str, column: str, kind: str) -> None:
    """``ALTER TABLE … ADD COLUMN`` unless the column is there: a migration step may meet a journal that
    already has it (created by this version's schema, or a step that ran before its version was recorded)."""
    present = {row[1] for row in db.execute(f"PRAGMA table_info({table})")}
    if column not in present:
        db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")


def _leavers_and_call_outcomes(db: sqlite3.Connection) -> None:
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
        add_column(db, table, column, kind)


# MIGRATION(h2-segment): v4 counts skipped rows in ``skipped_counts`` (created by TABLES, as for a new
# journal) and keeps only SKIPPED_EXAMPLES of them per run and reason in ``skipped``.  An older journal's
# skipped rows are all kept and counted here, so its reports and counts stay what they were.
def _skipped_counts(db: sqlite3.Connection) -> None:
    db.execute(
        """INSERT OR REPLACE INTO skipped_counts (run_id, reason, count)
           SELECT run_id, reason, count(*) FROM skipped GROUP BY run_id, reason"""
    )


def _publication_keys(db: sqlite3.Connection) -> None:
    """# MIGRATION(h1-voucherify): v5 adds members.source_id, and transient failures are not final.

    1. Add ``members.source_id``.  Every member already called (``attempts > 0``) was called under the old key,
       ``publication_source_id_v1(distribution, identity)``: store it, so that a ``sending`` member whose
       first answer was lost is re-sent under that same key (and gets the code Voucherify committed), never
       under the new campaign-bound key.  (No distribution in the journal: no call was ever made.)
    2. Members that old versions marked ``failed`` only because their transient retries ran out
       (``error_key`` ``retries_exhausted…``) become ``sending`` again, so the next run serves them without
       ``--retry-failed``; their last error stays in the row for the record.
    """
    add_column(db, "members", "source_id", "TEXT")
    row = db.execute("SELECT value FROM meta WHERE key = 'distribution'").fetchone()
    distribution = row[0] if row is not None and row[0] else None
    if distribution is not None:
        called = db.execute("SELECT id, identity FROM members WHERE attempts > 0").fetchall()
        db.executemany(
            "UPDATE members SET source_id = ? WHERE id = ? AND source_id IS NULL",
            [(publication_source_id_v1(distribution, identity), member_id) for member_id, identity in called],
        )
    db.execute("UPDATE members SET state = 'sending' WHERE state = 'failed' AND error_key LIKE 'retries_exhausted%'")


def _counts(db: sqlite3.Connection) -> None:
    """MIGRATION(h11-journal-perf): v7 adds ``runs.segment_run``, the kept counts (``member_counts``,
    ``call_counts``, counted once here from the rows, then kept by the writer and the triggers) and the partial
    indexes of :data:`COUNTED`.  No existing row changes."""
    add_column(db, "runs", "segment_run", "INTEGER")
    for statement in _statements(COUNTED):  # one by one: executescript would commit the migration's transaction
        db.execute(statement)
    db.execute("DELETE FROM member_counts")
    db.execute(
        "INSERT INTO member_counts (seen_run, state, n) SELECT seen_run, state, count(*) FROM members GROUP BY 1, 2"
    )
    db.execute("DELETE FROM call_counts")
    db.execute(
        """INSERT INTO call_counts (run_id, kind, n, first_at, last_at)
           SELECT run_id, kind, count(*), min(at), max(at) FROM calls GROUP BY 1, 2"""
    )


def _statements(script: str) -> list[str]:
    """The statements of ``script`` (triggers kept whole), to run one by one inside a transaction."""
    statements: list[str] = []
    pending = ""
    for line in script.splitlines(keepends=True):
        pending += line
        if sqlite3.complete_statement(pending):
            statements.append(pending.strip())
            pending = ""
    return [statement for statement in statements if statement]

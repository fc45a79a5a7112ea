"""Schema 7's kept counts: members per (segment run, state) and calls per (run, kind) stay exactly what counting
the rows would say, through loads, calls, codes, failures, reruns and the migration from schema 6."""

from __future__ import annotations

import random
import sqlite3
from pathlib import Path

from distributor.journal import SCHEMA_VERSION, Journal


def load(journal: Journal, run: int, identities: list[str]):
    return journal.load(run, [(seq, seq + 1, identity) for seq, identity in enumerate(identities, 1)])


def kept(db: sqlite3.Connection) -> dict[tuple[int, str], int]:
    return {(run, state): n for run, state, n in db.execute("SELECT seen_run, state, n FROM member_counts") if n}


def counted(db: sqlite3.Connection) -> dict[tuple[int, str], int]:
    return {(run, state): n for run, state, n in db.execute("SELECT seen_run, state, count(*) FROM members GROUP BY 1, 2")}


def kept_calls(db: sqlite3.Connection) -> dict[tuple[int, str], tuple[int, float, float]]:
    return {(run, kind): (n, first, last) for run, kind, n, first, last in db.execute("SELECT * FROM call_counts")}


def counted_calls(db: sqlite3.Connection) -> dict[tuple[int, str], tuple[int, float, float]]:
    return {
        (run, kind): (n, first, last)
        for run, kind, n, first, last in db.execute(
            "SELECT run_id, kind, count(*), min(at), max(at) FROM calls GROUP BY 1, 2"
        )
    }


def assert_exact(journal: Journal) -> None:
    assert kept(journal._db) == counted(journal._db)
    assert kept_calls(journal._db) == counted_calls(journal._db)


def test_counts_stay_exact_through_loads_calls_codes_failures_and_reruns(tmp_path: Path) -> None:
    rng = random.Random(13)
    with Journal.open(tmp_path / "j.sqlite") as journal:
        for run_number in range(4):
            run = journal.start_run(f"day{run_number}.csv")
            # each day's export: some of the known members, some new ones, and repeats (duplicates)
            people = [f"m{n}" for n in rng.sample(range(300), 150)]
            people += rng.sample(people, 10)
            for start in range(0, len(people), 40):
                load(journal, run, people[start : start + 40])
            assert_exact(journal)
            for member in journal.work(run, after_seq=0, limit=60, retry_failed=True):
                journal.log_call(run, "publish", member.id, source_id=f"key-{member.identity}")
                roll = rng.random()
                if roll < 0.6:
                    journal.complete(member.id, run, code=f"C-{member.identity}", publication_id=None)
                elif roll < 0.8:
                    journal.fail(member.id, status=400, key="refused", message="no", request_id=None)
                journal.log_call(run, "lookup", member.id)
            journal.log_call(run, "campaign")
            assert_exact(journal)
            counts = journal.state_counts(run)
            assert sum(counts.values()) == len(set(people))
            assert journal.state_counts() == {
                state: sum(n for (_, s), n in counted(journal._db).items() if s == state)
                for state in ("pending", "sending", "done", "failed")
            }


def test_status_figures_come_from_the_kept_counts(tmp_path: Path) -> None:
    with Journal.open(tmp_path / "j.sqlite") as journal:
        first = journal.start_run("s.csv")
        load(journal, first, ["a", "b", "c"])
        a, b, _ = journal.work(first, after_seq=0, limit=10)
        journal.log_call(first, "publish", a.id, at=100.0)
        journal.complete(a.id, first, code="A", publication_id=None)
        journal.log_call(first, "publish", b.id, at=105.0)
        second = journal.start_run("s.csv")
        load(journal, second, ["b", "c", "d"])
        assert journal.call_counts(first) == {"publish": 2}
        assert journal.call_span(first) == (100.0, 105.0)
        assert journal.left_segment(second) == 1 and journal.left_holding_code(second) == 1
        assert journal.state_counts(second) == {"pending": 2, "sending": 1, "done": 0, "failed": 0}
        assert journal.held_before(second) == 0
        assert journal.publication_history() == (2, 1)


def downgrade_to_schema_6(path: Path) -> None:
    """What a journal written by the previous version (schema 6) holds: no kept counts, their triggers, the
    partial indexes or runs.segment_run."""
    with sqlite3.connect(path) as db:
        for kind, name in db.execute(
            "SELECT type, name FROM sqlite_master WHERE name IN ('member_counts', 'call_counts', "
            "'members_counted_on_change', 'members_counted_on_delete', 'calls_counted', 'members_done', "
            "'members_failed', 'members_owed')"
        ).fetchall():
            db.execute(f"DROP {kind.upper()} {name}")
        db.execute("ALTER TABLE runs DROP COLUMN segment_run")
        db.execute("UPDATE meta SET value = '6' WHERE key = 'schema_version'")


def test_a_schema_6_journal_is_migrated_its_counts_counted_once_then_kept(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    with Journal.open(path) as journal:
        run = journal.start_run("s.csv")
        load(journal, run, ["a", "b", "c", "d"])
        a, b, c, _ = journal.work(run, after_seq=0, limit=10)
        journal.log_call(run, "publish", a.id)
        journal.complete(a.id, run, code="A", publication_id=None)
        journal.log_call(run, "publish", b.id)
        journal.fail(b.id, status=400, key="refused", message="no", request_id=None)
        journal.log_call(run, "publish", c.id)
    downgrade_to_schema_6(path)

    with Journal.open(path, readonly=True) as journal:  # read-only and not migrated: counted from the rows
        assert journal.state_counts(run) == {"pending": 1, "sending": 1, "done": 1, "failed": 1}
        assert journal.call_counts(run) == {"publish": 3}
        assert journal.latest_run() is not None and journal.latest_run().segment_run is None

    with Journal.open(path) as journal:
        assert journal.meta("schema_version") == str(SCHEMA_VERSION) == "7"
        assert_exact(journal)
        assert journal.state_counts(run) == {"pending": 1, "sending": 1, "done": 1, "failed": 1}
        assert journal.call_counts(run) == {"publish": 3}
        second = journal.start_run("s.csv")  # and kept from then on
        load(journal, second, ["c", "d", "e"])
        [*_, e] = journal.work(second, after_seq=0, limit=10)
        journal.log_call(second, "publish", e.id)
        journal.complete(e.id, second, code="E", publication_id=None)
        assert_exact(journal)
        assert journal.state_counts(second) == {"pending": 1, "sending": 1, "done": 1, "failed": 0}


def test_a_journal_migrated_twice_keeps_exact_counts(tmp_path: Path) -> None:
    """Every step is idempotent: a journal that already has schema 7's objects but says an older version (a step
    that ran before its version was recorded) is migrated again without counting anything twice."""
    path = tmp_path / "j.sqlite"
    with Journal.open(path) as journal:
        run = journal.start_run("s.csv")
        load(journal, run, ["a", "b"])
        journal.log_call(run, "campaign")
        journal._db.execute("UPDATE meta SET value = '6' WHERE key = 'schema_version'")
    with Journal.open(path) as journal:
        assert_exact(journal)
        assert journal.state_counts(run) == {"pending": 2, "sending": 0, "done": 0, "failed": 0}

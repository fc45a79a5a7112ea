"""The SQLite journal: states, runs, duplicates, the call log and the one-process lock."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from distributor.errors import JournalError, JournalLocked
from distributor.journal import SCHEMA_VERSION, Journal


def load(journal: Journal, run: int, identities: list[str], start_row: int = 2):
    return journal.load(run, [(seq, start_row + seq - 1, identity) for seq, identity in enumerate(identities, 1)])


def test_members_are_pending_then_sending_then_done(tmp_path: Path) -> None:
    with Journal.open(tmp_path / "j.sqlite") as journal:
        run = journal.start_run("s.csv")
        load(journal, run, ["a", "b"])
        a, b = journal.work(run, after_seq=0, limit=10)

        journal.log_call(run, "publish", a.id)
        assert journal.member("a")["state"] == "sending" and journal.member("a")["attempts"] == 1
        journal.complete(a.id, run, code="CODE-A", publication_id="pub_1")
        journal.log_call(run, "publish", b.id)
        journal.fail(b.id, status=400, key="invalid_customer", message="bad", request_id="v-1")

        assert dict(journal.codes()) == {"a": "CODE-A"}
        [failure] = list(journal.failures())
        assert (failure.identity, failure.key, failure.request_id, failure.attempts) == ("b", "invalid_customer", "v-1", 1)
        assert journal.work(run, after_seq=0, limit=10) == []
        assert [m.identity for m in journal.work(run, after_seq=0, limit=10, retry_failed=True)] == ["b"]


def test_a_done_member_cannot_lose_its_code(tmp_path: Path) -> None:
    with Journal.open(tmp_path / "j.sqlite") as journal:
        run = journal.start_run("s.csv")
        load(journal, run, ["a"])
        [a] = journal.work(run, after_seq=0, limit=10)
        journal.complete(a.id, run, code="CODE-A", publication_id=None)
        journal.fail(a.id, status=500, key="late", message="a late failure", request_id=None)
        journal.log_call(run, "publish", a.id)
        assert journal.member("a")["state"] == "done" and journal.member("a")["code"] == "CODE-A"
        with pytest.raises(sqlite3.IntegrityError):  # done without a code is refused by the schema itself
            journal._db.execute("UPDATE members SET code = NULL")


def test_duplicates_within_a_run_are_reported_with_the_first_row(tmp_path: Path) -> None:
    with Journal.open(tmp_path / "j.sqlite") as journal:
        run = journal.start_run("s.csv")
        result = load(journal, run, ["a", "b", "a", "A"])
        assert result.added == 3
        assert result.duplicates == [(4, "a", 2)]


def test_a_later_run_sees_known_members_without_duplicating_or_resetting_them(tmp_path: Path) -> None:
    with Journal.open(tmp_path / "j.sqlite") as journal:
        first = journal.start_run("s.csv")
        load(journal, first, ["a", "b"])
        [a, _] = journal.work(first, after_seq=0, limit=10)
        journal.complete(a.id, first, code="CODE-A", publication_id=None)

        second = journal.start_run("s2.csv")
        result = load(journal, second, ["c", "a"])

        assert result.added == 1 and result.duplicates == []
        assert journal.held_before(second) == 1
        assert [m.identity for m in journal.work(second, after_seq=0, limit=10)] == ["c"]  # b left the segment
        assert journal.state_counts(second) == {"pending": 1, "sending": 0, "done": 1, "failed": 0}


def test_identities_are_stored_byte_for_byte(tmp_path: Path) -> None:
    tricky = ["000123", "123", "+4915112345678", "Anna", "anna", " anna", "anna ", "a,b", 'q"q', "ü", "u\u0308", "tab\t"]
    with Journal.open(tmp_path / "j.sqlite") as journal:
        run = journal.start_run("s.csv")
        assert load(journal, run, tricky).added == len(tricky)
        assert [m.identity for m in journal.work(run, after_seq=0, limit=100)] == tricky


def test_the_call_log_remembers_when_calls_were_made(tmp_path: Path) -> None:
    with Journal.open(tmp_path / "j.sqlite") as journal:
        run = journal.start_run("s.csv")
        for at in (100.0, 200.0, 300.0):
            journal.log_call(run, "publish", None, at=at)
        journal.log_call(run, "lookup", None, at=301.0)
        assert journal.calls_since(150.0) == [200.0, 300.0, 301.0]
        assert journal.call_counts(run) == {"publish": 3, "lookup": 1}


def test_a_second_process_on_the_same_journal_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    with Journal.open(path) as first:
        first.lock()
        second = Journal.open(path)
        with pytest.raises(JournalLocked, match="in use by pid"):
            second.lock()
        second.close()
    # released with the first
    with Journal.open(path) as third:
        third.lock()


def test_a_file_that_is_not_a_journal_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "codes.csv"
    path.write_text("identity,code\n")
    with pytest.raises(JournalError, match="not a usable SQLite journal"):
        Journal.open(path)
    other = tmp_path / "other.sqlite"
    sqlite3.connect(other).execute("CREATE TABLE x (y)").connection.commit()
    with pytest.raises(JournalError, match="not a distributor journal"):
        Journal.open(other, readonly=True)


def test_a_schema_2_journal_keeps_each_called_members_old_key_and_serves_exhausted_members_again(
    tmp_path: Path,
) -> None:
    """MIGRATION(h1-voucherify): members.source_id holds the key of the calls already made; members failed only
    because transient retries ran out are served again by the next run (no --retry-failed)."""
    from distributor.config import publication_source_id_v1

    path = tmp_path / "j.sqlite"
    with Journal.open(path) as journal:
        run = journal.start_run("s.csv")
        load(journal, run, ["called", "never", "exhausted", "refused"])
        journal.set_meta(distribution="spring")
        members = {m.identity: m for m in journal.work(run, after_seq=0, limit=10)}
        for name in ("called", "exhausted", "refused"):
            journal.log_call(run, "publish", members[name].id)
        journal.fail(members["exhausted"].id, status=None, key="retries_exhausted:timeout", message="gave up",
                     request_id=None)
        journal.fail(members["refused"].id, status=400, key="invalid_customer", message="no", request_id="v-1")
    with sqlite3.connect(path) as db:  # what schema 2 looked like
        db.execute("ALTER TABLE members DROP COLUMN source_id")
        db.execute("UPDATE meta SET value = '2' WHERE key = 'schema_version'")

    with Journal.open(path) as journal:
        keys = {identity: journal.member(identity)["source_id"] for identity in ("called", "never", "exhausted")}
        assert keys == {"called": publication_source_id_v1("spring", "called"), "never": None,
                        "exhausted": publication_source_id_v1("spring", "exhausted")}
        assert journal.member("exhausted")["state"] == "sending"
        assert journal.member("refused")["state"] == "failed"  # a definite refusal stays failed
        assert [m.identity for m in journal.work(run, after_seq=0, limit=10)] == ["called", "never", "exhausted"]
        assert journal.meta("schema_version") == str(SCHEMA_VERSION)
        # a key, once stored, is never replaced
        journal.log_call(run, "publish", journal.member("called")["id"], source_id="another-key")
        assert journal.member("called")["source_id"] == publication_source_id_v1("spring", "called")

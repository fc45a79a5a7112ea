"""``distributor export --calls``: the journal's record of every API call, comparable with what Voucherify saw."""

from __future__ import annotations

import csv
import sqlite3
from datetime import datetime
from pathlib import Path

from click.testing import CliRunner
from conftest import SANDBOX_ENV, make_config, run, write_segment

from distributor.cli import main
from distributor.journal import SCHEMA_VERSION, Journal


def read_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_every_call_is_exported_with_its_outcome_status_and_request_id(tmp_path: Path, sandbox) -> None:
    server = sandbox(error_rate=0.2, refuse_customers={"cust-7": "voucher_cannot_be_published"})
    segment = write_segment(tmp_path / "segment.csv", [f"cust-{i}" for i in range(30)])
    config = make_config(tmp_path, server, segment, max_attempts=20)
    assert run(config).exit_code == 1  # cust-7 is refused

    result = CliRunner().invoke(main, ["export", "--output", str(config.output), "--calls"], catch_exceptions=False)

    assert result.exit_code == 0, result.output
    rows = read_rows(tmp_path / "out" / "codes.calls.csv")
    assert f"exported {len(rows)} calls" in result.output
    assert list(rows[0]) == ["at", "run", "identity", "kind", "endpoint", "outcome", "http_status", "request_id"]
    # one row per request the server received, with the status it answered
    seen_by_server = sorted((a.kind, a.customer or "", str(a.status)) for a in server.sandbox.arrivals)
    assert sorted((r["kind"], r["identity"], r["http_status"]) for r in rows) == seen_by_server
    assert any(r["outcome"] == "server_error" and r["http_status"].startswith("5") for r in rows)
    assert rows[0]["kind"] == "campaign" and rows[0]["endpoint"] == "GET /v1/campaigns/{id}"
    assert all(r["endpoint"] == "POST /v1/publications" for r in rows if r["kind"] == "publish")
    assert [datetime.fromisoformat(r["at"]).utcoffset().total_seconds() for r in rows[:1]] == [0.0]
    [refusal] = [r for r in rows if r["identity"] == "cust-7"]
    assert (refusal["outcome"], refusal["http_status"]) == ("refused", "400")
    with Journal.open(config.journal_path, readonly=True) as journal:
        refused = journal.member("cust-7")
    assert refusal["request_id"] == refused["request_id"] and refusal["request_id"].startswith("v-")


def test_a_journal_from_before_schema_3_is_migrated_and_its_calls_export_as_unknown(tmp_path: Path) -> None:
    journal_path = tmp_path / "old.journal.sqlite"
    with sqlite3.connect(journal_path) as db:  # a schema-2 journal as distributor 0.x left it
        db.executescript(
            """CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
               INSERT INTO meta VALUES ('schema_version', '2'), ('key', 'identity');
               CREATE TABLE runs (id INTEGER PRIMARY KEY, started_at REAL NOT NULL, ended_at REAL, pid INTEGER NOT NULL,
                   segment TEXT, exit_code INTEGER, reason TEXT, summary TEXT, loaded_at REAL);
               INSERT INTO runs VALUES (1, 1700000000.0, 1700000060.0, 1, 's.csv', 0, 'completed', '{}', 1700000000.0);
               CREATE TABLE members (id INTEGER PRIMARY KEY, identity TEXT NOT NULL UNIQUE,
                   state TEXT NOT NULL DEFAULT 'pending', code TEXT, publication_id TEXT,
                   attempts INTEGER NOT NULL DEFAULT 0, error_status INTEGER, error_key TEXT, error_message TEXT,
                   request_id TEXT, first_run INTEGER NOT NULL, seen_run INTEGER NOT NULL, seen_seq INTEGER NOT NULL,
                   seen_row INTEGER NOT NULL, done_run INTEGER, updated_at REAL NOT NULL);
               INSERT INTO members VALUES (1, 'cust-1', 'done', 'CODE-1', NULL, 1, NULL, NULL, NULL, NULL, 1, 1, 1, 2,
                   1, 1700000001.0);
               CREATE TABLE skipped (run_id INTEGER NOT NULL, row INTEGER NOT NULL, value TEXT NOT NULL,
                   reason TEXT NOT NULL, detail TEXT NOT NULL DEFAULT '');
               CREATE TABLE calls (id INTEGER PRIMARY KEY, run_id INTEGER NOT NULL, at REAL NOT NULL,
                   kind TEXT NOT NULL, member_id INTEGER);
               INSERT INTO calls VALUES (1, 1, 1700000000.5, 'publish', 1);"""
        )
    with Journal.open(journal_path) as journal:  # a run opens it writable: the migration runs
        assert journal.meta("schema_version") == str(SCHEMA_VERSION)
        assert journal.leaver_counts()["done"] == 0
        assert journal.codes().__next__() == ("cust-1", "CODE-1")

    result = CliRunner().invoke(
        main, ["export", "--state", str(journal_path), "--output", str(tmp_path / "old.csv"), "--calls"],
        env=SANDBOX_ENV, catch_exceptions=False,
    )

    assert result.exit_code == 0, result.output
    assert read_rows(tmp_path / "old.calls.csv") == [{
        "at": "2023-11-14T22:13:20.500+00:00", "run": "1", "identity": "cust-1", "kind": "publish",
        "endpoint": "POST /v1/publications", "outcome": "unknown", "http_status": "", "request_id": "",
    }]

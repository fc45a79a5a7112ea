"""Bounded reading: a tiny hostile export (a gzip bomb of one endless field or line, or of millions of blank or
repeated lines) neither exhausts memory nor grows the journal by one row per line.

The bombs are generated on the fly, gzip-compressed (a few hundred KiB on disk).  Peak memory is measured in a real
child process (``ru_maxrss``), so what the test measures is what a run would use.
"""

from __future__ import annotations

import csv
import gzip
import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import make_config, run

from distributor.cli import main
from distributor.errors import EXIT_OK, InputError
from distributor.journal import SCHEMA_VERSION, SKIPPED_EXAMPLES, Journal
from distributor.segment import MAX_RECORD, identities, open_segment
from distributor.segment.loading import load_segment

CHUNK = b"x" * (1 << 20)


def write_bomb(path: Path, head: bytes, filler_mib: int, tail: bytes) -> Path:
    """``head``, then ``filler_mib`` MiB of ``x`` (one field or line that never ends), then ``tail``, gzipped."""
    with gzip.open(path, "wb", compresslevel=1) as handle:
        handle.write(head)
        for _ in range(filler_mib):
            handle.write(CHUNK)
        handle.write(tail)
    return path


def read_in_child(path: Path) -> tuple[str, int]:
    """Read ``path`` whole in a fresh interpreter: the one-line refusal (or ``read``) and its peak RSS in MiB."""
    script = (
        "import sys\n"
        "from distributor.errors import InputError\n"
        "from distributor.segment import open_segment\n"
        "try:\n"
        "    for _ in open_segment(sys.argv[1]).batches(20_000): pass\n"
        "    outcome = 'read'\n"
        "except InputError as error:\n"
        "    outcome = str(error)\n"
        "print(outcome)\n"
        # VmHWM: this process's own peak (ru_maxrss would carry over the forking parent's, pytest's, across exec)
        "print(next(int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmHWM')) // 1024)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(path)], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    message, rss = done.stdout.strip().splitlines()
    return message, int(rss)


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="measures peak memory with Linux's /proc")
@pytest.mark.parametrize(
    ("name", "head", "tail", "message"),
    [
        ("quoted.csv.gz", b'identity,Email\na,x\n"', b'",y\n', r"row 3 is longer than 1,048,576 characters"),
        ("unquoted.csv.gz", b"identity,Email\na,x\nb,", b"\n", r"row 3 is longer than 1,048,576 characters"),
        ("line.jsonl.gz", b'{"identity": "a"}\n{"identity": "', b'"}\n', r"line 2 is longer than 1,048,576"),
    ],
)
@pytest.mark.slow
def test_a_gzip_bomb_of_one_endless_record_is_refused_in_bounded_memory(
    tmp_path: Path, name: str, head: bytes, tail: bytes, message: str
) -> None:
    """384 MiB of one field (or one JSON line) in about 1 MiB of gzip: refused naming file and row, memory flat."""
    path = write_bomb(tmp_path / name, head, 384, tail)
    assert path.stat().st_size < 4 << 20
    refusal, rss_mib = read_in_child(path)
    assert refusal.startswith(f"{path}: ") and message in refusal, refusal
    assert rss_mib < 100, f"peak RSS {rss_mib} MiB reading a {path.stat().st_size} byte bomb"


def test_a_record_just_under_the_bound_is_read(tmp_path: Path) -> None:
    """The bound is on the whole record (quoted line breaks included), far above any CleverTap value."""
    note = "n\n" * ((MAX_RECORD - 100) // 2)
    path = tmp_path / "s.csv"
    path.write_text(f'identity,Note\na,"{note}"\nb,x\n', newline="")
    assert [(row.number, row.identity) for batch in open_segment(path).batches() for row in batch] == [(2, "a"), (3, "b")]
    path.write_text(f'identity,Note\na,"{note}{note}"\nb,x\n', newline="")
    with pytest.raises(InputError, match="row 2 is longer than"):
        list(open_segment(path).batches())


def test_a_header_that_never_ends_is_refused(tmp_path: Path) -> None:
    path = write_bomb(tmp_path / "s.csv.gz", b"identity,", 8, b"\na,b\n")
    with pytest.raises(InputError, match=r"row 1 is longer than"):
        open_segment(path)


def load_bomb(tmp_path: Path, body: bytes, repeat: int) -> tuple[Journal, int, dict[str, int]]:
    path = tmp_path / "bomb.csv.gz"
    with gzip.open(path, "wb") as handle:
        handle.write(b"identity,Email\nfirst,x\n")
        handle.write(body * repeat)
        handle.write(b"last,y\n")
    assert path.stat().st_size < 1 << 20
    journal = Journal.open(tmp_path / "journal.sqlite")
    run_id = journal.start_run(str(path))
    loaded = load_segment(journal, run_id, open_segment(path))
    assert loaded is not None and loaded.members == 2
    return journal, run_id, dict(loaded.skipped)


@pytest.mark.parametrize(
    ("body", "reason", "explanation"),
    [(b"\n", identities.EMPTY, ""), (b"first,z\n", identities.DUPLICATE, "first at row 2")],
    ids=["blank-lines", "repeated-identity"],
)
@pytest.mark.slow
def test_a_bomb_of_blank_or_repeated_lines_is_counted_not_stored_line_by_line(
    tmp_path: Path, body: bytes, reason: str, explanation: str
) -> None:
    lines = 300_000
    journal, run_id, counted = load_bomb(tmp_path, body, lines)
    with journal:
        assert counted == {reason: lines}
        assert journal.skipped_counts(run_id) == {reason: lines}
        report = list(journal.skipped(run_id))
        stored = journal._db.execute("SELECT count(*) FROM skipped").fetchone()[0]
    assert stored == SKIPPED_EXAMPLES
    # the first examples in file order, then one line saying how many more there are
    listed, unlisted = report[:-1], report[-1]
    assert [row for row, *_ in listed] == list(range(3, 3 + SKIPPED_EXAMPLES))
    assert {(r, d) for _, _, r, d in listed} == {(reason, explanation)}
    not_listed = f"{lines - SKIPPED_EXAMPLES:,} more rows not listed: only the first {SKIPPED_EXAMPLES:,} of each reason are kept"
    assert unlisted == ("", "", reason, not_listed)


def test_a_journal_from_before_counting_keeps_its_skipped_rows_and_counts_them(tmp_path: Path) -> None:
    """Schema 2 stored every skipped row: migrated, they are all still listed and counted."""
    path = tmp_path / "journal.sqlite"
    with Journal.open(path) as journal:
        journal._db.execute("DROP TABLE skipped_counts")
        journal._db.execute("UPDATE meta SET value = '2' WHERE key = 'schema_version'")
        run_id = journal.start_run("old.csv")
        rows = [(n, "", identities.EMPTY, "") for n in range(2, 2 + SKIPPED_EXAMPLES + 5)]
        journal._db.executemany("INSERT INTO skipped VALUES (?, ?, ?, ?, ?)", [(run_id, *row) for row in rows])
    with Journal.open(path, readonly=True) as journal:  # not migrated yet: counted from the rows
        assert journal.skipped_counts(run_id) == {identities.EMPTY: len(rows)}
    with Journal.open(path) as journal:
        assert journal.meta("schema_version") == str(SCHEMA_VERSION)
        assert journal.skipped_counts(run_id) == {identities.EMPTY: len(rows)}
        assert list(journal.skipped(run_id)) == rows


@pytest.mark.slow
def test_json_lines_blank_line_bomb_reads_in_bounded_batches(tmp_path: Path) -> None:
    path = tmp_path / "s.jsonl.gz"
    path.write_bytes(gzip.compress(json.dumps({"identity": "a"}).encode() + b"\n" + b"\n" * 2_000_000 + b'{"identity": "b"}\n'))
    rows = [(row.number, row.identity) for batch in open_segment(path).batches(1000) for row in batch]
    assert rows == [(1, "a"), (2_000_002, "b")]


@pytest.mark.slow
def test_a_run_on_a_blank_line_bomb_reports_every_row_and_lists_the_first(tmp_path: Path, sandbox) -> None:
    """The summary counts every skipped row; the report lists the first and says how many it leaves out."""
    segment = tmp_path / "bomb.csv.gz"
    segment.write_bytes(gzip.compress(b"identity,Email\r\na,x\r\n" + b"\r\n" * 200_000 + b"b,y\r\n"))
    config = make_config(tmp_path, sandbox(), segment)

    result = run(config)

    assert result.exit_code == EXIT_OK, result.message
    assert result.summary["skipped"] == {"total": 200_000, "by_reason": {"empty": 200_000}, "not_listed": 199_000}
    with config.layout.skipped.open(newline="", encoding="utf-8") as handle:
        report = list(csv.reader(handle))
    assert len(report) == 1 + SKIPPED_EXAMPLES + 1
    assert report[1][:3] == ["3", "", "empty"] and report[SKIPPED_EXAMPLES][:3] == [str(2 + SKIPPED_EXAMPLES), "", "empty"]
    not_listed = "199,000 more rows not listed: only the first 1,000 of each reason are kept"
    assert report[-1] == ["", "", "empty", f"empty identity (or only whitespace) ({not_listed})"]
    exported = CliRunner().invoke(main, ["export", "--segment", str(segment), "--output", str(config.output)])
    assert exported.exit_code == 0, exported.output
    assert f"skipped   {config.layout.skipped} (200000 rows)" in exported.output

"""A rerun given the very export the journal loaded last takes that segment over instead of reading it again
(issue 13.1); any other export — touched, changed, replaced, another part or read another way — is read whole."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from conftest import make_config, read_codes, run, write_segment

from distributor.journal import Journal, export_fingerprint
from distributor.segment import open_segment
from distributor.segment.loading import load_segment

PEOPLE = [f"cust-{n:03d}" for n in range(40)]


def export(path: Path, identities: list[str]) -> Path:
    """An export with a duplicate and an empty identity among ``identities``."""
    return write_segment(path, [*identities[:3], identities[0], "", *identities[3:]])


def test_the_same_file_has_the_same_fingerprint(tmp_path: Path) -> None:
    path = export(tmp_path / "a.csv", PEOPLE)
    assert export_fingerprint([path]) == export_fingerprint([path])
    assert export_fingerprint([path]) == export_fingerprint([tmp_path / "." / "a.csv"])  # the same real file


def test_a_touched_file_is_another_export(tmp_path: Path) -> None:
    path = export(tmp_path / "a.csv", PEOPLE)
    before = export_fingerprint([path])
    info = path.stat()
    os.utime(path, ns=(info.st_atime_ns, info.st_mtime_ns + 1_000_000_000))
    assert export_fingerprint([path]) != before


def test_a_file_changed_in_place_with_its_size_and_mtime_put_back_is_another_export(tmp_path: Path) -> None:
    path = export(tmp_path / "a.csv", PEOPLE)
    before, info = export_fingerprint([path]), path.stat()
    data = path.read_bytes()
    with path.open("r+b") as handle:  # the same size, one identity changed in the middle
        middle = data.index(b"cust-020")
        handle.seek(middle)
        handle.write(b"cust-999")
    os.utime(path, ns=(info.st_atime_ns, info.st_mtime_ns))  # mtime put back: only ctime tells
    assert path.stat().st_size == info.st_size and path.stat().st_mtime_ns == info.st_mtime_ns
    assert export_fingerprint([path]) != before


def test_a_replaced_file_another_part_order_or_reading_is_another_export(tmp_path: Path) -> None:
    one, two = export(tmp_path / "one.csv", PEOPLE[:20]), export(tmp_path / "two.csv", PEOPLE[20:])
    before = export_fingerprint([one, two])
    assert export_fingerprint([two, one]) != before
    assert export_fingerprint([one, two], reading="csv|,|Email|email") != before
    replacement = export(tmp_path / "new.csv", PEOPLE[:20])  # the same content, written anew and renamed over
    replacement.replace(one)
    assert export_fingerprint([one, two]) != before


def load(journal: Journal, path: Path):
    run_id = journal.start_run(str(path))
    return run_id, load_segment(journal, run_id, open_segment(path), batch_size=7)


def test_the_export_loaded_last_is_taken_over_with_its_counts_and_skipped_rows(tmp_path: Path) -> None:
    path = export(tmp_path / "a.csv", PEOPLE)
    with Journal.open(tmp_path / "j.sqlite") as journal:
        first, read = load(journal, path)
        [head, *_] = journal.work(first, after_seq=0, limit=1)
        journal.log_call(first, "publish", head.id)
        journal.complete(head.id, first, code="CODE", publication_id=None)

        second, taken = load(journal, path)
        assert taken == read and taken is not None
        assert (taken.rows, taken.members, dict(taken.skipped)) == (42, 40, {"duplicate": 1, "empty": 1})
        assert journal.runs()[-1].segment_run == first and journal.runs()[-1].loaded_at is not None
        assert journal.state_counts(second) == {"pending": 39, "sending": 0, "done": 1, "failed": 0}
        assert journal.held_before(second) == 1 and journal.left_segment(second) == 0
        assert [m.identity for m in journal.work(second, after_seq=0, limit=100)] == PEOPLE[1:]
        assert list(journal.skipped(second)) == list(journal.skipped(first))
        assert journal.skipped_counts(second) == {"duplicate": 1, "empty": 1}

        _, again = load(journal, path)  # and by the run after, still pointing at the run that read it
        assert again == read and journal.runs()[-1].segment_run == first


def test_a_changed_export_is_read_whole_and_who_left_is_reported_as_before(tmp_path: Path) -> None:
    path = export(tmp_path / "a.csv", PEOPLE)
    with Journal.open(tmp_path / "j.sqlite") as journal:
        load(journal, path)
        second, _ = load(journal, path)  # taken over
        export(path, PEOPLE[5:])  # the next export: five left
        third, read = load(journal, path)
        assert read is not None and read.members == 35
        assert journal.runs()[-1].segment_run is None
        assert journal.left_segment(third) == 5
        # the last run whose segment held them is the run that took the first export over
        assert {m.identity: m.seen_run for m in journal.left_members(third)} == dict.fromkeys(PEOPLE[:5], second)


def test_a_load_interrupted_after_the_export_was_recorded_makes_the_next_run_read_it_whole(tmp_path: Path) -> None:
    path = export(tmp_path / "a.csv", PEOPLE)
    other = export(tmp_path / "b.csv", PEOPLE[::-1])
    with Journal.open(tmp_path / "j.sqlite") as journal:
        load(journal, path)
        interrupted = journal.start_run(str(other))
        batches = iter([False, True])  # stopped after its first batch: some members now seen by this run
        assert load_segment(journal, interrupted, open_segment(other), batch_size=7,
                            interrupted=lambda: next(batches)) is None
        _, read = load(journal, path)
        assert journal.runs()[-1].segment_run is None and read is not None and read.members == 40


@pytest.mark.parametrize("rerun_file", ["same", "touched"])
def test_a_resumed_distribution_publishes_the_rest_and_reports_as_a_full_read_would(
    tmp_path: Path, sandbox, rerun_file: str
) -> None:
    server = sandbox()
    segment = export(tmp_path / "segment.csv", PEOPLE)
    first = run(make_config(tmp_path, server, segment, limit=15))
    if rerun_file == "touched":
        os.utime(segment, ns=(segment.stat().st_atime_ns, segment.stat().st_mtime_ns + 10**9))
    second = run(make_config(tmp_path, server, segment))

    assert (first.exit_code, second.exit_code) == (3, 0), second.message  # 3: stopped at --limit
    _, codes = read_codes(tmp_path / "out" / "codes.csv")
    assert set(codes) == set(PEOPLE)
    members = second.summary["members"]
    assert (members["in_segment"], members["published"], members["already_held"]) == (40, 25, 15)
    assert second.summary["skipped"] == {"total": 2, "by_reason": {"duplicate": 1, "empty": 1}}
    with Journal.open(tmp_path / "out" / "codes.journal.sqlite", readonly=True) as journal:
        assert journal.runs()[-1].segment_run == (1 if rerun_file == "same" else None)

"""The files a run hands off: one writer at a time, nothing stale after kill -9, permissions from the umask, a
delta per run that no later run overwrites, and reports a spreadsheet cannot run as formulas."""

from __future__ import annotations

import csv
import json
import logging
import os
import signal
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import (
    codes_saved,
    make_config,
    read_codes,
    run,
    start_job,
    wait_for,
    write_segment,
)

from distributor.errors import InputError
from distributor.journal import Journal
from distributor.outputs import for_people

FORMULA_LIKE = ["=1+1", "+4915112345678", "-2", "@SUM(A1)", "\tTab", "\rcr", "'quoted"]


def ids(n: int, start: int = 0) -> list[str]:
    return [f"cust-{i:05d}" for i in range(start, start + n)]


def journal_codes(journal_path: Path) -> dict[str, str]:
    with Journal.open(journal_path, readonly=True) as journal:
        return dict(journal.codes())


def deltas(folder: Path, stem: str = "codes") -> dict[int, Path]:
    """Delta files by run id."""
    return {int(path.name.rsplit(".run", 1)[1].removesuffix(".csv")): path
            for path in folder.glob(f"{stem}.new.*.run*.csv")}


# ------------------------------------------------------------------------------------------ one writer (9.3)
class _Settled(logging.Handler):
    """Set when the run announces it waits for another writer of the files."""

    def __init__(self, event: threading.Event) -> None:
        super().__init__(logging.INFO)
        self.event = event

    def emit(self, record: logging.LogRecord) -> None:
        if "waiting for another writer of the files" in record.getMessage():
            self.event.set()


@pytest.fixture
def settled() -> Iterator[threading.Event]:
    event = threading.Event()
    logger = logging.getLogger("distributor")
    handler, level = _Settled(event), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield event
    logger.removeHandler(handler)
    logger.setLevel(level)


#: ``distributor export`` in a real process that stops right after reading the first row of its journal snapshot
#: (SQLite takes a read transaction's snapshot at its first read) — before writing anything — says "snapshot", and
#: goes on when it reads a line: the barrier the test controls.
PAUSED_EXPORT = """
import itertools, sys
from distributor import cli, outputs

write_codes = outputs.write_codes
first = [True]

def paused(path, rows, **kwargs):
    if first[0]:
        first[0] = False
        rows = iter(rows)
        head = next(rows)
        print("snapshot", flush=True)
        sys.stdin.readline()
        rows = itertools.chain([head], rows)
    return write_codes(path, rows, **kwargs)

outputs.write_codes = paused
cli.main(["export", "--state", sys.argv[1]])
"""


@pytest.mark.slow
def test_an_export_that_read_an_older_snapshot_never_overwrites_the_runs_final_files(
    tmp_path: Path, sandbox, settled: threading.Event
) -> None:
    server = sandbox()
    members = ids(120)
    config = make_config(tmp_path, server, write_segment(tmp_path / "s.csv", members), rate_limit="1200/min")
    outcome: list[int] = []

    def run_to_the_end() -> None:
        try:
            outcome.append(run(config).exit_code)
        finally:
            settled.set()  # the run is over (without the lock it never waits for anybody)

    runner = threading.Thread(target=run_to_the_end)
    runner.start()
    export = None
    try:
        wait_for(lambda: codes_saved(config.layout.journal) >= 10)
        export = subprocess.Popen([sys.executable, "-c", PAUSED_EXPORT, str(config.layout.journal)],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert export.stdout is not None and export.stdin is not None
        assert export.stdout.readline() == "snapshot\n"  # the export holds a snapshot from mid-run ...
        assert codes_saved(config.layout.journal) < len(members)  # ... older than the run's end
        assert settled.wait(60)  # the run reached its final write, and waits for the export (or wrote already)
        export.stdin.write("go\n")
        export.stdin.flush()
        _, err = export.communicate(timeout=60)
    finally:
        if export is not None and export.poll() is None:
            export.kill()
        runner.join(timeout=120)

    assert export.returncode == 0, err
    assert outcome == [0]
    _, codes = read_codes(config.output)
    assert codes == journal_codes(config.layout.journal) and len(codes) == len(members)
    summary = json.loads(config.layout.summary.read_text())
    assert summary["exit_code"] == 0 and summary["members"]["codes_in_output"] == len(codes)
    assert read_codes(Path(summary["upload"]["codes"]))[1] == codes


# ------------------------------------------------------------------------------------------ killed runs (9.8)
@pytest.mark.slow
def test_after_kill_9_the_summary_does_not_claim_the_previous_outcome_and_the_next_run_cleans_up(
    tmp_path: Path, sandbox
) -> None:
    server = sandbox(latency_median=0.01)
    out = tmp_path / "out" / "codes.csv"
    summary_path = out.with_name("codes.summary.json")

    def args(segment: Path) -> list[str]:
        return ["--segment", str(segment), "--campaign", "reactivation-20", "--api-url", server.url,
                "--rate-limit", "6000/min", "--output", str(out), "--timeout", "5s"]

    # day 1 needs no process of its own: the same run, in this one
    first = run(make_config(tmp_path, server, write_segment(tmp_path / "day1.csv", ids(10)), output=out))
    assert first.exit_code == 0
    assert json.loads(summary_path.read_text())["reason"] == "completed"
    day1_deltas = {run: path.read_bytes() for run, path in deltas(out.parent).items()}

    everyone = ids(200)
    second = start_job(*args(write_segment(tmp_path / "day2.csv", everyone)))
    wait_for(lambda: codes_saved(out.with_name("codes.journal.sqlite")) >= 40)
    second.send_signal(signal.SIGKILL)
    second.communicate(timeout=10)
    assert second.returncode == -signal.SIGKILL

    summary = json.loads(summary_path.read_text())
    assert (summary["exit_code"], summary["reason"], summary["run"]["id"]) == (None, "running", 2)
    assert summary["message"].startswith("run 2 began at ")
    assert "has not recorded its end: it is going, or it died" in summary["message"]

    # what killed writes leave behind (ours), and what is not ours and stays
    ours = [".codes.csv.k1ll3dxx.tmp", ".codes.summary.json.ab_cd123.tmp",
            ".codes.new.2026-11-29.run2.csv.zz9zz9zz.tmp"]
    foreign = [".other.csv.abcdefgh.tmp", "codes.csv.abcdefgh.tmp", ".codes.csv.tmp", ".codes.csv.abcdefgh.tmp.keep",
               ".codes.csv.ABCDEFGH.tmp"]
    for name in ours + foreign:
        (out.parent / name).write_bytes(b"half a file")

    resumed = start_job(*args(tmp_path / "day2.csv"))
    _, err = resumed.communicate(timeout=120)
    assert resumed.returncode == 0, err

    assert sorted(p.name for p in out.parent.glob("*.tmp*")) == sorted(foreign)
    assert f"removed 3 temporary files that interrupted writes left beside {out}" in err
    final = json.loads(summary_path.read_text())
    assert (final["exit_code"], final["reason"], final["run"]["id"]) == (0, "completed", 3)
    # the killed run wrote no delta; its codes are in the next run's, and no earlier delta changed
    by_run = deltas(out.parent)
    assert set(by_run) == {1, 3}
    assert {1: by_run[1].read_bytes()} == day1_deltas
    _, day1 = read_codes(by_run[1])
    _, day2 = read_codes(by_run[3])
    assert set(day1) == set(ids(10)) and set(day2) == set(everyone) - set(ids(10))
    assert {**day1, **day2} == journal_codes(out.with_name("codes.journal.sqlite"))
    assert final["upload"] == {"codes": str(by_run[3]), "manifest": str(out.with_name("codes.manifest.json")),
                               "count": 190, "published_after_run": 1, "all_codes": str(out)}


def test_a_run_refused_after_it_began_says_so_in_the_summary(tmp_path: Path, sandbox) -> None:
    server = sandbox()
    assert run(make_config(tmp_path, server, write_segment(tmp_path / "s.csv", ids(3)))).exit_code == 0
    unusable = make_config(tmp_path, server, write_segment(tmp_path / "bad.csv", ["", "null"]))

    with pytest.raises(InputError) as refused:
        run(unusable)

    summary = json.loads(unusable.layout.summary.read_text())
    assert (summary["exit_code"], summary["reason"], summary["run"]["id"]) == (2, "InputError", 2)
    assert summary["message"] == str(refused.value)
    with Journal.open(unusable.layout.journal, readonly=True) as journal:
        assert journal.latest_run()["exit_code"] == 2  # the journal holds the same outcome


# ------------------------------------------------------------------------------------------ permissions, deltas (10.2)
@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o027, 0o640)])
def test_every_file_gets_the_permissions_the_umask_gives(tmp_path: Path, sandbox, umask: int, mode: int) -> None:
    server = sandbox(refuse_customers={"cust-00002": "voucher_cannot_be_published"})
    config = make_config(tmp_path, server, write_segment(tmp_path / "s.csv", [*ids(5), "", "cust-00001"]))
    previous = os.umask(umask)
    try:
        result = run(config)
    finally:
        os.umask(previous)

    assert result.exit_code == 1
    handed_off = [path for name, path in result.files.items() if name != "journal"]
    assert len(handed_off) == 7  # codes, manifest, errors, skipped, left, delta, summary
    assert {path.name: stat.S_IMODE(path.stat().st_mode) for path in handed_off} == {
        path.name: mode for path in handed_off
    }


def test_a_second_run_on_the_same_day_leaves_the_first_runs_delta_alone(tmp_path: Path, sandbox) -> None:
    server = sandbox()
    config = make_config(tmp_path, server, write_segment(tmp_path / "s.csv", ids(20)))
    first = run(config)
    delta = first.files["delta"]
    written = delta.read_bytes()

    recheck = run(config)  # a re-check the same morning: nothing new

    assert (first.exit_code, recheck.exit_code) == (0, 0)
    assert delta.name.endswith(".run1.csv") and delta.read_bytes() == written
    _, codes = read_codes(delta)
    assert codes == journal_codes(config.layout.journal) and len(codes) == 20
    assert "delta" not in recheck.files and recheck.summary["upload"]["codes"] is None
    assert recheck.summary["next_step"].startswith("nothing new to upload")
    assert first.summary["next_step"] == f"upload {delta} with {config.layout.manifest} in CleverTap"


# ------------------------------------------------------------------------------------------ reports for people (9.9)
def test_reports_for_people_neutralise_formulas_and_the_upload_stays_exact(
    tmp_path: Path, sandbox, caplog: pytest.LogCaptureFixture
) -> None:
    refused = {"=1+1": "voucher_cannot_be_published", "@SUM(A1)": "voucher_cannot_be_published"}
    server = sandbox(refuse_customers=refused)
    day1 = [*FORMULA_LIKE, "cust-1", "-2"]  # "-2" twice: a skipped duplicate
    config = make_config(tmp_path, server, write_segment(tmp_path / "day1.csv", day1))
    run(config)
    upload_day1 = config.output.read_bytes()
    caplog.clear()
    caplog.set_level(logging.INFO, logger="distributor")
    config2 = make_config(tmp_path, server, write_segment(tmp_path / "day2.csv", ["cust-1", "cust-2"]))
    run(config2)  # everyone else left the segment

    # the upload: identities byte for byte as in the segment
    _, codes = read_codes(config.output)
    assert set(codes) == {"+4915112345678", "-2", "\tTab", "\rcr", "'quoted", "cust-1", "cust-2"}
    assert b"\r\n+4915112345678," in upload_day1 and b'\r\n"\tTab",' in upload_day1
    # the reports: a leading ' on every cell a spreadsheet would run (or that starts with ' itself)
    folder = config.output.parent
    errors = (folder / "codes.errors.csv").read_text(encoding="utf-8").splitlines()
    assert [line.split(",")[0] for line in errors[1:]] == ["'=1+1", "'@SUM(A1)"]
    left = (folder / "codes.left.csv").read_bytes().decode()
    for identity in ("'=1+1", "'+4915112345678", "'-2", "'@SUM(A1)", "'\tTab", "''quoted"):
        assert f"\r\n{identity}," in left or f'\r\n"{identity}",' in left
    assert "\r\n\t" not in left and '\r\n"\t' not in left  # no field starts with a tab
    assert "'\rcr" in left
    skipped = (folder / "codes.skipped.csv").read_text(encoding="utf-8").splitlines()  # of day 2: none
    assert skipped == ["row,value,reason,explanation"]
    # ... and recoverable: dropping the leading ' gives the identity back
    with (folder / "codes.left.csv").open(newline="", encoding="utf-8") as handle:
        left_rows = list(csv.reader(handle))[1:]
    recovered = {row[0].removeprefix("'") for row in left_rows}
    assert recovered == set(FORMULA_LIKE)
    warnings = [r.getMessage() for r in caplog.records if "start with =, +, -, @" in r.getMessage()]
    assert warnings == [(  # 2 in errors.csv, 6 in left.csv
        "8 identities in the reports for people (errors, skipped, left) start with =, +, -, @, a tab or a carriage "
        "return: those reports prefix them with ' so a spreadsheet shows them instead of running them; codes.csv "
        "keeps them exact"
    )]


def test_the_skipped_report_neutralises_values_too(tmp_path: Path, sandbox) -> None:
    config = make_config(tmp_path, sandbox(), write_segment(tmp_path / "s.csv", ["=cmd|x", "=cmd|x", "a"]))
    run(config)
    rows = (config.output.parent / "codes.skipped.csv").read_text(encoding="utf-8").splitlines()
    assert rows[1].startswith("3,'=cmd|x,duplicate,")


@pytest.mark.parametrize(("value", "shown"), [
    ("=1", "'=1"), ("+1", "'+1"), ("-1", "'-1"), ("@a", "'@a"), ("\tx", "'\tx"), ("\rx", "'\rx"), ("'x", "''x"),
    ("x=1", "x=1"), ("", ""), (" =1", " =1"),
])
def test_for_people_prefixes_exactly_what_a_spreadsheet_would_run(value: str, shown: str) -> None:
    assert for_people(value) == shown
    assert shown.removeprefix("'") == value

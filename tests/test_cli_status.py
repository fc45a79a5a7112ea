"""``distributor status``: where a distribution stands, read from the journal without disturbing a run."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import codes_saved, make_config, run, start_job, wait_for, write_segment

from distributor.cli import main
from distributor.journal import Journal
from distributor.status import lock_holder


def invoke(*args: str, env: dict[str, str] | None = None):
    return CliRunner().invoke(main, list(args), env=env or {}, catch_exceptions=False)


def ids(n: int) -> list[str]:
    return [f"cust-{i:05d}" for i in range(n)]


def test_a_finished_run_shows_its_counts_and_outcome(tmp_path: Path, sandbox) -> None:
    server = sandbox()
    segment = write_segment(tmp_path / "s.csv", ids(40))
    config = make_config(tmp_path, server, segment)
    run(config)
    lock = config.layout.journal.with_name(config.layout.journal.name + ".lock")
    lock_before = (lock.read_bytes(), lock.stat().st_mtime_ns)

    result = invoke("status", "--state", str(config.layout.journal))

    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == f"distribution camp_demo_reactivation · campaign reactivation-20 · journal {config.layout.journal}"
    assert lines[1].startswith("run 1: finished ") and lines[1].endswith(": exit 0 completed")
    for line in ("  every valid member holds a code", f"  segment       {segment}: 40 members",
                 "  done          40 (100.0 %)", "  in flight     0", "  pending       0", "  failed        0",
                 "  left segment  0"):
        assert line in lines
    assert any(line.startswith("  calls         41 this run: 1 campaign, 40 publish; last at ") for line in lines)
    assert (lock.read_bytes(), lock.stat().st_mtime_ns) == lock_before  # the lock was only looked at


def test_the_latest_errors_carry_voucherifys_key_and_request_id(tmp_path: Path, sandbox) -> None:
    server = sandbox(refuse_customers={"b": "voucher_cannot_be_published"})
    segment = write_segment(tmp_path / "s.csv", ["a", "b", "c"])
    config = make_config(tmp_path, server, segment)
    run(config)
    request_id = Journal.open(config.layout.journal, readonly=True).member("b")["request_id"]

    text = invoke("status", "--state", str(config.layout.journal))
    data = json.loads(invoke("status", "--state", str(config.layout.journal), "--json").stdout)

    assert "latest errors (1 of 1 failed members)" in text.stdout
    assert (f"  b (row 3): 400 voucher_cannot_be_published: Voucher cannot be published: This customer cannot "
            f"receive a code of this campaign; request {request_id}; 1 attempts; ") in text.stdout
    assert request_id and request_id.startswith("v-")
    assert data["state"] == "finished" and data["run"]["exit_code"] == 1 and data["run"]["reason"] == "member_failures"
    assert data["members"] == {"pending": 0, "sending": 0, "done": 2, "failed": 1}
    assert [(e["identity"], e["key"], e["request_id"]) for e in data["errors"]] == [
        ("b", "voucher_cannot_be_published", request_id)
    ]


def test_a_job_file_finds_the_journal_without_keys_or_a_reachable_voucherify(tmp_path: Path, sandbox) -> None:
    server = sandbox()
    segment = write_segment(tmp_path / "s.csv", ids(4))
    config = make_config(tmp_path, server, segment, output=tmp_path / "out" / "reactivation.csv")
    run(config)
    job = tmp_path / "job.toml"
    job.write_text('segment = "gone.csv"\ncampaign = "reactivation-20"\napi_url = "https://api.voucherify.io"\n'
                   'rate_limit = "80/min"\noutput = "out/reactivation.csv"\n')

    by_job = invoke("status", str(job))  # no VOUCHERIFY_* in the environment, and the segment is gone
    by_output = invoke("status", "--output", str(tmp_path / "out" / "reactivation.csv"))

    assert (by_job.exit_code, by_output.exit_code) == (0, 0), by_job.output
    assert by_job.stdout == by_output.stdout
    assert "  done          4 (100.0 %)" in by_job.stdout


def test_no_journal_exits_2(tmp_path: Path) -> None:
    missing = invoke("status", "--state", str(tmp_path / "x.journal.sqlite"))
    nothing = invoke("status")
    not_a_journal = tmp_path / "notes.sqlite"
    not_a_journal.write_text("hello")
    garbage = invoke("status", "--state", str(not_a_journal))

    assert (missing.exit_code, nothing.exit_code, garbage.exit_code) == (2, 2, 2)
    assert missing.stderr == (f"distributor: no journal at {tmp_path / 'x.journal.sqlite'}: this distribution has "
                              "not run yet (or its journal is elsewhere: give --state)\n")
    assert nothing.stderr == "distributor: which distribution? give its JOB_FILE, --output or --state\n"
    assert garbage.stderr.startswith(f"distributor: journal {not_a_journal} is not a usable SQLite journal")


def test_a_run_that_died_without_a_word_is_told_apart(tmp_path: Path, sandbox) -> None:
    server = sandbox()
    segment = write_segment(tmp_path / "s.csv", ids(3))
    config = make_config(tmp_path, server, segment)
    run(config)
    with Journal.open(config.layout.journal) as journal:  # a second run that was killed -9 after starting
        journal.lock()
        journal.start_run(str(segment))

    result = invoke("status", "--state", str(config.layout.journal))

    assert result.exit_code == 0
    assert "run 2: died: started " in result.stdout
    assert "never recorded its end (killed, crashed or rebooted); run the same command again to resume" in result.stdout
    assert "earlier runs" in result.stdout and "  run 1  " in result.stdout


def test_the_lock_is_only_looked_at(tmp_path: Path) -> None:
    path = tmp_path / "j.journal.sqlite"
    lock = path.with_name(path.name + ".lock")
    assert lock_holder(lock) is None and not lock.exists()  # looking does not create it
    with Journal.open(path) as journal:
        journal.lock()
        assert lock_holder(lock) == lock.read_text()
        assert lock_holder(lock).startswith(f"pid {os.getpid()} on ")
        journal.unlock()
        assert lock_holder(lock) is None
        journal.lock()  # looking left nothing behind that would refuse the next run


@pytest.mark.slow
def test_status_of_a_run_in_progress_in_another_process(tmp_path: Path, sandbox) -> None:
    server = sandbox()
    segment = write_segment(tmp_path / "s.csv", ids(400))
    out = tmp_path / "out" / "codes.csv"
    journal_path = out.with_name("codes.journal.sqlite")
    process = start_job("--segment", str(segment), "--campaign", "reactivation-20", "--rate-limit", "1200/min",
                        "--api-url", server.url, "--output", str(out))
    try:
        wait_for(lambda: codes_saved(journal_path) >= 20)

        text = invoke("status", "--state", str(journal_path))
        data = json.loads(invoke("status", "--state", str(journal_path), "--json").stdout)
    finally:
        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=30)

    assert text.exit_code == 0, text.output
    assert f"run 1: in progress (pid {process.pid} on " in text.stdout
    assert data["state"] == "running" and data["holder"].startswith(f"pid {process.pid} on ")
    members = data["members"]
    assert sum(members.values()) == 400 and 20 <= members["done"] < 400 and members["failed"] == 0
    assert data["remaining"] == members["pending"] + members["sending"] > 0
    assert 0 < data["codes_per_minute"] <= 1300 and 0 < data["calls_per_minute"] <= 1300
    assert data["eta_seconds"] > 0
    assert "  ETA           " in text.stdout and "calls/min" in text.stdout

    # the run was not disturbed: it stopped on the signal, cleanly, and says where it stands
    assert process.returncode == 3, stderr
    assert "exit 3: stopped by SIGTERM" in stdout
    after = invoke("status", "--state", str(journal_path))
    assert "run 1: stopped " in after.stdout and "exit 3 interrupted" in after.stdout
    assert "members without a code: run the same command again to resume" in after.stdout


def test_help_shows_an_example() -> None:
    result = invoke("status", "--help")
    assert result.exit_code == 0
    assert "distributor status jobs/reactivation.toml" in result.stdout and "--state" in result.stdout

"""A distribution rerun daily with a fresh segment export (CleverTap: "deliver codes when a customer enters a
segment"): only newcomers are published to, members who left are reported and never touched, and
each run's delta ``<output>.new.<date>.run<N>.csv`` holds what to upload."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from click.testing import CliRunner
from conftest import SANDBOX_ENV, read_codes, write_segment

from distributor.cli import main
from distributor.journal import Journal


def ids(start: int, stop: int) -> list[str]:
    return [f"cust-{i:05d}" for i in range(start, stop)]


def daily_job(tmp_path: Path, server) -> Path:
    job = tmp_path / "referral.toml"
    job.write_text(
        'segment = "exports/today.csv"\ncampaign = "referral-program"\n'
        f'api_url = "{server.url}"\nrate_limit = "6000/min"\n'
        'output = "out/referral.csv"\nproperty = "referral_code"\n'
    )
    (tmp_path / "exports").mkdir()
    return job


def run_day(job: Path, members: list[str]):
    """Cron's part: today's export lands in place, then the same command runs."""
    write_segment(job.parent / "exports" / "today.csv", members)
    return CliRunner().invoke(main, ["run", str(job)], env=SANDBOX_ENV, catch_exceptions=False)


def delta(out: Path, run: int) -> Path:
    """Run ``run``'s delta file (asserting there is exactly one)."""
    (path,) = out.glob(f"referral.new.*.run{run}.csv")
    return path


def rows(path: Path) -> list[list[str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.reader(handle))


def test_a_daily_rerun_publishes_only_to_newcomers_and_reports_who_left(tmp_path: Path, sandbox) -> None:
    server = sandbox()
    job = daily_job(tmp_path, server)
    out = tmp_path / "out"

    day1 = run_day(job, ids(0, 30))
    _, codes_day1 = read_codes(out / "referral.csv")
    arrivals_day1 = len(server.sandbox.arrivals)
    day2 = run_day(job, ids(10, 45))  # ten left the segment, fifteen entered it

    assert (day1.exit_code, day2.exit_code) == (0, 0), day2.output
    day2_customers = {a.customer for a in server.sandbox.arrivals[arrivals_day1:] if a.kind == "publish"}
    assert day2_customers == set(ids(30, 45))  # nobody else was called, least of all who left
    _, everyone = read_codes(out / "referral.csv")
    header, new = read_codes(delta(out, 2))
    assert header == ["identity", "referral_code"]
    assert new == {identity: everyone[identity] for identity in ids(30, 45)}
    assert len(everyone) == 45 and all(everyone[i] == c for i, c in codes_day1.items())
    left = rows(out / "referral.left.csv")
    assert left[0] == ["identity", "code", "state", "last_seen_run", "last_seen_at"]
    assert [(r[0], r[1], r[2], r[3]) for r in left[1:]] == [(i, codes_day1[i], "done", "1") for i in ids(0, 10)]
    summary = json.loads((out / "referral.summary.json").read_text())
    assert summary["segment_update"] == {"entered": 15, "left": 10, "left_holding_code": 10, "new_codes": 15,
                                         "new_codes_since_run": 1}
    assert summary["members"]["published"] == 15 and summary["members"]["already_held"] == 20
    assert "  left segment  10 (not touched; see " in day2.stdout
    assert summary["upload"]["codes"] == str(delta(out, 2))
    assert f"  upload        {delta(out, 2)} (15 codes) with {out / 'referral.manifest.json'}" in day2.stdout

    day3 = run_day(job, ids(10, 45))  # nothing changed: nothing to upload, and no earlier delta touched
    assert day3.exit_code == 0
    assert not list(out.glob("referral.new.*.run3.csv"))
    assert read_codes(delta(out, 2))[1] == new
    assert "  upload        nothing new (no code published since the last delta file)" in day3.stdout
    assert len(rows(out / "referral.left.csv")) == 11


def test_a_day_interrupted_then_resumed_uploads_all_its_newcomers(tmp_path: Path, sandbox) -> None:
    server = sandbox(cycle_quota=21 + 6)  # day 1 spends 21 calls; day 2 stops after a handful
    job = daily_job(tmp_path, server)
    out = tmp_path / "out"
    assert run_day(job, ids(0, 20)).exit_code == 0

    stopped = run_day(job, ids(0, 40))
    _, partial = read_codes(delta(out, 2))
    server.sandbox.config.cycle_quota = None  # the next billing cycle
    resumed = run_day(job, ids(0, 40))

    assert stopped.exit_code == 3 and "quota for this billing cycle is spent" in stopped.stdout
    assert 0 < len(partial) < 20
    assert resumed.exit_code == 0
    _, rest = read_codes(delta(out, 3))
    assert read_codes(delta(out, 2))[1] == partial  # the resumed run left the stopped run's delta alone
    assert set(partial) | set(rest) == set(ids(20, 40)) and not set(partial) & set(rest)  # both runs of the day
    _, everyone = read_codes(out / "referral.csv")
    assert {**partial, **rest} == {i: everyone[i] for i in ids(20, 40)}


def test_an_overlapping_run_refuses_with_exit_3_and_touches_nothing(tmp_path: Path, sandbox) -> None:
    """Yesterday's run still going when today's cron fires: no flock(1) wrapper needed."""
    server = sandbox()
    job = daily_job(tmp_path, server)
    assert run_day(job, ids(0, 5)).exit_code == 0
    journal_path = tmp_path / "out" / "referral.journal.sqlite"
    before = (tmp_path / "out" / "referral.csv").read_bytes()
    calls = len(server.sandbox.arrivals)

    with Journal.open(journal_path) as running:
        running.lock()
        result = run_day(job, ids(0, 10))

    assert result.exit_code == 3
    message = result.stderr.splitlines()[-1]  # after the log lines
    assert message.startswith(f"distributor: journal {journal_path} is in use by pid ")
    assert message.endswith("another run of this distribution is still going; wait for it to end (or stop it), "
                            "then run again")
    assert len(server.sandbox.arrivals) == calls
    assert (tmp_path / "out" / "referral.csv").read_bytes() == before

"""``deliver_to = "leavers"``: a daily run watches the segment and publishes one code to each member who was in the
previous complete run's export and is absent from today's (CleverTap: "deliver when a customer exits a segment")."""

from __future__ import annotations

import csv
import json
import signal
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import (
    SANDBOX_ENV,
    codes_saved,
    read_codes,
    start_job,
    wait_for,
    write_segment,
)

from distributor.cli import main
from distributor.journal import Journal
from distributor.sandbox import SandboxServer
from distributor.units import Rate


def ids(start: int, stop: int) -> list[str]:
    return [f"cust-{i:05d}" for i in range(start, stop)]


def win_back_job(tmp_path: Path, server: SandboxServer, rate_limit: str = "6000/min") -> Path:
    job = tmp_path / "win-back.toml"
    job.write_text(
        'segment = "exports/today.csv"\ncampaign = "reactivation-20"\ndeliver_to = "leavers"\n'
        f'api_url = "{server.url}"\nrate_limit = "{rate_limit}"\n'
        'output = "out/win-back.csv"\nproperty = "win_back_code"\n'
    )
    (tmp_path / "exports").mkdir(exist_ok=True)
    return job


def run_day(job: Path, members: list[str], *args: str):
    """Cron's part: today's export lands in place, then the same command runs."""
    write_segment(job.parent / "exports" / "today.csv", members)
    return CliRunner().invoke(main, ["run", str(job), *args], env=SANDBOX_ENV, catch_exceptions=False)


def published_to(server: SandboxServer, since: int = 0) -> list[str]:
    """The customers of the publication requests the server received after arrival ``since``."""
    return [a.customer or "" for a in server.sandbox.arrivals[since:] if a.kind == "publish"]


def summary(tmp_path: Path) -> dict:
    return json.loads((tmp_path / "out" / "win-back.summary.json").read_text())


def test_the_first_run_records_the_baseline_publishes_nothing_and_says_so(tmp_path: Path, sandbox) -> None:
    server = sandbox()
    job = win_back_job(tmp_path, server)

    day1 = run_day(job, ids(0, 20))

    assert day1.exit_code == 0, day1.output
    assert server.sandbox.arrivals == []  # not even the campaign check
    assert "baseline recorded: 20 members are watched and nothing was published" in day1.output
    assert read_codes(tmp_path / "out" / "win-back.csv") == (["identity", "win_back_code"], {})
    figures = summary(tmp_path)
    assert figures["deliver_to"] == "leavers"
    assert figures["leavers"]["watched"] == 20 and figures["leavers"]["owed_total"] == 0
    assert figures["leavers"]["compared_with_run"] is None


def test_members_who_leave_get_one_code_once_even_if_they_return_and_leave_again(tmp_path: Path, sandbox) -> None:
    server = sandbox()
    job = win_back_job(tmp_path, server)
    out = tmp_path / "out"

    run_day(job, ids(0, 20))
    day2 = run_day(job, ids(5, 25))  # 0-4 left; 20-24 entered (watched, not served)
    _, codes_day2 = read_codes(out / "win-back.csv")
    assert day2.exit_code == 0, day2.output
    assert sorted(published_to(server)) == ids(0, 5)
    assert set(codes_day2) == set(ids(0, 5))
    upload = summary(tmp_path)["upload"]  # the day's delta file: what to hand to CleverTap
    assert read_codes(Path(upload["codes"]))[1] == codes_day2
    assert summary(tmp_path)["leavers"] == {
        "compared_with_run": 1, "watched": 20, "found_this_run": 5, "owed_total": 5, "served_total": 5,
        "published_this_run": 5, "failed": 0, "without_code": 0,
    }
    assert "watched       20 members; 5 left since run 1" in day2.output

    arrivals = len(server.sandbox.arrivals)
    day3 = run_day(job, ids(0, 3) + ids(5, 24))  # 0-2 came back; 24 left
    day4 = run_day(job, ids(5, 24))  # 0-2 left again
    assert (day3.exit_code, day4.exit_code) == (0, 0), day4.output
    assert published_to(server, arrivals) == ["cust-00024"]  # the returners were not called again
    _, codes_day4 = read_codes(out / "win-back.csv")
    assert codes_day4 == {**codes_day2, "cust-00024": codes_day4["cust-00024"]}  # they keep their first code
    assert summary(tmp_path)["upload"]["codes"] is None  # day 4 published nothing new: no delta to upload
    held = server.sandbox.codes_held("reactivation-20")
    assert all(len(held[identity]) == 1 for identity in ids(0, 5) + ["cust-00024"])  # noqa: RUF005  an assertion, left as written


@pytest.mark.slow
def test_a_run_killed_while_serving_leavers_resumes_them_even_if_they_are_back_in_the_export(
    tmp_path: Path, sandbox
) -> None:
    server = sandbox(rate_limit=Rate.parse("1200/min"))
    job = win_back_job(tmp_path, server, rate_limit="1200/min")
    journal = tmp_path / "out" / "win-back.journal.sqlite"
    run_day(job, ids(0, 60))

    write_segment(tmp_path / "exports" / "today.csv", ids(40, 60))  # 40 members left
    process = start_job(str(job))
    wait_for(lambda: codes_saved(journal) >= 5)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=10)
    served_before = codes_saved(journal)
    assert 5 <= served_before < 40

    # the next export has everyone back: the leavers recorded yesterday are still owed their code
    resumed = run_day(job, ids(0, 60))

    assert resumed.exit_code == 0, resumed.output
    _, codes = read_codes(tmp_path / "out" / "win-back.csv")
    assert set(codes) == set(ids(0, 40))
    held = server.sandbox.codes_held("reactivation-20")
    assert {identity: held[identity] for identity in codes} == {i: {code} for i, code in codes.items()}
    assert set(held) == set(ids(0, 40))
    with Journal.open(journal, readonly=True) as opened:
        assert opened.leaver_counts() == {"pending": 0, "sending": 0, "done": 40, "failed": 0}


def test_a_journal_cannot_switch_between_members_and_leavers(tmp_path: Path, sandbox) -> None:
    server = sandbox()
    job = win_back_job(tmp_path, server)
    run_day(job, ids(0, 5))

    switched = run_day(job, ids(0, 4), "--deliver-to", "members")

    assert switched.exit_code == 2
    assert "delivers to leavers, not members" in switched.output
    assert server.sandbox.arrivals == []


def test_plan_and_status_count_the_leavers(tmp_path: Path, sandbox) -> None:
    server = sandbox()
    job = win_back_job(tmp_path, server)
    run_day(job, ids(0, 10))
    write_segment(tmp_path / "exports" / "today.csv", ids(3, 10))

    planned = CliRunner().invoke(main, ["plan", str(job), "--json"], env=SANDBOX_ENV, catch_exceptions=False)
    assert planned.exit_code == 0, planned.output
    plan = json.loads(planned.output)
    assert (plan["deliver_to"], plan["leaving"], plan["to_serve"]) == ("leavers", 3, 3)
    assert published_to(server) == []

    CliRunner().invoke(main, ["run", str(job)], env=SANDBOX_ENV, catch_exceptions=False)
    shown = CliRunner().invoke(main, ["status", str(job), "--json"], env=SANDBOX_ENV, catch_exceptions=False)
    status = json.loads(shown.output)
    assert status["deliver_to"] == "leavers"
    assert status["leavers"] == {"owed": 3, "done": 3, "failed": 0, "without_code": 0, "watched": 7}
    text = CliRunner().invoke(main, ["status", str(job)], env=SANDBOX_ENV, catch_exceptions=False).output
    assert "leavers       3 owed a code: 3 done, 0 without code, 0 failed; watching 7 members" in text


def test_the_win_back_job_file_runs_on_the_embedded_sandbox(tmp_path: Path) -> None:
    project = Path(__file__).resolve().parents[1]
    result = CliRunner().invoke(
        main, ["run", str(project / "jobs" / "win-back.toml"), "--output", str(tmp_path / "win-back.csv")],
        env=SANDBOX_ENV, catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    assert "baseline recorded" in result.output
    with (tmp_path / "win-back.skipped.csv").open(newline="") as handle:
        assert next(csv.reader(handle))[0] == "row"

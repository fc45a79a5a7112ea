"""``distributor plan``: what a run would do and cost, with at most a couple of API calls and no file written."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from conftest import SANDBOX_ENV, make_config, run, write_segment

from distributor.cli import main
from distributor.journal import Journal
from distributor.planning import make_plan, preflight
from distributor.sandbox.campaigns import Campaign, default_campaigns


def invoke(*args: str, env: dict[str, str] | None = None):
    return CliRunner().invoke(main, list(args), env=env or {}, catch_exceptions=False)


def ids(n: int, start: int = 0) -> list[str]:
    return [f"cust-{i:05d}" for i in range(start, start + n)]


def plan_args(server, segment: Path, out: Path, *extra: str, campaign: str = "reactivation-20") -> list[str]:
    return ["plan", "--segment", str(segment), "--campaign", campaign, "--rate-limit", "60/min",
            "--api-url", server.url, "--output", str(out), *extra]


def files_of(folder: Path) -> dict[str, bytes]:
    """Every file of the distribution's folder, as far as its content goes: SQLite readers of a WAL journal touch the
    shared-memory index and may create an empty write-ahead log, neither of which holds any data."""
    return {
        p.name: p.read_bytes() for p in sorted(folder.iterdir())
        if not p.name.endswith("-shm") and not (p.name.endswith("-wal") and p.stat().st_size == 0)
    }


def test_a_first_plan_reports_the_segment_and_the_cost_after_one_call_writing_nothing(tmp_path: Path, sandbox) -> None:
    server = sandbox()
    segment = write_segment(tmp_path / "s.csv", ["a", "b", "", "null", "a", "c"])
    out = tmp_path / "out" / "codes.csv"

    result = invoke(*plan_args(server, segment, out), env=SANDBOX_ENV)

    assert result.exit_code == 0, result.output
    for line in (
        "plan for distribution camp_demo_reactivation · campaign reactivation-20",
        "  rows            6: 3 members, 2 invalid (1 empty, 1 placeholder), 1 duplicates",
        f"  journal         {out.parent / 'codes.journal.sqlite'} (none yet: the first run)",
        "  to serve        3  (3 new, 0 left unfinished by an earlier run)",
        "  campaign        reactivation-20 (camp_demo_reactivation): DISCOUNT_COUPONS, AUTO_UPDATE, active, "
        "no expiry; keys accepted",
        "  calls           about 5 (at least 4; 5.0 % retries and look-ups assumed)",
        "  time            about 5s at 60/min",
        "exit 0: run would publish 3 codes in about 5s",
    ):
        assert line in result.stdout.splitlines()
    assert [(a.method, a.path) for a in server.sandbox.arrivals] == [("GET", "/v1/campaigns/reactivation-20")]
    assert not out.parent.exists()  # no journal, no output folder
    assert result.stderr == ""


def test_after_a_run_it_counts_served_new_and_left_members_without_touching_the_journal(tmp_path: Path, sandbox) -> None:
    server = sandbox()
    segment = write_segment(tmp_path / "s.csv", ids(30))
    config = make_config(tmp_path, server, segment)
    assert run(config).exit_code == 0
    write_segment(segment, ids(35, start=10))  # ten left, fifteen entered
    before = files_of(config.output.parent)
    calls_before = len(server.sandbox.arrivals)

    result = invoke(*plan_args(server, segment, config.output, "--json"), env=SANDBOX_ENV)

    assert result.exit_code == 0, result.output
    plan = json.loads(result.stdout)
    assert {k: plan[k] for k in ("members", "already_served", "new", "unfinished", "left_segment", "to_serve")} == {
        "members": 35, "already_served": 20, "new": 15, "unfinished": 0, "left_segment": 10, "to_serve": 15,
    }
    assert plan["exit_code"] == 0 and plan["campaign_checked"]["id"] == "camp_demo_reactivation"
    assert [f["code"] for f in plan["findings"]] == ["left_segment"]
    assert files_of(config.output.parent) == before
    assert len(server.sandbox.arrivals) == calls_before + plan["api_calls"] == calls_before + 1


@pytest.mark.parametrize(
    ("sandbox_options", "campaign", "members", "message"),
    [
        ({"app_token": "another-token"}, "reactivation-20", 3,
         "Voucherify refused the keys (401 unauthorized): check VOUCHERIFY_APP_ID and VOUCHERIFY_APP_TOKEN"),
        ({}, "no-such-campaign", 3,
         "campaign 'no-such-campaign' does not exist in this Voucherify project (404 not_found)"),
        ({"campaigns": [Campaign(id="camp_off", name="switched-off", active=False,
                                 discount={"type": "PERCENT", "percent_off": 5})]}, "switched-off", 3,
         "campaign 'switched-off' (camp_off) is switched off in Voucherify: it publishes no code while inactive"),
        ({"campaigns": [Campaign(id="camp_old", name="last-year", expiration_date="2020-01-31T23:59:59Z",
                                 discount={"type": "PERCENT", "percent_off": 5})]}, "last-year", 3,
         "campaign 'last-year' (camp_old) expired on 2020-01-31 23:59 UTC: its codes could not be redeemed"),
        ({}, "static-50", 80,
         "campaign 'static-50' (camp_demo_static) holds 50 codes in all, but 80 members still need one: the run "
         "would stop when the pool runs out (exit 3) after at most 50 codes"),
        ({"cycle_quota": 0}, "reactivation-20", 3,
         "Voucherify's API-call quota for this billing cycle is spent (429 api_calls_cycle)"),
    ],
    ids=["bad-keys", "unknown-campaign", "inactive", "expired", "static-pool-too-small", "quota-spent"],
)
def test_a_run_that_would_certainly_fail_exits_3_naming_why(
    tmp_path: Path, sandbox, sandbox_options: dict, campaign: str, members: int, message: str
) -> None:
    server = sandbox(**sandbox_options)
    segment = write_segment(tmp_path / "s.csv", ids(members))

    result = invoke(*plan_args(server, segment, tmp_path / "o.csv", campaign=campaign), env=SANDBOX_ENV)

    assert result.exit_code == 3
    assert result.stderr.startswith("distributor: run would fail: " + message)
    assert result.stderr.count("\n") == 1
    assert f"problem: {message}" in result.stdout
    assert "exit 3: run would fail: " + message in result.stdout
    assert len(server.sandbox.arrivals) == 1
    assert SANDBOX_ENV["VOUCHERIFY_APP_TOKEN"] not in result.output


def test_a_static_pool_counts_the_codes_this_distribution_already_holds(tmp_path: Path, sandbox) -> None:
    server = sandbox()
    segment = write_segment(tmp_path / "s.csv", ids(40))
    config = make_config(tmp_path, server, segment, campaign="static-50")
    assert run(config).exit_code == 0
    write_segment(segment, ids(60))  # 20 more members, 10 codes left at most

    result = invoke(*plan_args(server, segment, config.output, campaign="static-50"), env=SANDBOX_ENV)

    assert result.exit_code == 3
    assert ("campaign 'static-50' (camp_demo_static) holds 50 codes in all, 40 of them held by this distribution's "
            "members, but 20 members still need one") in result.stderr


def test_a_join_once_static_pool_too_small_is_only_a_warning(tmp_path: Path, sandbox) -> None:
    """Members already holding a code of a join-once campaign get it again without using the pool up."""
    pool = Campaign(id="camp_cards", name="cards", type="STATIC", join_once=True, campaign_type="LOYALTY_PROGRAM",
                    codes=["CARD-1", "CARD-2"])
    server = sandbox(campaigns=[*default_campaigns(), pool])
    segment = write_segment(tmp_path / "s.csv", ids(3))

    result = invoke(*plan_args(server, segment, tmp_path / "o.csv", campaign="cards"), env=SANDBOX_ENV)

    assert result.exit_code == 0
    assert "warning: campaign 'cards' (camp_cards) holds 2 codes in all, but 3 members still need one: it runs out " \
           "unless enough of them already hold a code of it" in result.stdout


def test_calls_beyond_the_stated_quota_are_a_warning(tmp_path: Path, sandbox) -> None:
    server = sandbox()
    segment = write_segment(tmp_path / "s.csv", ids(30))

    certain = invoke(*plan_args(server, segment, tmp_path / "o.csv", "--cycle-quota", "100000", "--cycle-used",
                                "99990"), env=SANDBOX_ENV)
    likely = invoke(*plan_args(server, segment, tmp_path / "o.csv", "--cycle-quota", "32"), env=SANDBOX_ENV)

    assert (certain.exit_code, likely.exit_code) == (0, 0)
    assert ("warning: at least 31 calls are needed but 10 are left in the billing cycle: the run would stop when "
            "the quota is spent (exit 3) and could resume next cycle") in certain.stdout
    assert "  quota           33 of the 10 calls left in the billing cycle" in certain.stdout
    assert ("warning: about 33 calls are expected (at least 31) and 32 are left in the billing cycle: retries could "
            "spend it all") in likely.stdout


def test_nothing_to_serve_makes_no_call(tmp_path: Path, sandbox) -> None:
    server = sandbox()
    segment = write_segment(tmp_path / "s.csv", ids(5))
    config = make_config(tmp_path, server, segment)
    run(config)
    calls = len(server.sandbox.arrivals)

    result = invoke(*plan_args(server, segment, config.output), env=SANDBOX_ENV)

    assert result.exit_code == 0
    assert "exit 0: run would publish nothing: every valid member already holds a code" in result.stdout
    assert len(server.sandbox.arrivals) == calls


def test_a_run_in_progress_would_make_a_second_run_refuse(tmp_path: Path, sandbox) -> None:
    server = sandbox()
    segment = write_segment(tmp_path / "s.csv", ids(5))
    config = make_config(tmp_path, server, segment)
    run(config)
    write_segment(segment, ids(8))
    with Journal.open(config.layout.journal) as running:  # what a run holds while it publishes
        running.lock()
        running.start_run(str(segment))

        result = invoke(*plan_args(server, segment, config.output), env=SANDBOX_ENV)

    assert result.exit_code == 3
    assert result.stderr.startswith("distributor: run would fail: a run of this distribution is in progress (pid ")
    assert "a second run would refuse to start (exit 3) until it ends; see distributor status" in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--campaign", "c", "--rate-limit", "80/min"], "segment is missing: give --segment"),
        (["--segment", "s.csv", "--campaign", "c", "--rate-limit", "80/min"],
         "no Voucherify credentials: set VOUCHERIFY_APP_ID"),
    ],
)
def test_configuration_problems_exit_2(args: list[str], message: str) -> None:
    result = invoke("plan", *args)
    assert result.exit_code == 2
    assert result.stderr.startswith("distributor: ") and message in result.stderr


def test_unusable_input_exits_2_before_any_call(tmp_path: Path, sandbox) -> None:
    server = sandbox()
    empty = write_segment(tmp_path / "empty.csv", [])
    placeholders = write_segment(tmp_path / "bad.csv", ["null", "", "NA"])

    missing = invoke(*plan_args(server, tmp_path / "nope.csv", tmp_path / "o.csv"), env=SANDBOX_ENV)
    no_rows = invoke(*plan_args(server, empty, tmp_path / "o.csv"), env=SANDBOX_ENV)
    no_identity = invoke(*plan_args(server, placeholders, tmp_path / "o.csv"), env=SANDBOX_ENV)

    assert (missing.exit_code, no_rows.exit_code, no_identity.exit_code) == (2, 2, 2)
    assert missing.stderr == f"distributor: segment file {tmp_path / 'nope.csv'} does not exist\n"
    assert no_rows.stderr == f"distributor: {empty}: the segment has no rows (only a header)\n"
    assert no_identity.stderr.startswith(f"distributor: {placeholders}: no usable identity in column 'identity' "
                                         "(3 rows: 2 placeholder, 1 empty)")
    assert server.sandbox.arrivals == []


def test_another_campaigns_journal_exits_2_as_run_would(tmp_path: Path, sandbox) -> None:
    server = sandbox()
    segment = write_segment(tmp_path / "s.csv", ids(3))
    config = make_config(tmp_path, server, segment)
    run(config)

    result = invoke(*plan_args(server, segment, config.output, campaign="referral-program"), env=SANDBOX_ENV)

    assert result.exit_code == 2
    assert result.stderr.startswith(f"distributor: journal {config.layout.journal} belongs to campaign 'reactivation-20'")


def test_no_answer_leaves_the_campaign_unchecked_after_two_calls(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(preflight, "_SECOND_ATTEMPT_AFTER", 0.0)
    seen: list[str] = []

    def unavailable(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.path)
        return httpx.Response(503, json={"code": 503, "message": "Service Unavailable"})

    segment = write_segment(tmp_path / "s.csv", ids(3))
    config = make_config(tmp_path, None, segment, api_url="https://api.voucherify.io")

    plan = make_plan(config, transport=httpx.MockTransport(unavailable))

    assert seen == ["/v1/campaigns/reactivation-20"] * 2 and plan.api_calls == 2
    assert plan.exit_code == 0 and plan.campaign_checked is None
    assert [(f.level, f.code) for f in plan.findings] == [("warning", "campaign_unchecked")]


def test_help_shows_an_example() -> None:
    result = invoke("plan", "--help")
    assert result.exit_code == 0
    assert "distributor plan jobs/reactivation.toml" in result.stdout and "--cycle-quota" in result.stdout

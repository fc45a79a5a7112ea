"""Transient failures never make a member ``failed``; a misbehaving server stops the run instead of dooming members.

Real runs against the loopback sandbox behind the scripted server of ``misbehaving.py``: connections refused for a
while, answers that never come (after the sandbox committed the code), one customer's calls answered 503, a 3xx
on every publication, a 429 asking for a day's pause.  ``max_attempts`` is small so that, before the fix, the
short outages exhausted members' attempts in well under a second; they are shorter than the 60 s stop rule.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import held_codes, make_config, read_codes, run, write_segment
from misbehaving import (
    Exchange,
    MisbehavingServer,
    forward,
    forward_then_stall,
    redirect,
    reply,
)

from distributor.errors import EXIT_OK, EXIT_STOPPED
from distributor.journal import Journal

MEMBERS = [f"m-{i:02d}" for i in range(24)]


def config_for(tmp_path: Path, front: MisbehavingServer, **options: Any) -> Any:
    segment = write_segment(tmp_path / "segment.csv", MEMBERS)
    values = {"api_url": front.url, "max_attempts": 2, "concurrency": 4, **options}
    return make_config(tmp_path, None, segment, **values)


def assert_each_member_holds_the_code_voucherify_committed(config: Any, server: Any) -> None:
    _, codes = read_codes(config.output)
    held = held_codes(server)
    assert set(codes) == set(MEMBERS)
    assert {identity: {code} for identity, code in codes.items()} == held  # one code each, the committed one


def states(config: Any) -> dict[str, str]:
    with Journal.open(config.layout.journal, readonly=True) as journal:
        return {identity: journal.member(identity)["state"] for identity in MEMBERS}


@pytest.mark.slow
def test_connections_refused_for_a_while_leave_nobody_failed(tmp_path: Path, sandbox) -> None:
    server = sandbox()
    with MisbehavingServer(upstream=server.url) as front:

        def outage_starts(exchange: Exchange) -> None:  # the first publication goes through, then nothing listens
            front.refuse_for(1.5)
            forward()(exchange)

        front.script(forward(), outage_starts)  # the pre-flight, then the first publication
        config = config_for(tmp_path, front)
        result = run(config)

    assert result.exit_code == EXIT_OK, result.message
    assert result.stats.no_answer > 0  # the outage did happen, and was waited out
    assert set(states(config).values()) == {"done"}
    assert_each_member_holds_the_code_voucherify_committed(config, server)


@pytest.mark.slow
def test_answers_lost_for_longer_than_the_timeout_leave_nobody_failed(tmp_path: Path, sandbox) -> None:
    server = sandbox()
    stalled_until = [0.0]
    with MisbehavingServer(upstream=server.url) as front:

        def stall_starts(exchange: Exchange) -> None:
            stalled_until[0] = time.monotonic() + 1.5
            forward_then_stall(5.0)(exchange)

        # for 1.5 s every publication is committed by the sandbox but its answer never comes (timeout 0.3 s)
        front.script(forward(), stall_starts)
        front.when(lambda seen: seen.method == "POST" and time.monotonic() < stalled_until[0], forward_then_stall(5.0))
        config = config_for(tmp_path, front, timeout="300ms")
        result = run(config)

    assert result.exit_code == EXIT_OK, result.message
    assert result.stats.no_answer > 0
    assert set(states(config).values()) == {"done"}
    assert_each_member_holds_the_code_voucherify_committed(config, server)


def test_a_member_failing_only_transiently_is_served_by_the_same_command_run_again(tmp_path: Path, sandbox) -> None:
    server = sandbox()
    with MisbehavingServer(upstream=server.url) as front:
        front.when(lambda seen: '"m-07"' in seen.text, reply(503, {"code": 503, "message": "Service Unavailable"}))
        config = config_for(tmp_path, front, max_attempts=3)
        first = run(config)

        assert first.exit_code == EXIT_STOPPED
        assert first.reason == "incomplete"
        assert "1 members still have no code" in first.message and "transient" in first.message
        assert first.summary["next_step"] == "run the same command again to resume"
        assert states(config)["m-07"] == "sending"  # never failed: nothing in the errors report
        assert "m-07" not in config.layout.errors.read_text(encoding="utf-8")

        front.clear()
        second = run(config)  # the same command, no --retry-failed

    assert second.exit_code == EXIT_OK, second.message
    assert_each_member_holds_the_code_voucherify_committed(config, server)


def test_a_redirect_on_publications_stops_the_run_instead_of_failing_members(tmp_path: Path, sandbox) -> None:
    server = sandbox()
    with MisbehavingServer(upstream=server.url) as front:
        front.when(lambda seen: seen.method == "POST", redirect(301, "https://api.voucherify.io/v1/publications"))
        config = config_for(tmp_path, front)
        result = run(config)
        posts = sum(1 for seen in front.requests if seen.method == "POST")

    assert result.exit_code == EXIT_STOPPED
    assert result.reason == "redirected"
    assert "--api-url" in result.message and "301" in result.message
    assert "\n" not in result.message
    assert set(states(config).values()) <= {"pending", "sending"}  # nobody failed
    assert posts <= 4  # at most the calls already in flight: not one per member


def test_a_pause_longer_than_max_pause_stops_the_run_and_says_when_to_resume(tmp_path: Path, sandbox) -> None:
    server = sandbox()
    with MisbehavingServer(upstream=server.url) as front:
        front.when(
            lambda seen: seen.method == "POST",
            reply(429, {"code": 429, "message": "Too many requests"}, {"Retry-After": "86400",
                                                                     "X-Rate-Limit-Type": "api_calls"}),
        )
        config = config_for(tmp_path, front, max_pause="15min")
        started = time.monotonic()
        result = run(config)

    assert time.monotonic() - started < 15  # not a day's silent sleep
    assert result.exit_code == EXIT_STOPPED
    assert result.reason == "long_pause"
    assert "--max-pause" in result.message and "run the same command again after" in result.message
    assert "resume_at" in result.summary and result.summary["next_step"].startswith("run the same command again after")
    assert set(states(config).values()) <= {"pending", "sending"}


def test_old_journals_serve_members_failed_by_exhausted_transient_retries(tmp_path: Path, sandbox) -> None:
    """A journal of schema 2 whose member ``m-03`` was marked ``failed`` by exhausted retries, although Voucherify
    had committed its code under the old key: the next run migrates it and delivers exactly that code."""
    from distributor.config import publication_source_id_v1

    server = sandbox(refuse_customers={"m-03": "voucher_cannot_be_published"})
    config = make_config(tmp_path, server, write_segment(tmp_path / "segment.csv", MEMBERS))
    assert run(config).exit_code != EXIT_OK  # m-03 refused: failed, the others done

    # what an old version left: m-03 failed by exhausted retries, its code committed under the old key
    distribution = "camp_demo_reactivation"
    old_key = publication_source_id_v1(distribution, "m-03")
    server.sandbox.config.refuse_customers = {}
    committed = _publish_directly(server, "m-03", old_key)
    with sqlite3.connect(config.layout.journal) as db:
        db.execute("""UPDATE members SET error_key = 'retries_exhausted:connection', attempts = 8,
                      error_message = 'gave up after 8 attempts' WHERE identity = 'm-03'""")
        db.execute("ALTER TABLE members DROP COLUMN source_id")
        db.execute("UPDATE meta SET value = '2' WHERE key = 'schema_version'")
        db.execute("DELETE FROM meta WHERE key IN ('key_campaign', 'campaign_name')")

    result = run(config)  # the same command, no --retry-failed

    assert result.exit_code == EXIT_OK, result.message
    _, codes = read_codes(config.output)
    assert codes["m-03"] == committed
    assert held_codes(server)["m-03"] == {committed}
    with Journal.open(config.layout.journal, readonly=True) as journal:
        assert journal.member("m-03")["source_id"] == old_key


def _publish_directly(server: Any, identity: str, source_id: str) -> str:
    import anyio
    from conftest import SANDBOX_ENV

    from distributor.credentials import Credentials
    from distributor.voucherify import VoucherifyClient

    async def main() -> str:
        keys = Credentials(SANDBOX_ENV["VOUCHERIFY_APP_ID"], SANDBOX_ENV["VOUCHERIFY_APP_TOKEN"])
        async with VoucherifyClient(server.url, keys) as client:
            publication = await client.publish(
                campaign="camp_demo_reactivation", customer_source_id=identity, source_id=source_id,
                metadata={"distribution": "camp_demo_reactivation"},
            )
            return publication.code

    return anyio.run(main, backend="asyncio")



@pytest.mark.slow
def test_progress_shows_the_servers_pause_not_an_eta(tmp_path: Path, sandbox, caplog) -> None:
    import logging

    from distributor.progress import LogProgress

    server = sandbox()
    with MisbehavingServer(upstream=server.url) as front:
        # the first publication is answered 429 "retry in 2 s": every call waits for it
        front.script(forward(), reply(429, {"code": 429, "message": "Too many requests"}, {"Retry-After": "2"}))
        config = config_for(tmp_path, front)
        with caplog.at_level(logging.INFO, logger="distributor"):
            result = run(config, reporter=LogProgress(interval=0.2))

    assert result.exit_code == EXIT_OK, result.message
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("progress:")]
    paused = [line for line in lines if "paused" in line]
    assert paused and all("ETA" not in line and "by Voucherify (429)" in line for line in paused)


def test_a_token_echoed_in_an_error_reaches_no_file(tmp_path: Path, sandbox, caplog) -> None:
    import logging

    from conftest import SANDBOX_ENV

    token = SANDBOX_ENV["VOUCHERIFY_APP_TOKEN"]
    server = sandbox()
    with MisbehavingServer(upstream=server.url) as front:
        front.when(
            lambda seen: seen.method == "POST" and '"m-02"' in seen.text,
            reply(400, {"code": 400, "key": "invalid_customer", "message": f"token {token} may not publish",
                        "details": f"X-App-Token={token}", "request_id": f"v-{token}"}),
        )
        config = config_for(tmp_path, front)
        with caplog.at_level(logging.DEBUG):
            result = run(config)

    assert result.exit_code != EXIT_OK
    assert "***" in config.layout.errors.read_text(encoding="utf-8")
    written = [path for path in tmp_path.rglob("*") if path.is_file() and path.name != "segment.csv"]
    assert config.layout.journal in written
    for path in written:
        assert token.encode() not in path.read_bytes(), path
    assert token not in caplog.text and token not in result.message


@pytest.mark.slow
def test_a_taken_key_whose_publication_cannot_be_found_is_left_for_the_next_run(tmp_path: Path, sandbox) -> None:
    """Every publication answers duplicate_source_id and every look-up finds nothing (a lagging index): the run
    ends (it does not retry for ever), nobody is failed, and the next run serves them all."""
    server = sandbox()
    with MisbehavingServer(upstream=server.url) as front:
        front.when(lambda seen: seen.method == "POST", reply(400, {
            "code": 400, "key": "duplicate_source_id", "message": "Duplicate source_id", "resource_type": "publication",
        }))
        front.when(lambda seen: seen.method == "GET" and seen.path.startswith("/v1/publications"),
                   reply(200, {"object": "list", "publications": [], "total": 0}))
        config = config_for(tmp_path, front)
        first = run(config)
        front.clear()
        second = run(config)

    assert first.exit_code == EXIT_STOPPED and first.reason == "incomplete"
    assert f"{len(MEMBERS)} got only transient failures" in first.message
    assert second.exit_code == EXIT_OK, second.message
    assert_each_member_holds_the_code_voucherify_committed(config, server)

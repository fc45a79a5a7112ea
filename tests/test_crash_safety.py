"""Exactly one code per customer through kills, lost answers and signals.

Like Stripe's idempotency-key tests, the journal is seeded at each recovery point of a member — never called,
called but the answer not saved, saved — and the rerun must complete correctly; then real processes are killed
with real signals.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import anyio
import pytest
from conftest import (
    SANDBOX_ENV,
    codes_saved,
    held_codes,
    make_config,
    read_codes,
    run,
    start_job,
    wait_for,
    write_segment,
)

from distributor.config import JobConfig, publication_source_id
from distributor.errors import EXIT_MEMBER_FAILURES, EXIT_OK, EXIT_STOPPED
from distributor.journal import Journal
from distributor.outputs import atomic_write
from distributor.units import Rate
from distributor.voucherify import VoucherifyClient

CAMPAIGN_ID = "camp_demo_reactivation"
POINTS = ("pending", "before_call", "after_call", "after_save")


def ids(n: int) -> list[str]:
    return [f"c-{i:05d}" for i in range(n)]


# ---------------------------------------------------------------------------------------------- recovery points
def seed(config: JobConfig, server, points: dict[str, str]) -> None:
    """A journal as a killed first run left it: each member at the given recovery point."""
    async def publish(identity: str) -> str:
        async with VoucherifyClient(server.url, config_credentials()) as client:
            publication = await client.publish(
                campaign=CAMPAIGN_ID,
                customer_source_id=identity,
                source_id=publication_source_id(CAMPAIGN_ID, CAMPAIGN_ID, identity),
                metadata={"distribution": CAMPAIGN_ID},
            )
            return publication.code

    with Journal.open(config.layout.journal) as journal:
        run_id = journal.start_run(str(config.segment))
        journal.load(run_id, [(seq, seq + 1, identity) for seq, identity in enumerate(points, start=1)])
        journal.set_meta(key="identity", property=config.property_name, distribution=CAMPAIGN_ID,
                         campaign=config.campaign, campaign_id=CAMPAIGN_ID, join_once="0")
        for member in journal.work(run_id, after_seq=0, limit=len(points)):
            point = points[member.identity]
            if point == "pending":
                continue
            # committed before the call with the member's key, as the engine does
            journal.log_call(
                run_id, "publish", member.id, source_id=publication_source_id(CAMPAIGN_ID, CAMPAIGN_ID, member.identity)
            )
            if point in ("after_call", "after_save"):
                code = anyio.run(publish, member.identity, backend="asyncio")
                if point == "after_save":
                    journal.complete(member.id, run_id, code=code, publication_id=None)


def config_credentials():
    from distributor.credentials import Credentials

    return Credentials(SANDBOX_ENV["VOUCHERIFY_APP_ID"], SANDBOX_ENV["VOUCHERIFY_APP_TOKEN"])


@pytest.mark.parametrize("strict_source_id", [False, True], ids=["same-code-on-retry", "duplicate_source_id"])
def test_a_rerun_completes_correctly_from_every_recovery_point(tmp_path: Path, sandbox, strict_source_id: bool) -> None:
    server = sandbox(strict_source_id=strict_source_id)
    members = ids(16)
    points = {identity: POINTS[index % len(POINTS)] for index, identity in enumerate(members)}
    segment = write_segment(tmp_path / "s.csv", members)
    config = make_config(tmp_path, server, segment)
    seed(config, server, points)
    seeded_calls = {a.customer for a in server.sandbox.arrivals}

    result = run(config)

    assert result.exit_code == EXIT_OK, result.message
    held = held_codes(server)
    assert all(len(codes) == 1 for codes in held.values()) and set(held) == set(members)
    assert len(server.sandbox.publications) == len(members)  # nobody was published twice
    _, codes = read_codes(config.output)
    assert {i: {c} for i, c in codes.items()} == held
    calls_per_member = {m: sum(1 for a in server.sandbox.arrivals if a.customer == m) for m in members}
    for identity, point in points.items():
        if point == "after_save":
            assert calls_per_member[identity] == 1  # only the seeding call: a saved code is never asked again
        elif point == "after_call":
            assert identity in seeded_calls and calls_per_member[identity] == 2  # asked again, same source_id
    if strict_source_id:
        assert result.summary["calls"]["by_kind"]["lookup"] == sum(1 for p in points.values() if p == "after_call")


# ---------------------------------------------------------------------------------------------- real processes

def job_args(tmp_path: Path, server, segment: Path, rate: str, *extra: str) -> list[str]:
    return ["--segment", str(segment), "--campaign", "reactivation-20", "--api-url", server.url,
            "--rate-limit", rate, "--output", str(tmp_path / "out" / "codes.csv"), "--timeout", "5s", *extra]





def calls_logged(journal_path: Path) -> int:
    if not journal_path.exists():
        return 0
    try:
        with Journal.open(journal_path, readonly=True) as journal:
            return sum(journal.call_counts(1).values()) + sum(journal.call_counts(2).values())
    except Exception:
        return 0


@pytest.mark.slow(seconds=6)
def test_kill_9_at_random_moments_then_rerun_gives_everyone_exactly_one_code(tmp_path: Path, sandbox) -> None:
    # 300 members at 100/s: three seconds of calls in all (it was 100/2s), cut three times with a second or more of
    # calls left after each cut, so that a busy machine cannot let the run finish before its kill
    server = sandbox(rate_limit=Rate(100, 1.0), latency_median=0.02, latency_p99=0.3,
                     error_rate=0.03, lost_answer_rate=0.03, seed=7)
    members = ids(300)
    segment = write_segment(tmp_path / "s.csv", members)
    args = job_args(tmp_path, server, segment, "100/s")
    journal = tmp_path / "out" / "codes.journal.sqlite"

    for threshold in (25, 110, 190):
        process = start_job(*args)
        wait_for(lambda: codes_saved(journal) >= threshold)  # noqa: B023  called within this iteration
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
        assert process.returncode == -signal.SIGKILL

    final = start_job(*args)
    _out, err = final.communicate(timeout=120)
    assert final.returncode == EXIT_OK, err

    held = held_codes(server)
    assert set(held) == set(members) and all(len(codes) == 1 for codes in held.values())
    assert len(server.sandbox.publications) == len(members)  # no member published twice
    _, codes = read_codes(tmp_path / "out" / "codes.csv")
    assert {i: {c} for i, c in codes.items()} == held
    assert server.sandbox.stats()["lost_answer"] > 0
    # four processes, one budget: the server never counted more than the grant in any window
    assert server.sandbox.max_in_window() <= 100
    assert server.sandbox.stats()["rate_limited"] == 0


@pytest.mark.slow(seconds=5)
def test_sigterm_finishes_the_calls_in_flight_saves_and_exits_3_then_a_rerun_resumes(tmp_path: Path, sandbox) -> None:
    server = sandbox(latency_median=0.3)
    members = ids(200)
    segment = write_segment(tmp_path / "s.csv", members)
    args = job_args(tmp_path, server, segment, "50/s")
    journal = tmp_path / "out" / "codes.journal.sqlite"
    process = start_job(*args)
    wait_for(lambda: codes_saved(journal) >= 20)

    signalled = time.monotonic()
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=15)
    stopped_after = time.monotonic() - signalled

    assert process.returncode == EXIT_STOPPED
    assert stopped_after < 10
    assert "Traceback" not in err
    assert "exit 3: stopped by SIGTERM" in out
    with Journal.open(journal, readonly=True) as state:
        saved = dict(state.codes())
        assert state.state_counts()["sending"] == 0  # the calls in flight finished and were saved
    _, codes = read_codes(tmp_path / "out" / "codes.csv")
    assert codes == saved and 20 <= len(saved) < len(members)
    held = held_codes(server)
    assert all(held[i] == {c} for i, c in saved.items())

    rerun = start_job(*args)
    out, err = rerun.communicate(timeout=60)
    assert rerun.returncode == EXIT_OK, err
    _, codes = read_codes(tmp_path / "out" / "codes.csv")
    assert {i: {c} for i, c in codes.items()} == held_codes(server)
    assert len(server.sandbox.publications) == len(members)


@pytest.mark.slow
def test_a_second_signal_stops_at_once(tmp_path: Path, sandbox) -> None:
    # every call hangs 3 s: far longer than a stop at once takes, short enough that the sandbox's own stop (which
    # lets the requests it still holds finish) costs the suite no more than that
    server = sandbox(latency_median=3.0)
    segment = write_segment(tmp_path / "s.csv", ids(20))
    process = start_job(*job_args(tmp_path, server, segment, "50/s", "--timeout", "60s"))
    journal = tmp_path / "out" / "codes.journal.sqlite"
    wait_for(lambda: calls_logged(journal) >= 1)

    process.send_signal(signal.SIGTERM)
    wait_for(lambda: any(a.status == 0 for a in server.sandbox.arrivals))  # a call is in flight, hanging
    hanging = [index for index, a in enumerate(server.sandbox.arrivals) if a.status == 0]
    process.send_signal(signal.SIGINT)
    signalled = time.monotonic()
    _out, err = process.communicate(timeout=15)

    assert process.returncode == EXIT_STOPPED
    assert time.monotonic() - signalled < 3.0
    # it did not wait for the call's answer: when it was gone, that answer was still to come
    assert any(server.sandbox.arrivals[index].status == 0 for index in hanging)
    assert "Traceback" not in err
    assert "stopping now" in err


def test_failed_members_are_not_retried_forever_but_on_request(tmp_path: Path, sandbox) -> None:
    members = ids(10)
    server = sandbox(refuse_customers={members[2]: "voucher_cannot_be_published", members[5]: "invalid_customer"})
    segment = write_segment(tmp_path / "s.csv", members)
    config = make_config(tmp_path, server, segment)
    first = run(config)
    assert first.exit_code == EXIT_MEMBER_FAILURES
    assert first.summary["members"]["failed"] == 2

    server.sandbox.config.refuse_customers = {}  # the cause was fixed in Voucherify
    again = run(config)
    assert again.exit_code == EXIT_MEMBER_FAILURES  # still failed: not retried without being asked
    assert sum(1 for a in server.sandbox.arrivals if a.customer == members[2]) == 1

    retried = run(make_config(tmp_path, server, segment, retry_failed=True))
    assert retried.exit_code == EXIT_OK
    assert retried.stats.published == 2
    _, codes = read_codes(config.output)
    assert {i: {c} for i, c in codes.items()} == held_codes(server)
    assert config.layout.errors.read_text(encoding="utf-8").splitlines() == [
        "identity,row,status,error_key,message,request_id,attempts"
    ]


def test_an_interrupted_write_leaves_the_previous_file_whole(tmp_path: Path) -> None:
    target = tmp_path / "codes.csv"
    target.write_bytes(b"identity,code\r\na,OLD\r\n")
    with pytest.raises(RuntimeError), atomic_write(target, newline="") as handle:
        handle.write("identity,code\r\nb,NEW-PARTIAL")
        raise RuntimeError("killed mid-write")
    assert target.read_bytes() == b"identity,code\r\na,OLD\r\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["codes.csv"]  # no temporary file left behind

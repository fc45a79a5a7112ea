"""The throttle end to end, judged by what the sandbox received and when (its arrival log).

Every scenario runs on a virtual clock (``virtual.run_virtual``): the sandbox and the job share one event loop
whose time jumps over waits, so the figures are exact and the same on a busy machine.  The wall-clock version of
the utilisation figure, against a sandbox in its own process, is ``benchmarks/throughput.py``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import make_config, read_codes, write_segment
from virtual import VIRTUAL_URL, run_virtual

from distributor.errors import EXIT_OK, EXIT_STOPPED
from distributor.sandbox import SandboxConfig
from distributor.units import Rate


def ids(n: int) -> list[str]:
    return [f"member-{i:06d}" for i in range(n)]


def config_for(tmp_path: Path, members: int, **options: object):
    segment = write_segment(tmp_path / "s.csv", ids(members))
    return make_config(tmp_path, None, segment, api_url=VIRTUAL_URL, **options)


def held(world, campaign: str = "reactivation-20") -> dict[str, set[str]]:
    return world.codes_held(campaign)


@pytest.mark.slow
def test_a_long_latency_tail_and_5xx_still_fill_97_percent_of_the_budget_without_a_429(tmp_path: Path) -> None:
    """A per-minute plan of 2,400 calls (40/s), latency median 150 ms and p99 1.2 s, 3 % of 5xx: concurrency must
    follow the tail (~75 in flight) and the retries must fit the budget."""
    config = config_for(tmp_path, 1500, rate_limit="2400/min")
    plan = SandboxConfig(rate_limit=Rate(2400, 60.0), latency_median=0.15, latency_p99=1.2, error_rate=0.03, seed=1)

    run = run_virtual(config, plan)

    assert run.result.exit_code == EXIT_OK
    stats = run.sandbox.stats()
    assert stats["rate_limited"] == 0
    assert stats["fault_5xx"] > 0  # the faults did happen, and were retried within the budget
    assert run.result.summary["calls"]["retries"] == stats["fault_5xx"]
    assert run.result.summary["rate"]["utilisation"] >= 0.97
    assert run.sandbox.max_in_window(period=60.0) <= 2400  # our calls in any 60 s, refused ones included


def test_calls_per_code_stay_under_1_01_when_nothing_fails(tmp_path: Path) -> None:
    run = run_virtual(config_for(tmp_path, 150))
    assert run.result.summary["calls"]["total"] == len(run.sandbox.arrivals) == 151  # one pre-flight
    assert run.result.summary["calls"]["per_code"] <= 1.01


def test_headroom_leaves_part_of_the_plan_to_the_shop(tmp_path: Path) -> None:
    config = config_for(tmp_path, 120, rate_limit="50/2s", headroom=0.2)
    run = run_virtual(config, SandboxConfig(rate_limit=Rate(50, 2.0), seed=1))
    assert run.result.exit_code == EXIT_OK
    assert run.sandbox.max_in_window() <= 40
    # and it uses what it may: 120 codes at 40 per (2 s + the jitter margin), not much slower
    assert run.elapsed < 120 / 40 * 2.2 + 1


@pytest.mark.slow
def test_other_clients_on_the_same_quota_make_the_job_yield(tmp_path: Path) -> None:
    """The shop spends 30 of the 100 calls per window: the job reads the headers and leaves it room."""
    config = config_for(tmp_path, 400, rate_limit="100/4s")
    plan = SandboxConfig(rate_limit=Rate(100, 4.0), background_rate=Rate(30, 4.0), background_since=4.0, seed=1)

    run = run_virtual(config, plan)

    assert run.result.exit_code == EXIT_OK
    stats = run.sandbox.stats()
    # the shop was busy before the job started: the first answers tell the job, which leaves it room from then on
    assert stats["background_rejected"] == 0
    assert stats["rate_limited"] == 0
    # and the job used what the shop left: about 68 of 100 per window
    assert run.result.summary["rate"]["achieved_per_minute"] >= 0.9 * 68 * 15


def test_a_429_pauses_every_call_until_the_hint_and_the_job_recovers(tmp_path: Path) -> None:
    """The job was told a bigger budget than the plan really has: 429s, pauses, a lower pace, no member lost."""
    config = config_for(tmp_path, 150, rate_limit="60/2s")

    run = run_virtual(config, SandboxConfig(rate_limit=Rate(30, 2.0), seed=1))

    assert run.result.exit_code == EXIT_OK
    _, codes = read_codes(config.output)
    assert {i: {c} for i, c in codes.items()} == held(run.sandbox)
    arrivals = run.sandbox.arrivals
    rejected = [a for a in arrivals if a.status == 429]
    assert rejected, "the plan is smaller than the budget: the server must have said so"
    assert len(rejected) <= 0.1 * len(arrivals)
    # after each 429, only calls already in flight arrive before the server's hint (Retry-After, whole seconds)
    for index, refused in enumerate(arrivals):
        if refused.status == 429:
            following = [a.at for a in arrivals[index + 1 :] if a.at - refused.at < 0.5]
            assert len(following) <= 40
    assert run.result.summary["calls"]["rate_limited_429"] == len(rejected)


def test_a_spent_cycle_quota_stops_the_job_with_when_it_can_resume(tmp_path: Path) -> None:
    config = config_for(tmp_path, 60)

    stopped = run_virtual(config, SandboxConfig(cycle_quota=31, seed=1))

    assert (stopped.result.exit_code, stopped.result.reason) == (EXIT_STOPPED, "quota_spent")
    message = stopped.result.message
    assert "billing cycle is spent" in message and "next cycle, which starts" in message
    assert stopped.result.summary["resume_at"]
    _, codes = read_codes(config.output)
    assert len(codes) == 30  # 31 calls: the pre-flight and 30 codes, all saved
    refused = [a for a in stopped.sandbox.arrivals if a.outcome == "quota"]
    assert 1 <= len(refused) <= 8

    stopped.sandbox.config.cycle_quota = None  # the next billing cycle
    resumed = run_virtual(config, after=stopped)

    assert resumed.result.exit_code == EXIT_OK
    assert resumed.result.stats.held_before == 30 and resumed.result.stats.published == 30
    _, codes = read_codes(config.output)
    assert {i: {c} for i, c in codes.items()} == held(resumed.sandbox)

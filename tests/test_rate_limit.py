"""The throttle end to end, judged by what the sandbox received and when (its arrival log)."""

from __future__ import annotations

from pathlib import Path

from distributor.errors import EXIT_OK, EXIT_STOPPED
from distributor.sandbox.process import SandboxProcess
from distributor.units import Rate

from conftest import held_codes, make_config, read_codes, run, write_segment


def ids(n: int) -> list[str]:
    return [f"member-{i:06d}" for i in range(n)]


def our_arrivals(server) -> list[float]:
    return [a.at for a in server.sandbox.arrivals if a.kind != "background"]


def test_a_long_latency_tail_and_5xx_still_fill_97_percent_of_the_budget_without_a_429(tmp_path: Path) -> None:
    """A per-minute plan of 2,400 calls (40/s), latency median 150 ms and p99 1.2 s, 3 % of 5xx: concurrency must
    follow the tail (~75 in flight) and the retries must fit the budget.

    The sandbox runs in its own process, as Voucherify would: its clock must not wait for the job's interpreter.
    """
    segment = write_segment(tmp_path / "s.csv", ids(1500))
    with SandboxProcess("--rate-limit", "2400/min", "--latency", "150ms", "--latency-p99", "1.2s",
                        "--error-rate", "0.03", "--seed", "1") as server:
        result = run(make_config(tmp_path, None, segment, api_url=server.url, rate_limit="2400/min"))

    assert result.exit_code == EXIT_OK
    assert server.count(status=429) == 0
    assert server.count(outcome="fault_5xx") > 0  # the faults did happen, and were retried within the budget
    utilisation = result.summary["rate"]["utilisation"]
    print(f"utilisation {utilisation:.4f}, calls {result.summary['calls']}")
    assert utilisation >= 0.97


def test_calls_per_code_stay_under_1_01_when_nothing_fails(tmp_path: Path, sandbox) -> None:
    server = sandbox()
    segment = write_segment(tmp_path / "s.csv", ids(150))
    result = run(make_config(tmp_path, server, segment))
    assert result.summary["calls"]["total"] == len(server.sandbox.arrivals) == 151  # one pre-flight
    assert result.summary["calls"]["per_code"] <= 1.01


def test_headroom_leaves_part_of_the_plan_to_the_shop(tmp_path: Path, sandbox) -> None:
    server = sandbox(rate_limit=Rate(50, 2.0))
    segment = write_segment(tmp_path / "s.csv", ids(120))
    result = run(make_config(tmp_path, server, segment, rate_limit="50/2s", headroom=0.2))
    assert result.exit_code == EXIT_OK
    assert server.sandbox.max_in_window() <= 40


def test_other_clients_on_the_same_quota_make_the_job_yield(tmp_path: Path, sandbox) -> None:
    """The shop spends 30 of the 100 calls per window: the job reads the headers and leaves it room."""
    server = sandbox(rate_limit=Rate(100, 4.0), background_rate=Rate(30, 4.0), background_since=4.0)
    segment = write_segment(tmp_path / "s.csv", ids(400))
    config = make_config(tmp_path, server, segment, rate_limit="100/4s")

    result = run(config)

    assert result.exit_code == EXIT_OK
    stats = server.sandbox.stats()
    print(f"sandbox {stats}; job {result.summary['rate']}")
    # the shop was busy before the job started: the first answers tell the job, which leaves it room from then on
    assert stats["background_rejected"] == 0
    assert stats["rate_limited"] == 0
    # and the job used what the shop left: about 68 of 100 per window
    assert result.summary["rate"]["achieved_per_minute"] >= 0.9 * 68 * 15


def test_a_429_pauses_every_call_until_the_hint_and_the_job_recovers(tmp_path: Path, sandbox) -> None:
    """The job was told a bigger budget than the plan really has: 429s, pauses, a lower pace, no member lost."""
    server = sandbox(rate_limit=Rate(30, 2.0))
    segment = write_segment(tmp_path / "s.csv", ids(150))
    config = make_config(tmp_path, server, segment, rate_limit="60/2s")

    result = run(config)

    assert result.exit_code == EXIT_OK
    _, codes = read_codes(config.output)
    assert {i: {c} for i, c in codes.items()} == held_codes(server)
    rejected = [a for a in server.sandbox.arrivals if a.status == 429]
    assert rejected, "the plan is smaller than the budget: the server must have said so"
    assert len(rejected) <= 0.1 * len(server.sandbox.arrivals)
    # after each 429, nothing was sent before the server's hint (Retry-After, whole seconds)
    arrivals = server.sandbox.arrivals
    for index, refused in enumerate(arrivals):
        if refused.status == 429:
            following = [a.at for a in arrivals[index + 1 :] if a.at - refused.at < 0.5]
            assert len(following) <= 40  # calls already in flight, not a stream of new ones
    assert result.summary["calls"]["rate_limited_429"] == len(rejected)


def test_a_spent_cycle_quota_stops_the_job_with_when_it_can_resume(tmp_path: Path, sandbox) -> None:
    server = sandbox(cycle_quota=31)
    segment = write_segment(tmp_path / "s.csv", ids(60))
    config = make_config(tmp_path, server, segment)

    stopped = run(config)

    assert (stopped.exit_code, stopped.reason) == (EXIT_STOPPED, "quota_spent")
    assert "billing cycle is spent" in stopped.message and "next cycle, which starts" in stopped.message
    assert stopped.summary["resume_at"]
    _, codes = read_codes(config.output)
    assert len(codes) == 30  # 31 calls: the pre-flight and 30 codes, all saved
    refused = [a for a in server.sandbox.arrivals if a.outcome == "quota"]
    assert 1 <= len(refused) <= 8

    server.sandbox.config.cycle_quota = None  # the next billing cycle
    resumed = run(config)

    assert resumed.exit_code == EXIT_OK
    assert resumed.stats.held_before == 30 and resumed.stats.published == 30
    _, codes = read_codes(config.output)
    assert {i: {c} for i, c in codes.items()} == held_codes(server)

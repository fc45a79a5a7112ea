"""The throttle, on a virtual clock (looptime): time is controlled, nothing sleeps for real."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import anyio
import looptime
import pytest

from distributor.pacing.throttle import Throttle, default_margin
from distributor.units import Rate
from distributor.voucherify import RateLimitHeaders

EPOCH = 1_800_000_000.0  # the virtual wall clock's origin


def run_virtual(main: Callable[[], Awaitable[object]]) -> object:
    """Run ``main`` on an event loop whose clock starts at 0 and jumps over every sleep."""
    return anyio.run(main, backend="asyncio", backend_options={"loop_factory": lambda: looptime.new_event_loop(start=0)})


def wall() -> float:
    return EPOCH + asyncio.get_running_loop().time()


def max_in_any_window(times: list[float], window: float) -> int:
    """The largest number of ``times`` inside any half-open window ``[t, t + window)``."""
    best, start = 0, 0
    for end, t in enumerate(times):
        while t - times[start] >= window:
            start += 1
        best = max(best, end - start + 1)
    return best


async def grants(throttle: Throttle, count: int) -> list[float]:
    times = []
    for _ in range(count):
        times.append(await throttle.acquire())
    return times


def test_never_more_than_the_grant_in_any_window_and_no_burst_at_start() -> None:
    async def main() -> list[float]:
        throttle = Throttle(Rate(100, 60.0), wall_clock=wall)
        return await grants(throttle, 350)

    times = run_virtual(main)
    assert max_in_any_window(times, 60.0) <= 100
    # aiolimiter's default would let 100 calls through at once; a fresh run starts with an empty allowance
    assert max_in_any_window(times, 1.0) <= 2
    # and it still uses the grant: 349 intervals at 100 per (60 s + margin)
    span = times[-1] - times[0]
    assert span == pytest.approx(349 * (60.0 + default_margin(60.0)) / 100, rel=0.01)


def test_concurrent_callers_share_the_same_budget() -> None:
    async def main() -> list[float]:
        throttle = Throttle(Rate(50, 10.0), wall_clock=wall)
        times: list[float] = []

        async def caller() -> None:
            for _ in range(20):
                times.append(await throttle.acquire())

        async with anyio.create_task_group() as group:
            for _ in range(10):
                group.start_soon(caller)
        return sorted(times)

    times = run_virtual(main)
    assert len(times) == 200
    assert max_in_any_window(times, 10.0) <= 50


def test_a_resumed_run_counts_the_calls_the_previous_run_made() -> None:
    """The dead run sent 100 calls in the last 30 s; the server still counts them."""

    async def main() -> list[float]:
        now = wall()
        history = [now - 30.0 + i * 0.3 for i in range(100)]
        throttle = Throttle(Rate(100, 60.0), history=history, wall_clock=wall)
        return [t - 0.0 for t in await grants(throttle, 20)]

    times = run_virtual(main)
    # the oldest remembered call (30 s ago) must leave the window (60 s + margin) before the first new one
    assert times[0] >= 30.0 + default_margin(60.0) - 1e-6
    combined = [-30.0 + i * 0.3 for i in range(100)] + times
    assert max_in_any_window(sorted(combined), 60.0) <= 100


def test_a_429_pauses_every_call_until_the_servers_hint_and_halves_the_pace() -> None:
    async def main() -> tuple[list[float], Throttle]:
        throttle = Throttle(Rate(100, 60.0), wall_clock=wall)
        first = await grants(throttle, 5)
        hint = RateLimitHeaders(limit=100, remaining=0, retry_at=wall() + 20.0, retry_after=20.0, limit_type="api_calls")
        throttle.observe(hint, 429)
        assert throttle.allowed == 50
        after = await grants(throttle, 1)
        return first + after, throttle

    times, throttle = run_virtual(main)
    assert times[-1] >= times[-2] + 20.0
    assert throttle.stats.waits_for_server == 1


def test_after_a_cut_the_pace_recovers_gradually_but_never_above_the_grant() -> None:
    async def main() -> tuple[list[int], list[float]]:
        throttle = Throttle(Rate(100, 60.0), wall_clock=wall)
        throttle.observe(RateLimitHeaders(retry_after=1.0, limit_type="api_calls"), 429)
        allowed, times = [], []
        for _ in range(400):
            times.append(await throttle.acquire())
            allowed.append(throttle.allowed)
        return allowed, times

    allowed, times = run_virtual(main)
    assert allowed[0] == 50
    assert allowed == sorted(allowed)  # only upward, step by step
    assert allowed[-1] == 100
    assert max(allowed) <= 100
    assert max_in_any_window(times, 60.0) <= 100


def test_other_clients_traffic_seen_in_the_headers_lowers_our_share() -> None:
    """The server counted 100 - 20 = 80 calls in its window, 10 of them ours: the shop spent 70."""

    async def main() -> Throttle:
        throttle = Throttle(Rate(100, 60.0), wall_clock=wall)
        sent = await grants(throttle, 10)
        throttle.observe(RateLimitHeaders(limit=100, remaining=20), 200, sent_at=sent[-1])
        return throttle

    throttle = run_virtual(main)
    # 100 - 70 others - 2 reserve
    assert throttle.allowed == 28


def test_headers_that_match_our_own_calls_change_nothing() -> None:
    async def main() -> Throttle:
        throttle = Throttle(Rate(100, 60.0), wall_clock=wall)
        sent = await grants(throttle, 10)
        throttle.observe(RateLimitHeaders(limit=100, remaining=90), 200, sent_at=sent[-1])
        return throttle

    assert run_virtual(main).allowed == 100


def test_a_burst_of_429s_for_calls_already_in_flight_cuts_the_pace_once() -> None:
    async def main() -> Throttle:
        throttle = Throttle(Rate(100, 60.0), wall_clock=wall)
        sent = await grants(throttle, 6)
        for sent_at in sent:  # six calls were in flight when the limit was hit: six 429s, one episode
            throttle.observe(RateLimitHeaders(retry_after=1.0, limit_type="api_calls"), 429, sent_at=sent_at)
        return throttle

    throttle = run_virtual(main)
    assert throttle.allowed == 50
    assert throttle.stats.cuts == 1


def test_recovery_stops_at_what_the_other_clients_leave() -> None:
    """The shop keeps spending 40 of 100: after a 429 the pace climbs back to 58 (100 - 40 - 2), not to 100."""

    async def main() -> list[int]:
        throttle = Throttle(Rate(100, 60.0), wall_clock=wall)
        throttle.observe(RateLimitHeaders(retry_after=1.0, limit_type="api_calls"), 429)
        allowed = []
        for _ in range(300):
            sent_at = await throttle.acquire()
            ours = throttle.sends_between(sent_at - throttle.window, sent_at)
            throttle.observe(RateLimitHeaders(limit=100, remaining=max(0, 100 - 40 - ours)), 200, sent_at=sent_at)
            allowed.append(throttle.allowed)
        return allowed

    allowed = run_virtual(main)
    assert allowed[0] == 50
    assert max(allowed) == 58
    assert allowed[-1] == 58


def test_a_call_overtaken_by_later_calls_is_no_false_alarm() -> None:
    """The server counted 3 of our calls sent after this one (they overtook it): nobody else is there."""

    async def main() -> Throttle:
        throttle = Throttle(Rate(100, 60.0), wall_clock=wall)
        sent = await grants(throttle, 10)
        throttle.observe(RateLimitHeaders(limit=100, remaining=90), 200, sent_at=sent[6])
        return throttle

    assert run_virtual(main).allowed == 100


def test_a_429_never_pauses_longer_than_max_pause() -> None:
    async def main() -> tuple[float, float]:
        throttle = Throttle(Rate(100, 60.0), wall_clock=wall, max_pause=900.0)
        throttle.observe(RateLimitHeaders(retry_after=86400.0), 429)
        return throttle.paused_until, asyncio.get_running_loop().time()

    paused_until, now = run_virtual(main)  # type: ignore[misc]
    assert paused_until == pytest.approx(now + 900.0)

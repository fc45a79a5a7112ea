"""How many calls are kept in flight: one until the first answer, then enough for the latency's tail."""

from __future__ import annotations

import math
import random

from distributor.pacing.in_flight import InFlightTarget


def test_a_single_call_goes_first_so_a_doomed_condition_costs_one_call() -> None:
    assert InFlightTarget(33.0).target == 1
    assert InFlightTarget(33.0, fixed=10).target == 1


def test_the_target_covers_the_tail_of_the_latency_at_the_rate() -> None:
    rng = random.Random(1)
    target = InFlightTarget(rate_per_second=33.0)
    for _ in range(1000):  # median ~150 ms, a tail to ~1.2 s
        target.observe(0.15 * rng.lognormvariate(0, 0.9))
    p99 = target.tail_latency
    assert 0.8 < p99 < 2.0
    assert target.target == min(128, math.ceil(33.0 * p99 * 1.5) + 2)  # Little's law on the tail, with headroom


def test_a_faster_api_needs_fewer_calls_in_flight_and_a_slower_one_more() -> None:
    fast, slow = InFlightTarget(20.0), InFlightTarget(20.0)
    for _ in range(300):
        fast.observe(0.05)
        slow.observe(2.0)
    assert fast.target == 4  # ceil(20 × 0.05 × 1.5) + 2
    assert slow.target == 62  # 20 × 2 × 1.5 + 2


def test_the_ceiling_and_a_fixed_concurrency_are_respected() -> None:
    capped, fixed = InFlightTarget(1000.0, ceiling=50), InFlightTarget(1000.0, fixed=7)
    for _ in range(100):
        capped.observe(5.0)
        fixed.observe(5.0)
    assert capped.target == 50
    assert fixed.target == 7

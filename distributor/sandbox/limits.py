"""The sandbox's limits: the rate window and the billing-cycle quota, which the shop's own calls spend too, and
what an admitted request draws (its latency and, for a publication, an injected fault).

Facts cited come from Voucherify's API reference ("the reference"). Not thread-safe on its own: the
:class:`~.world.Sandbox` calls it under its lock.
"""

from __future__ import annotations

import collections
import math
import random
from collections.abc import Sequence
from typing import Literal

from ..units import Rate
from .bodies import RATE_LIMITED_BODY
from .model import CYCLE_SECONDS, Arrival, Fault, Outcome, Reply, SandboxConfig, Ticket

#: Log-normal quantile: the 99th percentile lies 2.326 standard deviations above the median.
_Z99 = 2.326


class Limits:
    """The calls accepted in the current window and cycle, ours and the shop's, and the headers that tell them.

    ``started`` is the sandbox clock when the sandbox started; ``wall_offset`` turns that clock into Unix time.
    """

    def __init__(self, config: SandboxConfig, *, started: float, wall_offset: float) -> None:
        self.config = config
        self._started = started
        self._wall_offset = wall_offset
        self.window: collections.deque[float] = collections.deque()  # accepted calls, oldest first
        self.cycle_used = 0
        self.cycle_resets_at = (
            config.cycle_resets_at if config.cycle_resets_at is not None else self.wall(started) + CYCLE_SECONDS
        )
        self.background_calls = 0  # the shop's calls replayed so far
        self.background: collections.Counter[str] = collections.Counter()

    def wall(self, at: float) -> float:
        """The Unix time of sandbox clock time ``at``."""
        return at + self._wall_offset

    def take_call(self, now: float) -> Literal["quota", "rate_limited"] | None:
        """Count one call against the cycle quota and the window, or say which limit refuses it.

        A refused call is not counted: only accepted calls fill the window and spend the quota."""
        quota = self.config.cycle_quota
        if quota is not None and self.cycle_used >= quota:
            return "quota"
        limit = self.config.rate_limit
        if limit is not None:
            self._prune(now, limit)
            if len(self.window) >= limit.calls:
                return "rate_limited"
            self.window.append(now)
        self.cycle_used += 1
        return None

    def _prune(self, now: float, limit: Rate) -> None:
        """Drop calls that have left the window: the window holds the calls of the last ``period`` seconds,
        ``(now - period, now]``."""
        while self.window and self.window[0] <= now - limit.period:
            self.window.popleft()

    def headers(self, now: float, refused: str | None = None) -> dict[str, str]:
        """``X-Rate-Limit-Limit/-Remaining/-Retry`` (reference: "Every response carries ...")."""
        limit = self.config.rate_limit
        if limit is None:
            return {}
        self._prune(now, limit)
        remaining = max(0, limit.calls - len(self.window))
        if refused == "quota":
            retry = math.ceil(self.cycle_resets_at)
        elif remaining > 0:
            retry = math.floor(self.wall(now))
        else:
            retry = math.ceil(self.wall(self.window[0] + limit.period))
        return {
            "X-Rate-Limit-Limit": str(limit.calls),
            "X-Rate-Limit-Remaining": str(remaining),
            "X-Rate-Limit-Retry": str(retry),
        }

    def too_many(self, ticket: Ticket, now: float, refused: str) -> Reply:
        """429 with ``Retry-After`` (whole seconds, rounded up) and ``X-Rate-Limit-Type`` (reference)."""
        if refused == "quota":
            wait, limit_type = self.cycle_resets_at - self.wall(now), "api_calls_cycle"
        else:
            assert self.config.rate_limit is not None
            wait, limit_type = self.window[0] + self.config.rate_limit.period - now, "api_calls"
        headers = {**ticket.headers, "Retry-After": str(max(1, math.ceil(wait))), "X-Rate-Limit-Type": limit_type}
        return Reply(429, dict(RATE_LIMITED_BODY), headers)

    def roll_cycle(self, now: float) -> None:
        """A new billing cycle starts with an unspent quota."""
        while self.wall(now) >= self.cycle_resets_at:
            self.cycle_resets_at += CYCLE_SECONDS
            self.cycle_used = 0

    def run_background(self, now: float, arrivals: list[Arrival]) -> None:
        """Replay, up to ``now``, the shop's calls at ``background_rate``, evenly spaced since the start (or since
        ``background_since`` seconds before it), logging each in ``arrivals``.

        They spend the same window and quota as ours (reference: "the same quota serves the live shop");
        one that finds no room is a checkout call that failed (counted as ``background_rejected``)."""
        rate = self.config.background_rate
        if rate is None:
            return
        interval = rate.period / rate.calls
        first = self._started - self.config.background_since
        while (at := first + (self.background_calls + 1) * interval) <= now:
            self.background_calls += 1
            self.roll_cycle(at)
            refused = self.take_call(at)
            outcome: Outcome = "ok" if refused is None else refused
            status = 200 if refused is None else 429
            self.background["background_accepted" if refused is None else "background_rejected"] += 1
            # A shop calls the validation endpoint at checkout; the path only labels the log line.
            arrivals.append(Arrival(at, self.wall(at), "POST", "/v1/validations", "background", status, outcome))


def draw_latency(config: SandboxConfig, rng: random.Random) -> float:
    """An admitted request's delay: log-normal with the configured median and 99th percentile."""
    median, p99 = config.latency_median, config.latency_p99
    if median <= 0:
        return 0.0
    if p99 is None or p99 <= median:
        return median
    return rng.lognormvariate(math.log(median), math.log(p99 / median) / _Z99)


def draw_fault(config: SandboxConfig, rng: random.Random) -> Fault | None:
    """A publication's injected fault: a 5xx before anything is committed, or a lost answer after, or none."""
    if rng.random() < config.error_rate:
        fault: Fault = rng.choice(("500", "502", "503"))
        return fault
    if rng.random() < config.lost_answer_rate:
        return "lost"
    return None


def most_in_window(times: Sequence[float], period: float) -> int:
    """The most of ``times`` (sorted) that fall in any window of ``period`` seconds."""
    best, first = 0, 0
    for last, at in enumerate(times):
        while at - times[first] >= period:
            first += 1
        best = max(best, last - first + 1)
    return best

"""The live counters of one run (:class:`RunStats`) and what shows them while it goes (:class:`Reporter`)."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Protocol

from ..push import PushStats


class Reporter(Protocol):
    """Shows progress; ``update`` is called every ``interval`` seconds with the live stats."""

    interval: float

    def start(self, stats: RunStats) -> None: ...
    def update(self, stats: RunStats) -> None: ...
    def finish(self, stats: RunStats) -> None: ...


@dataclass
class RunStats:
    """Live counters of one run."""

    budget_per_second: float = 0.0
    members: int = 0
    to_publish: int = 0
    held_before: int = 0
    published: int = 0
    failed: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    calls: Counter[str] = field(default_factory=Counter)
    retries: int = 0
    rate_limited: int = 0
    server_errors: int = 0
    no_answer: int = 0
    recovered_by_lookup: int = 0
    #: deliver_to=leavers: watched members this run found gone (now owed a code)
    leavers_found: int = 0
    #: members whose calls failed only transiently while others succeeded: left for the next run, never failed
    deferred: int = 0
    last_transient: str = ""
    in_flight: int = 0
    #: seconds the server still makes every call wait (a 429's hint): no ETA means anything meanwhile
    paused_for: float = 0.0
    started_wall: float = field(default_factory=time.time)
    first_call: float | None = None
    last_call: float | None = None
    #: h7-clevertap: the push's counters when the run pushes to CleverTap (``--clevertap``)
    clevertap: PushStats | None = None

    @property
    def total_calls(self) -> int:
        return sum(self.calls.values())

    @property
    def remaining(self) -> int:
        return max(0, self.to_publish - self.published - self.failed - self.deferred)

    @property
    def achieved_per_second(self) -> float | None:
        """Calls per second from the first call to the last (``None`` with fewer than two calls)."""
        if self.first_call is None or self.last_call is None or self.total_calls < 2:
            return None
        span = self.last_call - self.first_call
        return (self.total_calls - 1) / span if span > 0 else None

    @property
    def utilisation(self) -> float | None:
        achieved = self.achieved_per_second
        return None if achieved is None or not self.budget_per_second else achieved / self.budget_per_second

    def eta_seconds(self) -> float | None:
        if self.paused_for > 0:
            return None
        if not self.remaining:
            return 0.0
        rate = self.achieved_per_second or self.budget_per_second
        return self.remaining / rate if rate else None

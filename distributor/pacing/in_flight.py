"""How many calls to keep in flight: enough to cover the API's latency at the granted rate, and no more.

Little's law: calls in flight = rate × latency.  At 2,000/min (33/s) and 0.5 s that is ~17; with a long tail
(p99 of a second or more) the slow calls hold their slots longer, and if every slot is taken the throttle's turn
passes unused.  So the target covers the *tail*: ``rate × p99 latency × 1.5 + 2``, re-estimated from the last few
hundred calls, kept below the HTTP connection pool (or httpx raises ``PoolTimeout``).

The run starts with a single call in flight until the first answer arrives, so a doomed condition (bad keys,
unknown campaign) costs one call, not one per slot.
"""

from __future__ import annotations

import math
from collections import deque

#: Latency assumed before any call has been measured.
_INITIAL_LATENCY = 1.0
_SAMPLES = 256
_HEADROOM = 1.5
_RECOMPUTE_EVERY = 16


class InFlightTarget:
    """Tracks latencies and says how many calls may be in flight (``target``)."""

    def __init__(self, rate_per_second: float, *, fixed: int | None = None, ceiling: int = 128) -> None:
        self.rate_per_second = rate_per_second
        self.fixed = fixed
        self.ceiling = fixed or ceiling
        self._latencies: deque[float] = deque(maxlen=_SAMPLES)
        self._answered = False
        self._tail = _INITIAL_LATENCY

    def observe(self, latency: float) -> None:
        self._answered = True
        self._latencies.append(latency)
        if len(self._latencies) < _RECOMPUTE_EVERY:
            # too few answers to know the tail: assume the initial guess unless they were slower still
            self._tail = max(_INITIAL_LATENCY, max(self._latencies))
        elif len(self._latencies) % _RECOMPUTE_EVERY == 0:
            ordered = sorted(self._latencies)
            self._tail = ordered[min(len(ordered) - 1, math.ceil(0.99 * len(ordered)) - 1)]

    @property
    def tail_latency(self) -> float:
        """The 99th percentile of the recent latencies (the initial guess before any answer)."""
        return self._tail

    @property
    def target(self) -> int:
        if self.fixed is not None:
            return self.fixed if self._answered else 1
        if not self._answered:
            return 1
        wanted = math.ceil(self.rate_per_second * self.tail_latency * _HEADROOM) + 2
        return max(2, min(self.ceiling, wanted))

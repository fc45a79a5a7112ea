"""The run's pace: every call waits for its turn at the :class:`Throttle` (the budget, the server's own counts,
a 429's pause), and the calls kept in flight follow the latency (:class:`InFlightTarget`).  Both learn from every
answer through :meth:`Pace.observe`, the HTTP client's observer."""

from __future__ import annotations

import logging
import time

import anyio

from ..config import JobConfig
from ..journal import Journal
from ..pacing.in_flight import InFlightTarget
from ..pacing.throttle import Throttle
from ..units import format_duration
from ..voucherify import RateLimitHeaders
from .stopping import Stopping

log = logging.getLogger("distributor")

#: The most calls kept in flight when the concurrency adapts (the HTTP pool holds a few more connections).
MAX_IN_FLIGHT = 128


class Pace:
    """The throttle and the in-flight target of one run, made when its first call is about to be sent."""

    def __init__(self, config: JobConfig, journal: Journal) -> None:
        # The server still counts the calls a previous (perhaps killed) run made in the current window.
        self.throttle = Throttle(
            config.budget,
            history=journal.calls_since(time.time() - 2 * config.budget.period),
            max_pause=config.max_pause,
        )
        self._allowed_logged = self.throttle.allowed  # -v: the throttle's allowance last logged
        self.in_flight = InFlightTarget(config.budget.per_second, fixed=config.concurrency, ceiling=MAX_IN_FLIGHT)

    def target_in_flight(self) -> int:
        """How many calls may be in flight now, for the throttle's current allowance and the latency seen."""
        self.in_flight.rate_per_second = self.throttle.allowed / self.throttle.window
        return self.in_flight.target

    def paused_for(self) -> float:
        """Seconds the server still makes every call wait (a 429's hint)."""
        return max(0.0, self.throttle.paused_until - anyio.current_time())

    async def turn(self, stopping: Stopping) -> bool:
        """Wait for the throttle; ``False`` when the run is stopping (the wait is abandoned)."""
        if stopping.is_set():
            return False
        with stopping.abandoned_on_stop() as scope:
            await self.throttle.acquire()
        self._note_throttle()
        return not scope.cancelled_caught and not stopping.is_set()

    def observe(self, rate: RateLimitHeaders, status: int, sent_at: float, latency: float) -> None:
        """Every answer: the server's rate-limit headers and status for the throttle, the latency for the target."""
        paused_until = self.throttle.paused_until
        self.throttle.observe(rate, status, sent_at)
        self.in_flight.observe(latency)
        if self.throttle.paused_until > paused_until:
            seconds = max(0.0, self.throttle.paused_until - anyio.current_time())
            log.debug("pause: HTTP %d asks to wait; every call waits %s", status, format_duration(seconds),
                      extra={"event": "pause", "status": status, "seconds": round(seconds, 3)})
        if status == 429:
            self._note_throttle("a 429 answer")
        elif self.throttle.allowed < self._allowed_logged:
            self._note_throttle(f"the server counts calls of other clients: X-Rate-Limit-Remaining {rate.remaining}")
        else:
            self._note_throttle()

    def _note_throttle(self, why: str | None = None) -> None:
        """-v: log a change of the pace once, with its reason."""
        allowed = self.throttle.allowed
        if allowed != self._allowed_logged:
            why = why or ("recovering after a cut" if allowed > self._allowed_logged else "slowing down")
            log.debug("throttle: %d → %d calls per %s window (%s)", self._allowed_logged, allowed,
                      format_duration(self.throttle.window), why,
                      extra={"event": "throttle", "allowed": allowed, "window_seconds": self.throttle.window})
            self._allowed_logged = allowed

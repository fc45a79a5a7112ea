"""The throttle: when the next API call may be sent, so that the job never exceeds the rate it was granted.

Voucherify blocks an account that goes over its per-minute (or per-hour) limit, and the same quota serves the
shop's checkout.  So the promise is strict — at most ``N`` calls in **every** window of the period's length,
retries and look-ups included — and the job should still use almost all of ``N``.  Three mechanisms:

1. **Pacing**, the generic cell rate algorithm: calls are spaced ``window / allowed`` seconds apart, with a
   tolerance of 2 % of ``allowed`` calls to catch up after a hiccup.  A fresh (or resumed) run starts with an
   empty allowance: no burst.  (aiolimiter's ``AsyncLimiter`` is the usual tool, but it starts with a full burst,
   its rate cannot be changed on a live limiter, and its timer re-arms at the same instant when the clock is
   quantised — it spins forever on a virtual test clock.  The schedule below is a few lines and does all three.)
2. **A sliding-window log** of our own send times: a call is sent only when fewer than ``allowed`` of our calls
   were sent in the last ``window`` seconds.  This is the hard guarantee, whatever the pacer does.  The window is
   the period plus a small ``margin`` (2 % of the period, between 100 ms and 500 ms), which absorbs the jitter
   between the moment we send and the moment the server counts the call.  A resumed run seeds the log with the calls the
   journal says the previous run made, because the server still remembers them.
3. **Feedback** from Voucherify's headers, downward only: every answer's ``X-Rate-Limit-Limit`` and
   ``-Remaining`` tell how many calls the server counted; what exceeds our own calls was spent by other clients
   of the same project (the shop), and ``allowed`` drops so that ours plus theirs fit.  A 429 pauses every call
   until the server's ``X-Rate-Limit-Retry`` / ``Retry-After`` hint and halves ``allowed`` (once per episode).
   ``allowed`` then recovers gradually (5 % of the grant every tenth of a window) up to what the other clients
   leave — never above the grant.

Time is the event loop's clock (``anyio.current_time``), so tests drive it with a virtual clock instead of
sleeping.
"""

from __future__ import annotations

import bisect
import math
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import anyio

from ..units import Rate
from ..voucherify.models import RateLimitHeaders

#: Share of ``allowed`` that the pacer may send early to catch up after a quiet spell.
_BURST_SHARE = 0.02
#: Waits shorter than this are rounding noise.
_EPSILON = 1e-9
#: The part of the server's limit never counted on when other traffic is present (estimates are noisy).
_RESERVE_SHARE = 0.02
_RECOVERY_STEP_SHARE = 0.05
#: Other clients' calls up to this many are read as measurement noise (a call counted at a window's edge).
_NOISE_CALLS = 1
_RECOVERY_EVERY_WINDOW_SHARE = 0.1


def default_margin(period: float) -> float:
    """Seconds added to the period to absorb send → arrival jitter: 2 % of it, between 100 ms and 500 ms.

    Half a second covers a retransmission of the request on a kept-alive connection (TCP's minimum
    retransmission timeout is 200 ms); at Voucherify's per-minute windows it costs 0.8 % of the grant.
    """
    return min(0.5, max(0.1, 0.02 * period))


@dataclass
class ThrottleStats:
    waits_for_server: int = 0
    seconds_paused: float = 0.0
    cuts: int = 0
    lowest_allowed: int = 0


class Throttle:
    """Grants one call at a time.  ``await throttle.acquire()`` before each send; ``observe()`` each answer."""

    def __init__(
        self,
        rate: Rate,
        *,
        margin: float | None = None,
        history: Iterable[float] = (),
        clock: Callable[[], float] = anyio.current_time,
        wall_clock: Callable[[], float] = time.time,
        max_pause: float = math.inf,
    ) -> None:
        self.grant = rate
        #: the longest pause a 429 imposes here; the engine stops the run when the server asks for more
        self.max_pause = max_pause
        self.margin = default_margin(rate.period) if margin is None else margin
        self.window = rate.period + self.margin
        self._clock = clock
        self._wall = wall_clock
        self._allowed = rate.calls
        self._sends: deque[float] = deque(maxlen=rate.calls)
        self._paused_until = 0.0
        self._last_change = -math.inf
        self._last_cut = -math.inf
        #: recent estimates of the other clients' calls: (when, how many in the server's window, server's limit)
        self._others: deque[tuple[float, int, int]] = deque()
        self._lock = anyio.Lock()
        #: the pacing schedule: the theoretical time of the next call (GCRA's "TAT"), set so that the tolerance
        #: is already used up — an empty allowance, no burst at start
        self._next_at = clock() + self._tolerance()
        self.stats = ThrottleStats(lowest_allowed=rate.calls)
        self._seed(history)

    # ------------------------------------------------------------------ state
    @property
    def allowed(self) -> int:
        """Calls per window the job currently allows itself (the grant, or less after server feedback)."""
        return self._allowed

    @property
    def paused_until(self) -> float:
        return self._paused_until

    def sends_between(self, start: float, end: float) -> int:
        """How many of our calls were sent in ``(start, end]``.  The sends are in time order (the history sorted,
        then each grant at the loop's time), so two bisections count them: a walk over every send cost a million
        steps per answer at a high grant."""
        return max(0, bisect.bisect_right(self._sends, end) - bisect.bisect_right(self._sends, start))

    def _seed(self, history: Iterable[float]) -> None:
        """Remember the calls (Unix times) a previous run made: the server has not forgotten them."""
        now, wall = self._clock(), self._wall()
        for sent in sorted(history):
            age = wall - sent
            if 0 <= age < self.window:
                self._sends.append(now - age)

    # ------------------------------------------------------------------ granting
    async def acquire(self) -> float:
        """Wait until a call may be sent; return the (loop) time it was granted, recorded as a send."""
        async with self._lock:
            while (delay := self._delay(self._clock())) > _EPSILON:
                await anyio.sleep(delay)
            granted = self._clock()
            self._next_at = max(self._next_at, granted) + self.window / self._allowed
            self._sends.append(granted)
            self._recover(granted)
            return granted

    def _tolerance(self) -> float:
        return self.window / self._allowed * int(self._allowed * _BURST_SHARE)

    def _delay(self, now: float) -> float:
        delay = max(self._paused_until - now, self._next_at - self._tolerance() - now)
        if len(self._sends) >= self._allowed:
            # the `allowed`-th most recent send must leave the window before one more may go
            delay = max(delay, self._sends[-self._allowed] + self.window - now)
        return delay

    # ------------------------------------------------------------------ feedback
    def observe(self, rate: RateLimitHeaders, status: int, sent_at: float | None = None) -> None:
        """Learn from one answer's rate-limit headers (``sent_at``: the loop time the call was sent)."""
        now = self._clock()
        sent_at = now if sent_at is None else sent_at
        if status == 429 and rate.limit_type != "api_calls_cycle":
            self._on_rate_limited(rate, now, sent_at)
            return
        if rate.limit is None or rate.remaining is None:
            return
        # The server counted `limit - remaining` calls in its window when this call arrived; those beyond ours were
        # made by other clients of the project.  Ours are counted from a window before the send to *now*: every
        # call of ours the server can have counted is inside that span (calls sent after this one may have
        # overtaken it), so the estimate of the others' calls errs low, never high.  A false alarm would cost
        # throughput; a real excess is caught by the reserve and, at worst, by a 429.
        ours = self.sends_between(sent_at - self.window, now)
        others = rate.limit - rate.remaining - ours
        if others > _NOISE_CALLS:
            self._others.append((now, others, rate.limit))
        room = self._room(now)
        if room < self._allowed:
            self._set_allowed(room, now)

    def _room(self, now: float) -> int:
        """What the other clients leave us: the server's limit, minus the most they spent in a recent window."""
        while self._others and self._others[0][0] < now - self.window:
            self._others.popleft()
        if not self._others:
            return self.grant.calls
        limit = self._others[-1][2]
        others = max(seen for _, seen, _ in self._others)
        reserve = max(1, math.ceil(limit * _RESERVE_SHARE))
        return max(1, min(self.grant.calls, limit - others - reserve))

    def _on_rate_limited(self, rate: RateLimitHeaders, now: float, sent_at: float) -> None:
        hint = rate.wait_until(self._wall())
        # no hint: wait for one slot of the window to free up
        resume = now + (hint - self._wall() if hint is not None else self.window / max(1, self._allowed))
        resume = min(resume, now + self.max_pause)
        if resume > self._paused_until:
            self.stats.waits_for_server += 1
            self.stats.seconds_paused += resume - max(now, self._paused_until)
            self._paused_until = resume
        # One cut per episode: 429s for calls sent before the last cut are echoes of the same excess.
        if sent_at > self._last_cut:
            self._set_allowed(max(1, self._allowed // 2), now)

    def _set_allowed(self, allowed: int, now: float) -> None:
        allowed = min(allowed, self.grant.calls)
        if allowed == self._allowed:
            return
        if allowed < self._allowed:
            self.stats.cuts += 1
            self.stats.lowest_allowed = min(self.stats.lowest_allowed, allowed)
            self._last_cut = now
        self._allowed = allowed
        self._last_change = now

    def _recover(self, now: float) -> None:
        """Additive increase: 5 % of the grant every tenth of a window, up to what the other clients leave."""
        if now < self._paused_until or now - self._last_change < self.window * _RECOVERY_EVERY_WINDOW_SHARE:
            return
        ceiling = self._room(now)
        if self._allowed < ceiling:
            step = max(1, math.ceil(self.grant.calls * _RECOVERY_STEP_SHARE))
            self._set_allowed(min(ceiling, self._allowed + step), now)

"""One logical call to Voucherify — wait for the throttle, log it in the journal (a commit shared with the calls
ready at the same moment, :mod:`.recording`), send it, apply the retry policy — and what a failure means for the
member and for the run.

Only a definite refusal fails a member.  Transient failures (no answer, 5xx, 429, a look-up that finds nothing) are
retried with backoff for as long as Voucherify fails for everyone — the outage rule stops the run resumably after a
minute — and, once ``max_attempts`` are spent while the others are served, the member is left ``sending`` for the
next run, which re-sends it under the same key.  A 429 is the server's limit, not the member's fault: it does not
use up an attempt.  The pre-flight call gives up after ``max_attempts`` only once nothing succeeded for a minute.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

import anyio

from ..config import JobConfig
from ..errors import StopRun
from ..journal import Journal, Member
from ..journal.batch import CallOutcome, NewCall
from ..pacing.retry import Action, Decision, backoff, decide
from ..units import format_duration
from ..voucherify import ApiError, Publication, TransportError, VoucherifyClient
from .pace import Pace
from .recording import Recorder
from .stats import RunStats
from .stopping import Stopping

log = logging.getLogger("distributor")

T = TypeVar("T")

#: No success for this long, with at least ``_OUTAGE_CALLS`` failed calls in a row: Voucherify is unreachable.
_OUTAGE_SECONDS = 60.0
_OUTAGE_CALLS = 20
#: Backoff between attempts of one member: full jitter over [0, min(cap, base · 2^(attempt-1))] seconds.
_BACKOFF_BASE = 0.25
_BACKOFF_CAP = 30.0


@dataclass(frozen=True)
class Retry:
    """After a failure: send the call again (its backoff has been waited)."""


@dataclass(frozen=True)
class Settled(Generic[T]):
    """After a failure: the call is over — ``value`` is what a look-up recovered, or ``None`` (the member failed or
    was left for the next run, or the run is stopping)."""

    value: T | None = None


@dataclass(frozen=True)
class CallRecord:
    """How a call ended, as the journal's ``calls`` records it: ``outcome``, HTTP ``status``, ``request_id``."""

    outcome: str
    status: int | None
    request_id: str | None


def call_record(error: ApiError | TransportError | None) -> CallRecord:
    """The journal's record of a call that answered (``None``) or failed with ``error``."""
    if error is None:
        return CallRecord("ok", 200, None)
    if isinstance(error, TransportError):
        return CallRecord(error.kind.replace(" ", "_"), None, None)
    if error.status == 429:
        outcome = "rate_limited"
    elif error.status >= 500:
        outcome = "server_error"
    else:
        outcome = "refused"
    return CallRecord(outcome, error.status, error.request_id)


class Calls:
    """The calls of one run: ``run_id``'s calls to ``api``, each logged in ``journal`` before it is sent."""

    def __init__(
        self,
        config: JobConfig,
        journal: Journal,
        run_id: int,
        api: VoucherifyClient,
        pace: Pace,
        stats: RunStats,
        stopping: Stopping,
    ) -> None:
        self.config, self.journal, self.run_id, self.api = config, journal, run_id, api
        self.pace, self.stats, self.stopping = pace, stats, stopping
        #: the journal's writes of these calls and their answers, in shared commits
        self.recorder = Recorder(journal, stats, stopping)
        self._consecutive_failures = 0
        self._last_success = anyio.current_time()
        #: members whose latest call failed transiently → (first, latest failure), loop time: tells a member's
        #: own trouble from an outage
        self._failing: dict[int, tuple[float, float]] = {}

    async def make(
        self,
        kind: str,
        member: Member | None,
        send: Callable[[], Awaitable[T]],
        *,
        source_id: str | None = None,
        look_up: Callable[[], Awaitable[T | None]] | None = None,
    ) -> T | None:
        """Make one logical call of ``kind`` (for ``member``, or none): its answer, what ``look_up`` recovered
        after a ``duplicate_source_id`` or a lost answer, or ``None`` (member failed or deferred, or stopping)."""
        spent = 0  # attempts used up: failed calls other than 429s
        while True:
            if not await self.pace.turn(self.stopping):
                return None
            call_id = await self._log_call(kind, member, source_id=source_id)
            served_before = self._last_success  # the latest success when this attempt was sent
            try:
                result = await send()
            except (ApiError, TransportError) as error:
                self._record(call_id, error)
                decision = decide(error, campaign=self.config.campaign, max_pause=self.config.max_pause)
                self._count_failure(decision)
                if decision.reason != "rate_limited":  # the server's limit does not use up the member's attempts
                    spent += 1
                if member is not None and decision.action is not Action.FAIL_MEMBER:
                    now = anyio.current_time()
                    self._failing[member.id] = (self._failing.get(member.id, (now, now))[0], now)
                after = await self._after_failure(kind, member, error, decision, spent, served_before, look_up)
                if isinstance(after, Retry):
                    continue
                if member is not None:
                    self._failing.pop(member.id, None)
                return after.value
            self._record(call_id, None)
            self._consecutive_failures = 0
            self._last_success = anyio.current_time()
            if member is not None:
                self._failing.pop(member.id, None)
            return result

    async def _after_failure(
        self,
        kind: str,
        member: Member | None,
        error: ApiError | TransportError,
        decision: Decision,
        attempt: int,
        served_before: float,
        look_up: Callable[[], Awaitable[T | None]] | None,
    ) -> Retry | Settled[T]:
        """Apply ``decision`` to a failed call (see the module)."""
        if decision.action is Action.STOP:
            if kind == "campaign" and decision.reason == "forbidden":
                log.warning("these keys may not read campaigns (403): skipping the pre-flight check")
                return Settled()
            self.stopping.request(_stop(decision))
            return Settled()
        if decision.action is Action.LOOKUP and member is not None and look_up is not None:
            found = await look_up()
            if found is not None:
                return Settled(found)
        elif decision.action is Action.FAIL_MEMBER:
            if member is None:
                self.stopping.request(StopRun(f"Voucherify refused the {kind} call: {error}", reason="refused"))
            else:
                self._fail_member(member, error)
            return Settled()
        if attempt >= self.config.max_attempts:
            if member is not None and (decision.action is Action.LOOKUP or self._failing_alone(member, served_before)):
                # a key Voucherify says is taken but whose publication it cannot show, or others are served
                # meanwhile: this member's trouble persists; the next run tries again
                self._defer_member(member, error, attempt)
                return Settled()
            if member is None and anyio.current_time() - self._last_success >= _OUTAGE_SECONDS:
                self.stopping.request(StopRun(
                    f"no answer to the {kind} call after {attempt} attempts ({error}): run the same command "
                    "again later", reason="unreachable",
                ))
                return Settled()
        if self._outage():
            return Settled()
        self.stats.retries += 1
        limited = decision.reason == "rate_limited"
        delay = 0.0 if limited else backoff(min(attempt, 32), base=_BACKOFF_BASE, cap=_BACKOFF_CAP)
        fields = {"event": "retry", "kind": kind, "row": member.seen_row if member else None,
                  "reason": decision.reason, "attempt": attempt, "delay_seconds": round(delay, 3)}
        if limited:
            log.debug("retry: %s call%s answered 429 (%s); not counted as an attempt, next after the throttle's pause",
                      kind, _row_of(member), error, extra=fields)
        else:
            log.debug("retry: %s call%s failed (%s: %s); attempt %d of %d, next in %s", kind, _row_of(member),
                      decision.reason, error, attempt, self.config.max_attempts, format_duration(delay), extra=fields)
        if delay:  # a 429 already paused the throttle until the server's hint
            await self.stopping.sleep(delay)
        return Retry()

    async def look_up(self, member: Member, source_id: str) -> Publication | None:
        """``duplicate_source_id``: the publication exists; fetch its code instead of publishing again."""
        for attempt in range(1, self.config.max_attempts + 1):
            if not await self.pace.turn(self.stopping):
                return None
            call_id = await self._log_call("lookup", member, source_id=source_id)
            log.debug("look-up%s: the publication under source_id %s exists (duplicate_source_id or a lost answer); "
                      "fetching its code, attempt %d", _row_of(member), source_id, attempt,
                      extra={"event": "lookup", "row": member.seen_row, "source_id": source_id, "attempt": attempt})
            try:
                found = await self.api.find_publication(source_id)
            except (ApiError, TransportError) as error:
                self._record(call_id, error)
                decision = decide(error, campaign=self.config.campaign, max_pause=self.config.max_pause)
                self._count_failure(decision)
                if decision.action is Action.STOP:
                    self.stopping.request(_stop(decision))
                    return None
                if decision.action is not Action.RETRY:
                    return None
                await self.stopping.sleep(backoff(attempt, base=_BACKOFF_BASE, cap=_BACKOFF_CAP))
                continue
            self._record(call_id, None)
            if found is not None:
                self.stats.recovered_by_lookup += 1
            return found
        return None

    # ------------------------------------------------------------------ what a failure means
    def _fail_member(self, member: Member, error: ApiError | TransportError) -> None:
        """A definite refusal by Voucherify: the member is ``failed`` (``--retry-failed`` tries it again)."""
        if isinstance(error, ApiError):
            status, key, message, request_id = error.status, error.key, error.description, error.request_id
        else:
            status, key, message, request_id = None, getattr(error, "kind", "no_answer"), str(error), None
        self.journal.fail(member.id, status=status, key=key, message=message, request_id=request_id)
        self.stats.failed += 1
        log.debug("member at row %s failed: %s %s", member.seen_row, key, message)

    def _failing_alone(self, member: Member, served_before: float) -> bool:
        """This member's latest attempt was sent after others were served (since its failures began), and still
        failed, while no other member failed since the last success: the trouble is this member's, not an outage
        (during one, and at its end, every member keeps waiting)."""
        first, _ = self._failing.get(member.id, (anyio.current_time(), 0.0))
        others_failing = any(
            latest > self._last_success for other, (_, latest) in self._failing.items() if other != member.id
        )
        return served_before > first and not others_failing

    def _defer_member(self, member: Member, error: Exception, attempts: int) -> None:
        """Transient failures only, while other members are served: leave it ``sending`` for the next run."""
        self.stats.deferred += 1
        self.stats.last_transient = str(error)
        log.info(
            "member at row %s: no code after %d attempts (last: %s); the next run tries again", member.seen_row,
            attempts, error,
        )

    def _count_failure(self, decision: Decision) -> None:
        if decision.reason == "rate_limited":
            self.stats.rate_limited += 1
        elif decision.reason == "server_error":
            self.stats.server_errors += 1
        elif decision.reason in ("timeout", "connection"):
            self.stats.no_answer += 1
        # a definite answer (even a refusal) proves Voucherify is reachable
        self._consecutive_failures = self._consecutive_failures + 1 if decision.action is Action.RETRY else 0

    def _outage(self) -> bool:
        silent = anyio.current_time() - self._last_success
        if self._consecutive_failures >= _OUTAGE_CALLS and silent >= _OUTAGE_SECONDS:
            self.stopping.request(StopRun(
                f"Voucherify has not answered successfully for {format_duration(silent)} "
                f"({self._consecutive_failures} calls in a row failed): check the network and "
                "https://status.voucherify.io, then run the same command again",
                reason="unreachable",
            ))
            return True
        return False

    # ------------------------------------------------------------------ the journal's record
    async def _log_call(self, kind: str, member: Member | None, *, source_id: str | None = None) -> int:
        """Log the call in the journal — committed, with the others ready at this moment — before it is sent."""
        call = NewCall(self.run_id, kind, member.id if member else None, time.time(), source_id)
        call_id = await self.recorder.log_call(call)
        now = anyio.current_time()
        self.stats.calls[kind] += 1
        if self.stats.first_call is None:
            self.stats.first_call = now
        self.stats.last_call = now
        return call_id

    def _record(self, call_id: int, error: ApiError | TransportError | None) -> None:
        record = call_record(error)
        self.recorder.record_outcome(CallOutcome(call_id, record.outcome, record.status, record.request_id))


def _stop(decision: Decision) -> StopRun:
    return StopRun(decision.message, reason=decision.reason, resume_at=decision.not_before)


def _row_of(member: Member | None) -> str:
    """`` of the member at row N`` for a log line (identities stay out of logs), or nothing."""
    return f" of the member at row {member.seen_row}" if member is not None else ""


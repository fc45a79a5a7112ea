"""The :class:`Pusher`: the journal's waiting codes sent in batches of at most ``--clevertap-batch`` records, at
most ``--clevertap-concurrency`` requests in flight (halved by each 429, grown back by successes), each batch
retried with a capped, jittered backoff on transient failures, and each member's outcome written to the journal as
soon as CleverTap answers."""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import anyio

from ..clevertap import CleverTapAuthError, CleverTapClient, CleverTapRefused, CleverTapTransient
from ..journal import Journal
from ..pacing.retry import backoff
from .records import Item, profile_record

log = logging.getLogger("distributor")

DEFAULT_BATCH = 1000
DEFAULT_CONCURRENCY = 5
#: CleverTap answers 429 beyond 15 concurrent requests per account.
MAX_CONCURRENCY = 15
#: While codes arrive, what is waiting is pushed at least this often (seconds).
FLUSH_INTERVAL = 2.0
MAX_ATTEMPTS = 8
#: 429s one batch may meet before it is recorded as failed (they use up no attempt).
_MAX_RATE_LIMITED = 50
_BACKOFF_BASE = 0.5
_BACKOFF_CAP = 30.0
#: After a run was stopped (signal), the codes already published get this long to reach CleverTap.
_STOPPING_GRACE = 10.0


@dataclass
class PushStats:
    """Live counters of the push (shown by the progress display and the summary)."""

    pushed: int = 0
    failed: int = 0
    requests: int = 0
    records_sent: int = 0
    retries: int = 0
    rate_limited: int = 0
    server_errors: int = 0
    no_answer: int = 0

    def to_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


@dataclass
class Pusher:
    """Pushes the journal's waiting codes through ``client``.  One event loop, one journal connection."""

    journal: Journal
    client: CleverTapClient
    key: str
    property_name: str
    #: ``--expiry-property``: also push the voucher's expiration date, as a CleverTap date (``$D_<epoch>``)
    expiry_property: str | None = None
    batch_size: int = DEFAULT_BATCH
    concurrency: int = DEFAULT_CONCURRENCY
    max_attempts: int = MAX_ATTEMPTS
    rng: random.Random = field(default_factory=random.Random)
    stats: PushStats = field(default_factory=PushStats)
    #: Set when CleverTap refused the credentials mid-way: nothing more is sent.
    auth_error: CleverTapAuthError | None = None

    def __post_init__(self) -> None:
        self._busy: set[int] = set()  # in flight now, or refused for good by this process
        self._batches = anyio.Semaphore(2 * self.concurrency)  # batches under way (sending or backing off)
        # requests in flight: starts at `concurrency`, halved by each 429, grown back by one per run of successes
        self._requests = anyio.CapacityLimiter(self.concurrency)
        self._successes = 0
        self._calm_until = 0.0

    def record(self, item: Item) -> dict[str, Any]:
        return profile_record(
            item, key=self.key, property_name=self.property_name, expiry_property=self.expiry_property
        )

    async def push_waiting(self) -> None:
        """Push every code waiting now (one pass); returns when each batch has its outcome."""
        async with anyio.create_task_group() as group:
            after = 0
            while self.auth_error is None:
                rows = self.journal.unpushed(after_id=after, limit=self.batch_size * MAX_CONCURRENCY)
                if not rows:
                    break
                after = rows[-1][0]
                items = [Item(*row) for row in rows if row[0] not in self._busy]
                for start in range(0, len(items), self.batch_size):
                    batch = items[start : start + self.batch_size]
                    await self._batches.acquire()
                    if self.auth_error is not None:
                        self._batches.release()
                        break
                    self._busy.update(item.member_id for item in batch)
                    group.start_soon(self._send, batch)

    async def follow(self, publishing_done: anyio.Event, stopping: Callable[[], bool]) -> None:
        """While codes are being published, push what waits every ``FLUSH_INTERVAL`` s; then push the rest."""
        while not publishing_done.is_set() and self.auth_error is None:
            with anyio.move_on_after(FLUSH_INTERVAL):
                await publishing_done.wait()
            await self.push_waiting()
        with anyio.move_on_after(_STOPPING_GRACE if stopping() else float("inf")):
            await self.push_waiting()

    async def _send(self, batch: Sequence[Item]) -> None:
        try:
            await self._send_with_retries(list(batch))
        finally:
            self._batches.release()

    async def _send_with_retries(self, remaining: list[Item]) -> None:
        attempt = rate_limited = 0
        while remaining and self.auth_error is None:
            attempt += 1
            await self._wait_for_calm()
            try:
                async with self._requests:
                    self.stats.requests += 1
                    self.stats.records_sent += len(remaining)
                    outcome = await self.client.upload([self.record(item) for item in remaining])
                self._succeeded()
            except CleverTapAuthError as error:
                self.auth_error = self.auth_error or error
                self._release(remaining)
                return
            except CleverTapTransient as error:
                self._count(error)
                if error.status == 429:  # CleverTap's concurrency cap, not these records' fault: no attempt used up
                    attempt, rate_limited = attempt - 1, rate_limited + 1
                    self._slow_down()
                if attempt >= self.max_attempts or rate_limited > _MAX_RATE_LIMITED:
                    self._fail(
                        remaining,
                        error.status,
                        f"gave up after {attempt + rate_limited} attempts; last: {error.message}",
                        attempt,
                    )
                    return
                await self._back_off(
                    max(attempt, 1) if error.status != 429 else rate_limited, rate_limited=error.status == 429
                )
                continue
            except CleverTapRefused as error:
                self._fail(remaining, error.code or error.status, error.message, attempt)
                return
            pushed = [item for index, item in enumerate(remaining) if index not in outcome.failures]
            final = [
                (item, outcome.failures[i])
                for i, item in enumerate(remaining)
                if i in outcome.failures and not outcome.failures[i].transient
            ]
            again = [
                item for i, item in enumerate(remaining) if i in outcome.failures and outcome.failures[i].transient
            ]
            self._confirm(pushed, attempt)
            for item, why in final:
                self._fail([item], why.code, why.message, attempt)
            remaining = again
            if remaining:
                self.stats.server_errors += 1
                if attempt >= self.max_attempts:
                    why = outcome.failures[next(i for i, f in outcome.failures.items() if f.transient)]
                    self._fail(remaining, why.code, f"gave up after {attempt} attempts; last: {why.message}", attempt)
                    return
                await self._back_off(attempt, rate_limited=False)

    def _confirm(self, items: Sequence[Item], attempts: int) -> None:
        if items:
            self.journal.mark_pushed([(item.member_id, item.code) for item in items], attempts)
            self.stats.pushed += len(items)
            self._release(items)

    def _fail(self, items: Sequence[Item], code: int | None, message: str, attempts: int) -> None:
        """Final for this process: the items stay busy, so this run does not send them again."""
        self.journal.mark_push_failed([(item.member_id, item.code, code, message) for item in items], attempts)
        self.stats.failed += len(items)
        log.debug("CleverTap did not take %d codes: %s %s", len(items), code, message)

    def _release(self, items: Sequence[Item]) -> None:
        for item in items:
            self._busy.discard(item.member_id)

    def _count(self, error: CleverTapTransient) -> None:
        self.stats.retries += 1
        if error.status == 429:
            self.stats.rate_limited += 1
        elif error.status is None:
            self.stats.no_answer += 1
        else:
            self.stats.server_errors += 1

    def _slow_down(self) -> None:
        """A 429: halve the requests allowed in flight (at least one)."""
        self._requests.total_tokens = max(1, int(self._requests.total_tokens) // 2)
        self._successes = 0

    def _succeeded(self) -> None:
        """An answer: after as many answers in a row as are allowed in flight, allow one more (up to the setting)."""
        self._successes += 1
        allowed = int(self._requests.total_tokens)
        if allowed < self.concurrency and self._successes >= allowed:
            self._requests.total_tokens = allowed + 1
            self._successes = 0

    async def _back_off(self, attempt: int, *, rate_limited: bool) -> None:
        pause = backoff(attempt, base=_BACKOFF_BASE, cap=_BACKOFF_CAP, rng=self.rng)
        if rate_limited:  # too many concurrent requests: every sender waits, not just this one
            self._calm_until = max(self._calm_until, anyio.current_time() + pause)
        await anyio.sleep(pause)

    async def _wait_for_calm(self) -> None:
        wait = self._calm_until - anyio.current_time()
        if wait > 0:
            await anyio.sleep(wait)

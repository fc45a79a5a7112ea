"""Pushing the journal's codes to CleverTap profiles (Upload User Profiles API), for ``run --clevertap`` and
``distributor push``.

The journal says which codes CleverTap has confirmed (``pushes``); the :class:`Pusher` sends the others in
batches of at most ``--clevertap-batch`` records, at most ``--clevertap-concurrency`` requests in flight, and
records each member's outcome as soon as CleverTap answers:

* a record CleverTap processed → ``pushed`` (never sent again, unless ``push --all``);
* a transient failure (5xx, 429, no answer, a lost answer, a per-record server error) → sent again after a
  capped, jittered backoff; a 429 also holds back every other request for that time (no storm);
* a final refusal (e.g. 523: identity missing) → ``failed`` with CleverTap's code and message, listed in
  ``<name>.push-errors.csv``; each later run or ``distributor push`` tries it once more.

Uploads are upserts, so sending a record twice (after a kill -9, or a lost answer) is harmless.  Records carry
only the identifier (``identity`` or ``objectId``, as the CSV) and the code property: never Email, Phone or Name,
which would merge profiles.
"""

from __future__ import annotations

import logging
import random
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import anyio

from . import outputs
from .clevertap import (
    SANDBOX,
    CleverTapAuthError,
    CleverTapClient,
    CleverTapCredentials,
    CleverTapError,
    CleverTapRefused,
    CleverTapTransient,
    describe_target,
    resolve_url,
)
from .config import is_rehearsal
from .errors import (
    EXIT_MEMBER_FAILURES,
    EXIT_OK,
    EXIT_STOPPED,
    ConfigError,
    DistributorError,
    StopRun,
)
from .journal import Journal
from .layout import Layout
from .pacing.retry import backoff

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
#: Attempts of the credentials check before CleverTap counts as unreachable.
_CHECK_ATTEMPTS = 4


class PushSettings(Protocol):
    """Where and how the codes go to CleverTap: a run's :class:`~distributor.config.JobConfig`, or the
    :class:`~distributor.files.DistributionFiles` that ``distributor push`` reads (the same names)."""

    @property
    def layout(self) -> Layout: ...
    @property
    def clevertap(self) -> str | None: ...
    @property
    def clevertap_credentials(self) -> CleverTapCredentials | None: ...
    @property
    def clevertap_batch(self) -> int: ...
    @property
    def clevertap_concurrency(self) -> int: ...
    @property
    def timeout(self) -> float: ...
    @property
    def property_name(self) -> str: ...
    @property
    def expiry_property(self) -> str | None: ...
    @property
    def sandbox(self) -> Mapping[str, Any]: ...


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


@dataclass(frozen=True)
class Item:
    member_id: int
    identity: str
    code: str
    expires_at: float | None = None


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
        """The upload record: the identifier and the code property, nothing else."""
        data: dict[str, Any] = {self.property_name: item.code}
        if self.expiry_property is not None and item.expires_at is not None:  # no expiry: the property is left out
            data[self.expiry_property] = f"$D_{int(item.expires_at)}"
        return {self.key: item.identity, "type": "profile", "profileData": data}

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


def expiry_epoch(iso: str | None) -> float | None:
    """Voucherify's ``expiration_date`` (ISO 8601; UTC when it names no zone) as Unix time; ``None`` if absent or
    unreadable."""
    if not iso:
        return None
    try:
        moment = datetime.fromisoformat(iso)
    except ValueError:
        log.warning("voucher expiration_date %r is not an ISO date: left out", iso)
        return None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


# ---------------------------------------------------------------------- connecting
@asynccontextmanager
async def connect(config: PushSettings, *, transport: Any = None) -> AsyncIterator[CleverTapClient]:
    """A client for ``config.clevertap`` (the embedded stand-in for ``sandbox``), its credentials proven by one
    cheap call: raises :class:`StopRun` (exit 3) naming the region when CleverTap refuses them."""
    assert config.clevertap is not None
    with _target(config) as (url, credentials, embedded):
        async with CleverTapClient(
            url,
            credentials,
            timeout=config.timeout,
            max_connections=config.clevertap_concurrency + 2,
            transport=transport or embedded,
        ) as client:
            await _check_credentials(client, config.clevertap, credentials)
            yield client


@contextmanager
def _target(config: PushSettings) -> Iterator[tuple[str, CleverTapCredentials, Any]]:
    """The base URL, the credentials, and (``sandbox``) the in-process transport of the stand-in."""
    assert config.clevertap is not None
    if resolve_url(config.clevertap) != SANDBOX:
        if config.clevertap_credentials is None:
            raise ConfigError(
                "no CleverTap credentials: set CLEVERTAP_ACCOUNT_ID and CLEVERTAP_PASSCODE in the environment "
                "(Settings → Project in CleverTap)"
            )
        yield resolve_url(config.clevertap), config.clevertap_credentials, None
        return
    from .sandbox import embedded_clevertap

    with embedded_clevertap(config.sandbox.get("clevertap")) as target:
        yield target


async def _check_credentials(client: CleverTapClient, target: str, credentials: CleverTapCredentials) -> None:
    where = describe_target(target)
    for attempt in range(1, _CHECK_ATTEMPTS + 1):
        try:
            await client.check_credentials()
            return
        except CleverTapAuthError as error:
            raise StopRun(
                f"CleverTap refused account {credentials.account_id} with this passcode at {where} "
                f"(HTTP {error.status}): check CLEVERTAP_ACCOUNT_ID, CLEVERTAP_PASSCODE and --clevertap; "
                "nothing was published",
                reason="clevertap_unauthorized",
            ) from None
        except CleverTapTransient as error:
            if attempt == _CHECK_ATTEMPTS:
                raise StopRun(
                    f"CleverTap at {where} does not answer ({error.message}); nothing was published: "
                    "run the same command again later",
                    reason="clevertap_unreachable",
                ) from None
            await anyio.sleep(backoff(attempt, base=_BACKOFF_BASE, cap=5.0))
        except CleverTapError as error:
            raise StopRun(
                f"CleverTap at {where} refused the credentials check: {error.message}", reason="clevertap_refused"
            ) from None


def new_pusher(
    config: PushSettings, journal: Journal, client: CleverTapClient, *, property_name: str | None = None
) -> Pusher:
    return Pusher(
        journal,
        client,
        key=journal.meta("key") or "identity",
        property_name=property_name or journal.meta("property") or config.property_name,
        expiry_property=config.expiry_property,
        batch_size=config.clevertap_batch,
        concurrency=config.clevertap_concurrency,
    )


# ---------------------------------------------------------------------- the outcome
def write_push_errors(path: Path, journal: Journal, *, key: str) -> int:
    """``<key>,row,code,clevertap_code,message,attempts``: the codes CleverTap did not take (a report for people:
    spreadsheet-safe, as the other reports)."""
    return outputs.write_report(
        path,
        [key, "row", "code", "clevertap_code", "message", "attempts"],
        journal.push_failures(),
    )


@dataclass(frozen=True)
class PushOutcome:
    """Where the push stands after a run or ``distributor push``: the journal's counts and the verdict."""

    counts: dict[str, int]
    stats: PushStats
    errors_file: Path
    stopped: str | None  # why pushing stopped early (credentials refused mid-way), or None

    def verdict(self, exit_code: int, reason: str, message: str) -> tuple[int, str, str]:
        """The run's exit code, reason and message, worsened by what the push left undone."""
        if exit_code not in (EXIT_OK, EXIT_MEMBER_FAILURES):
            return exit_code, reason, message
        if self.stopped is not None or self.counts["waiting"]:
            why = self.stopped or f"{self.counts['waiting']} codes are not in CleverTap yet"
            return EXIT_STOPPED, "push_incomplete", f"{why}: run `distributor push` (or the same command) again"
        if self.counts["failed"] and exit_code == EXIT_OK:
            return (
                EXIT_MEMBER_FAILURES,
                "push_failures",
                f"{self.counts['failed']} codes could not be pushed to CleverTap: see {self.errors_file}",
            )
        return exit_code, reason, message

    def to_dict(self) -> dict[str, Any]:
        per_member = self.stats.records_sent / self.stats.pushed if self.stats.pushed else None
        return {
            **self.counts,
            "errors_file": str(self.errors_file),
            "stopped": self.stopped,
            "this_run": self.stats.to_dict(),
            "records_per_code": round(per_member, 4) if per_member is not None else None,
        }


def conclude(config: PushSettings, journal: Journal, pusher: Pusher) -> PushOutcome:
    """Write the push-errors CSV from the journal and sum up."""
    path = config.layout.push_errors
    write_push_errors(path, journal, key=pusher.key)
    stopped = None
    if pusher.auth_error is not None:
        stopped = f"CleverTap refused the credentials while pushing ({describe_target(config.clevertap or '')})"
    return PushOutcome(journal.push_counts(), pusher.stats, path, stopped)


# ---------------------------------------------------------------------- run --clevertap
class RunPush:
    """The push side of a run: the credentials proven first, then codes pushed while they are published."""

    def __init__(self, config: PushSettings, journal: Journal) -> None:
        self.config = config
        self.journal = journal
        self.pusher: Pusher | None = None

    @property
    def stats(self) -> PushStats | None:
        return self.pusher.stats if self.pusher is not None else None

    @asynccontextmanager
    async def alongside(self, stopping: Callable[[], bool]) -> AsyncIterator[None]:
        """Check the credentials (may raise :class:`StopRun`), then push in the background until the block ends,
        and push the rest after it."""
        async with connect(self.config) as client:
            self.pusher = new_pusher(self.config, self.journal, client)
            done = anyio.Event()
            failure: DistributorError | None = None
            async with anyio.create_task_group() as group:
                group.start_soon(self.pusher.follow, done, stopping)
                try:
                    yield
                except DistributorError as error:  # raised as itself below, not in an exception group
                    failure = error
                finally:
                    done.set()  # the codes published so far are still pushed
            if failure is not None:
                raise failure

    def conclude(self) -> PushOutcome | None:
        return conclude(self.config, self.journal, self.pusher) if self.pusher is not None else None


# ---------------------------------------------------------------------- distributor push
async def push_journal(
    config: PushSettings, *, resend_all: bool = False, property_name: str | None = None
) -> PushOutcome:
    """``distributor push``: push the journal's codes CleverTap does not hold yet (all of them with ``resend_all``).
    No Voucherify call.  Takes the journal's lock, as a run does."""
    if config.clevertap is None:
        raise ConfigError("push needs --clevertap: a region (eu1, in1, sg1, us1, aps3, mec1), a URL or 'sandbox'")
    if not config.layout.journal.exists():
        raise ConfigError(f"journal {config.layout.journal} does not exist: nothing to push")
    journal = Journal.open(config.layout.journal, lock=True)
    try:
        _check_origin(config, journal)
        async with connect(config) as client:
            if resend_all:
                journal.push_again()
            pusher = new_pusher(config, journal, client, property_name=property_name)
            await pusher.push_waiting()
            with outputs.files_lock(config.layout.output):  # one writer of the files beside the output at a time
                return conclude(config, journal, pusher)
    finally:
        journal.close()


def _check_origin(config: PushSettings, journal: Journal) -> None:
    """The codes must be real where they go: a journal made against a stand-in Voucherify pushes only to a
    stand-in CleverTap.  (push makes no Voucherify call: which project the codes belong to is the journal's.)"""
    host = journal.meta("api_host")
    if host is not None and is_rehearsal(host) and not is_rehearsal(resolve_url(str(config.clevertap))):
        raise ConfigError(
            f"journal {config.layout.journal} was made against a stand-in Voucherify ({host}): its codes do not exist "
            f"and must never reach real CleverTap profiles ({config.clevertap}); push it to --clevertap sandbox"
        )


def run_push(config: PushSettings, **options: Any) -> PushOutcome:
    return anyio.run(lambda: push_journal(config, **options), backend="asyncio")

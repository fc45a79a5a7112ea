"""One distribution run: segment → journal → one publication per member → CleverTap files.

:class:`Distribution` is the library entry point (``cli.py`` is a thin skin over it)::

    config = JobConfig.load(Path("jobs/demo.toml"))
    result = anyio.run(Distribution(config).run)
    print(result.exit_code, result.stats.published)

The order of a run, and why:

1. open the segment and the journal, take the journal's lock, check the journal belongs to this distribution,
   load every valid row into the journal — all before any API call, so unusable input is refused (exit 2) without
   spending quota;
2. one ``GET /v1/campaigns/{id}`` pre-flight: bad keys, an unknown campaign or a spent quota stop the run after a
   single call; it also tells the campaign's id (the default distribution name) and whether it is join-once;
3. members without a code are dispatched in segment order, each call waiting for its turn at the throttle, as many
   in flight as the latency needs; every call is logged in the journal before it is sent and every code saved as
   soon as it arrives;
4. the files are rewritten from the journal, even when the run stops early.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import signal
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol

import anyio
import httpx

from . import outputs
from ._version import __version__
from .concurrency import InFlightTarget
from .config import Credentials, JobConfig, publication_source_id, refuse_stand_in_codes_for_real_profiles
from .export import Exported, export_files
from .errors import (
    EXIT_MEMBER_FAILURES,
    EXIT_OK,
    EXIT_STOPPED,
    ConfigError,
    DistributorError,
    JournalError,
    StopRun,
    StorageError,
)
from .journal import DONE, Journal, Member
from .retry import Action, Decision, backoff, decide
from .loading import load_segment
from .paths import check_destinations
from .segment import Segment, open_segment
from .throttle import Throttle
from .units import format_duration
from .push import PushOutcome, PushStats, RunPush, expiry_epoch
from .voucherify import ApiError, Campaign, Publication, RateLimitHeaders, TransportError, VoucherifyClient

log = logging.getLogger("distributor")

#: The most calls kept in flight when the concurrency adapts (the HTTP pool holds a few more connections).
MAX_IN_FLIGHT = 128
#: Seconds in-flight calls may take to finish after a stop was asked for (signal or doomed condition).
STOP_GRACE = 5.0
#: No success for this long, with at least ``_OUTAGE_CALLS`` failed calls in a row: Voucherify is unreachable.
_OUTAGE_SECONDS = 60.0
_OUTAGE_CALLS = 20
_LOAD_BATCH = 20_000
_RETRY = object()
#: Backoff between attempts of one member: full jitter over [0, min(cap, base · 2^(attempt-1))] seconds.
_BACKOFF_BASE = 0.25
_BACKOFF_CAP = 30.0
_WORK_BATCH = 500


class Reporter(Protocol):
    """Shows progress; ``update`` is called every ``interval`` seconds with the live stats."""

    interval: float

    def start(self, stats: "RunStats") -> None: ...
    def update(self, stats: "RunStats") -> None: ...
    def finish(self, stats: "RunStats") -> None: ...


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


@dataclass(frozen=True)
class RunResult:
    exit_code: int
    reason: str
    message: str
    stats: RunStats
    summary: dict[str, Any]
    files: dict[str, Path]


class Distribution:
    """Runs a :class:`JobConfig`.  ``handle_signals``: stop cleanly on SIGINT/SIGTERM (main thread only)."""

    def __init__(
        self,
        config: JobConfig,
        *,
        reporter: Reporter | None = None,
        handle_signals: bool = False,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.config = config
        self.reporter = reporter
        self.handle_signals = handle_signals
        self._transport = transport
        self.stats = RunStats(budget_per_second=config.budget.per_second)
        self.sandbox: Any = None  # the embedded sandbox's state, when api_url is "sandbox"
        self._stopping = anyio.Event()
        self._stop: StopRun | None = None
        self._waiting: set[anyio.CancelScope] = set()
        self._work_scope: anyio.CancelScope | None = None
        self._consecutive_failures = 0
        self._last_success = 0.0
        #: members whose latest call failed transiently → (first, latest failure), loop time: tells a member's
        #: own trouble from an outage
        self._failing: dict[int, tuple[float, float]] = {}
        self._campaign_ref = config.campaign  # the campaign's id once known
        #: what a publication's voucher must name to be this campaign's (``camp_…`` id, name), when known
        self._campaign_id: str | None = None
        self._campaign_name: str | None = None
        #: the campaign part of new publication keys (pinned by the journal's first run)
        self._key_campaign = config.campaign
        self._distribution = ""
        self._join_once = False
        #: deliver_to=leavers: the run whose segment was the watch list when this run read its own (0: none)
        self._watch_baseline = 0
        self._limit_reached = False
        self._allowed_logged = 0  # -v: the throttle's allowance last logged
        self.push: RunPush | None = None  # h7-clevertap: the CleverTap side of the run (--clevertap)
        self._push_outcome: PushOutcome | None = None

    # ================================================================== the run
    async def run(self) -> RunResult:
        config = self.config
        check_destinations(config)
        refuse_stand_in_codes_for_real_profiles(config)
        segment = open_segment(config.segment, config.id_column)
        log.info("segment: %s", segment.describe())
        # locked before SQLite opens it: a second run through another name never touches the file
        journal = Journal.open(config.journal_path, lock=True)
        run_id = 0
        try:
            self._check_journal(journal, segment)
            run_id = journal.start_run(segment.name)  # what was read: every part, globs and folders expanded
            self._begin_files(journal, run_id)
            await self._run_watched(journal, run_id, segment)
            result = self._finish_or_storage_error(journal, run_id, segment)
        except DistributorError as error:
            if run_id:
                _record_end(journal, run_id, error)
                self._write_refused_summary(journal, run_id, error, _end_reason(error))
            raise
        finally:
            journal.close()
        return result

    def _finish_or_storage_error(self, journal: Journal, run_id: int, segment: Segment) -> RunResult:
        """:meth:`_finish`, with a file that cannot be written (disk full, read-only folder) as a resumable stop."""
        try:
            return self._finish(journal, run_id, segment)
        except OSError as error:
            raise StorageError(
                f"cannot write the files beside {self.config.output}: {error.strerror or error}; every code is safe "
                f"in the journal {journal.path}: free space (or make the folder writable), then run the same "
                "command again to resume"
            ) from None

    async def _run_watched(self, journal: Journal, run_id: int, segment: Segment) -> None:
        """Load and publish with a signal watcher alongside, from the first row read to the last call."""

        async def load_and_publish() -> None:
            # in a worker thread, so that a signal is handled while a huge export is being read
            await anyio.to_thread.run_sync(self._load, journal, run_id, segment)
            if self._stopping.is_set():
                return
            async with self._pushing(journal):  # h7-clevertap: CleverTap credentials proven first, codes pushed meanwhile
                if self.stats.to_publish and not self._stopping.is_set():
                    async with self._client() as client:
                        await self._distribute(journal, run_id, client)

        await _alongside(load_and_publish, *([self._watch_signals] if self.handle_signals else []))

    # ------------------------------------------------------------------ h7-clevertap: pushing to CleverTap
    @asynccontextmanager
    async def _pushing(self, journal: Journal) -> AsyncIterator[None]:
        """With ``--clevertap``: prove CleverTap's credentials (a 401 stops the run before any Voucherify call),
        then push the codes in the background while the block publishes them, and the rest after it."""
        if self.config.clevertap is None:
            yield
            return
        self.push = RunPush(self.config, journal)
        async with self.push.alongside(self._stopping.is_set):
            self.stats.clevertap = self.push.stats
            yield

    def _push_verdict(self, exit_code: int, reason: str, message: str, files: dict[str, Path]) -> tuple[int, str, str]:
        """The push's part of the verdict; writes ``<name>.push-errors.csv`` and keeps the outcome for the summary."""
        self._push_outcome = self.push.conclude() if self.push is not None else None
        if self._push_outcome is None:
            return exit_code, reason, message
        files["push_errors"] = self._push_outcome.errors_file
        return self._push_outcome.verdict(exit_code, reason, message)

    # ------------------------------------------------------------------ 1. journal and segment
    def _check_journal(self, journal: Journal, segment: Segment) -> None:
        config = self.config
        journal.check_belongs(
            key=segment.key, distribution=config.distribution, campaign=config.campaign, segment=segment.name
        )
        journal.check_delivery(config.deliver_to)
        note = journal.bind_project(host=config.api_host, project=config.project_digest())
        if note:
            log.warning("%s", note)
        journal.set_meta(key=segment.key, property=config.property_name, deliver_to=config.deliver_to)

    def _load(self, journal: Journal, run_id: int, segment: Segment) -> None:
        """Read the whole segment into the journal: valid members, skipped rows, duplicates."""
        loaded = load_segment(journal, run_id, segment, batch_size=_LOAD_BATCH, interrupted=self._stopping.is_set)
        if loaded is None:
            return  # interrupted while reading: nothing was published, _finish says so
        self.stats.skipped = loaded.skipped
        self.stats.members = loaded.members
        if self.config.delivers_to_leavers:
            self._watch_baseline = journal.watch_baseline()
            self.stats.leavers_found = journal.mark_leavers(run_id)
        counts = self._recipients(journal, run_id)
        self.stats.held_before = journal.held_before(run_id)
        pending = counts["pending"] + counts["sending"] + (counts["failed"] if self.config.retry_failed else 0)
        self.stats.to_publish = pending if self.config.limit is None else min(pending, self.config.limit)
        if self.config.delivers_to_leavers:
            log.info(
                "members: %d valid (%d skipped), watched; %d left since the previous complete run; %d leavers to "
                "publish to", self.stats.members, sum(self.stats.skipped.values()), self.stats.leavers_found, pending,
            )
            return
        log.info(
            "members: %d valid (%d skipped); %d already hold a code, %d to publish%s",
            self.stats.members,
            sum(self.stats.skipped.values()),
            counts["done"],
            pending,
            "" if self.config.retry_failed or not counts["failed"] else f", {counts['failed']} failed before (--retry-failed to try them again)",
        )

    def _recipients(self, journal: Journal, run_id: int) -> dict[str, int]:
        """Who this run serves, by state: the members of its segment, or (deliver_to=leavers) the leavers owed a
        code."""
        return journal.leaver_counts() if self.config.delivers_to_leavers else journal.state_counts(run_id)

    # ------------------------------------------------------------------ 2. the API
    @asynccontextmanager
    async def _client(self) -> AsyncIterator[VoucherifyClient]:
        config = self.config
        ceiling = config.concurrency or MAX_IN_FLIGHT
        if config.uses_sandbox:
            from .sandbox.embedded import embedded_sandbox

            with embedded_sandbox(config) as (url, credentials, sandbox):
                self.sandbox = sandbox
                async with self._open_client(url, credentials, ceiling) as client:
                    yield client
        else:
            assert config.credentials is not None
            async with self._open_client(config.api_url, config.credentials, ceiling) as client:
                yield client

    def _open_client(self, url: str, credentials: Credentials, ceiling: int) -> VoucherifyClient:
        return VoucherifyClient(
            url,
            credentials,
            timeout=self.config.timeout,
            max_connections=ceiling + 4,
            observer=self._observe,
            transport=self._transport,
        )

    def _observe(self, rate: RateLimitHeaders, status: int, sent_at: float, latency: float) -> None:
        paused_until = self._throttle.paused_until
        self._throttle.observe(rate, status, sent_at)
        self._in_flight.observe(latency)
        if self._throttle.paused_until > paused_until:
            seconds = max(0.0, self._throttle.paused_until - anyio.current_time())
            log.debug("pause: HTTP %d asks to wait; every call waits %s", status, format_duration(seconds),
                      extra={"event": "pause", "status": status, "seconds": round(seconds, 3)})
        if status == 429:
            self._note_throttle("a 429 answer")
        elif self._throttle.allowed < self._allowed_logged:
            self._note_throttle(f"the server counts calls of other clients: X-Rate-Limit-Remaining {rate.remaining}")
        else:
            self._note_throttle()

    def _note_throttle(self, why: str | None = None) -> None:
        """-v: log a change of the pace once, with its reason."""
        allowed = self._throttle.allowed
        if allowed != self._allowed_logged:
            why = why or ("recovering after a cut" if allowed > self._allowed_logged else "slowing down")
            log.debug("throttle: %d → %d calls per %s window (%s)", self._allowed_logged, allowed,
                      format_duration(self._throttle.window), why,
                      extra={"event": "throttle", "allowed": allowed, "window_seconds": self._throttle.window})
            self._allowed_logged = allowed

    # ------------------------------------------------------------------ 3. publishing
    async def _distribute(self, journal: Journal, run_id: int, client: VoucherifyClient) -> None:
        config = self.config
        self._last_success = anyio.current_time()
        # The server still counts the calls a previous (perhaps killed) run made in the current window.
        self._throttle = Throttle(
            config.budget,
            history=journal.calls_since(time.time() - 2 * config.budget.period),
            max_pause=config.max_pause,
        )
        self._allowed_logged = self._throttle.allowed
        self._in_flight = InFlightTarget(config.budget.per_second, fixed=config.concurrency, ceiling=MAX_IN_FLIGHT)
        self._journal, self._run_id, self._api = journal, run_id, client

        async def preflight_and_publish() -> None:
            await self._preflight()
            if not self._stopping.is_set():
                await self._publish_all()

        # Everything that calls Voucherify runs in this scope: a stop gives it a deadline (STOP_GRACE), a second
        # signal cancels it at once; members whose call was cut stay `sending` and are re-sent on resume.
        with anyio.CancelScope() as self._work_scope:
            await _alongside(preflight_and_publish, *([self._report] if self.reporter is not None else []))

    async def _preflight(self) -> None:
        """Know the campaign before publishing.

        A new journal costs one ``GET /v1/campaigns/{id}``: bad keys or an unknown campaign stop the run after that
        single call, and it tells the campaign's id and whether it is join-once.  A resumed journal already knows
        both; its first publication, sent alone, would reveal bad keys just as cheaply.
        """
        config, journal = self.config, self._journal
        known_id = journal.meta("campaign_id") or None
        known_join_once = journal.meta("join_once")
        if known_id and known_join_once in ("0", "1"):
            self._campaign_ref, self._join_once = known_id, known_join_once == "1"
        else:
            campaign = await self._call_with_retries("campaign", None, lambda: self._api.get_campaign(config.campaign))
            if self._stopping.is_set():
                return
            if isinstance(campaign, Campaign):
                if known_id and known_id != campaign.id:
                    raise JournalError(
                        f"journal {journal.path} belongs to campaign {known_id}, but {config.campaign!r} is {campaign.id}"
                    )
                self._campaign_ref, self._join_once, known_id = campaign.id, campaign.join_once, campaign.id
                journal.set_meta(
                    join_once="1" if campaign.join_once else "0", campaign_type=campaign.type or "",
                    campaign_name=campaign.name,
                )
                self._warn_about(campaign)
        # By default the distribution is the campaign's id, so one customer gets one code per campaign even if
        # this journal is lost; the journal pins whatever name its first run used.
        self._distribution = config.distribution or journal.meta("distribution") or known_id or config.campaign
        # New keys bind the campaign: its camp_… id when known, else the configured campaign (pre-flight
        # forbidden).  The journal's first run pins the choice, so that a later run that can resolve the id does
        # not give a new key to members not yet called; members already called keep their own key anyway.
        self._key_campaign = journal.meta("key_campaign") or known_id or config.campaign
        journal.set_meta(
            distribution=self._distribution, campaign=config.campaign, campaign_id=known_id or "",
            key_campaign=self._key_campaign,
        )
        self._expect_campaign(known_id, journal.meta("campaign_name") or None)
        log.info(
            "distribution %r of campaign %s%s", self._distribution, config.campaign,
            " (join-once)" if self._join_once else "",
        )

    def _expect_campaign(self, campaign_id: str | None, name: str | None) -> None:
        """What a publication's voucher must name to be this campaign's.  Without the pre-flight, the configured
        campaign is its id if it looks like one (``camp_…``), else its name."""
        configured = self.config.campaign
        looks_like_id = configured.startswith("camp_")
        self._campaign_id = campaign_id or (configured if looks_like_id else None)
        self._campaign_name = name or (None if looks_like_id else configured)

    def _warn_about(self, campaign: Campaign) -> None:
        if campaign.active is False:
            log.warning("campaign %s is not active: customers may not be able to redeem the codes", campaign.name)
        if campaign.expiration_date and campaign.expiration_date < datetime.now(timezone.utc).isoformat():
            log.warning("campaign %s expired on %s", campaign.name, campaign.expiration_date)
        if campaign.type == "STATIC" and campaign.vouchers_count is not None and campaign.vouchers_count < self.stats.to_publish:
            log.warning(
                "campaign %s holds %d codes in all but %d members still need one: it will run out",
                campaign.name, campaign.vouchers_count, self.stats.to_publish,
            )

    async def _publish_all(self) -> None:
        """Dispatch the members without a code in segment order, as many in flight as the latency needs."""
        slots = anyio.CapacityLimiter(1)
        room = self.config.limit  # --limit: members this run may still dispatch (None: all)
        async with anyio.create_task_group() as work:
            after = 0
            while not self._stopping.is_set():
                if room is not None and room <= 0:
                    self._limit_reached = True
                    break
                size = _WORK_BATCH if room is None else min(room, _WORK_BATCH)
                if self.config.delivers_to_leavers:
                    batch = self._journal.leaver_work(after_id=after, limit=size, retry_failed=self.config.retry_failed)
                else:
                    batch = self._journal.work(
                        self._run_id, after_seq=after, limit=size, retry_failed=self.config.retry_failed
                    )
                if not batch:
                    break
                if room is not None:
                    room -= len(batch)
                for member in batch:
                    self._in_flight.rate_per_second = self._throttle.allowed / self._throttle.window
                    slots.total_tokens = self._in_flight.target
                    await slots.acquire_on_behalf_of(member)
                    if self._stopping.is_set():
                        slots.release_on_behalf_of(member)
                        break
                    work.start_soon(self._serve, member, slots)
                after = batch[-1].id if self.config.delivers_to_leavers else batch[-1].seen_seq

    async def _serve(self, member: Member, slots: anyio.CapacityLimiter) -> None:
        """Get this member's code, retrying transient failures with the same ``source_id``."""
        self.stats.in_flight += 1
        # a member once called keeps the key of its first call: a new key could get it a second code
        source_id = member.source_id or publication_source_id(self._distribution, self._key_campaign, member.identity)
        try:
            outcome = await self._call_with_retries(
                "publish",
                member,
                lambda: self._api.publish(
                    campaign=self._campaign_ref,
                    customer_source_id=member.identity,
                    source_id=source_id,
                    join_once=self._join_once,
                    metadata={"distribution": self._distribution},
                ),
                source_id=source_id,
            )
            if isinstance(outcome, Publication):
                self._save_code(member, outcome)
        except StorageError as error:
            # the journal cannot be written: stop; the member stays `sending`, re-sent with the same source_id
            self._request_stop(StopRun(str(error), reason="storage_failure"))
        finally:
            self.stats.in_flight -= 1
            slots.release_on_behalf_of(member)

    def _save_code(self, member: Member, publication: Publication) -> None:
        """Save the code — fresh, replayed or looked up — only if it is this customer's code of this campaign."""
        mismatch = self._mismatch(member, publication)
        if mismatch is not None:
            key, message = mismatch
            # Our source_id came back holding another customer's or another campaign's publication: never hand
            # that code out.
            log.warning("member at row %d: %s", member.seen_row, message)
            self._journal.fail(member.id, status=None, key=key, message=message, request_id=None)
            self.stats.failed += 1
            return
        self._learn_campaign_name(publication)
        self._journal.complete(
            member.id, self._run_id, code=publication.code, publication_id=publication.id,
            expires_at=expiry_epoch(publication.expiration_date),  # h7-clevertap: --expiry-property
        )
        self.stats.published += 1

    def _mismatch(self, member: Member, publication: Publication) -> tuple[str, str] | None:
        """``(error key, message)`` when ``publication`` is not ``member``'s publication of this campaign."""
        where = f"publication {publication.id or '(no id)'} under this member's source_id"
        if publication.customer_source_id != member.identity:
            holder = "no customer" if publication.customer_source_id is None else "another customer"
            return "customer_mismatch", f"{where} belongs to {holder}: its code was not saved"
        if publication.campaign_id is None and publication.campaign is None:
            return "campaign_mismatch", f"{where} names no campaign: its code was not saved"
        if publication.campaign_id is not None and self._campaign_id is not None:
            same = publication.campaign_id == self._campaign_id
        elif publication.campaign is not None and self._campaign_name is not None:
            same = publication.campaign == self._campaign_name
        else:
            same = True  # only what we do not know is named; the key itself binds the campaign
        if same:
            return None
        found = publication.campaign or publication.campaign_id
        expected = self._campaign_name or self._campaign_id
        return "campaign_mismatch", f"{where} holds a code of campaign {found!r}, not {expected!r}: it was not saved"

    def _learn_campaign_name(self, publication: Publication) -> None:
        """Without the pre-flight, a fresh answer tells the campaign's name, which look-ups' answers carry alone."""
        if self._campaign_name is None and publication.campaign and publication.campaign_id == self._campaign_id:
            self._campaign_name = publication.campaign
            self._journal.set_meta(campaign_name=publication.campaign)

    async def _call_with_retries(
        self,
        kind: str,
        member: Member | None,
        call: Callable[[], Any],
        *,
        source_id: str | None = None,
    ) -> Any:
        """Make one logical call: wait for the throttle, log it, send it, and apply the retry policy.

        Returns the call's result, or ``None`` when the member failed or the run is stopping.
        """
        attempt = 0
        while True:
            if not await self._wait_for_turn():
                return None
            attempt += 1
            call_id = self._log_call(kind, member, source_id=source_id)
            served_before = self._last_success  # the latest success when this attempt was sent
            try:
                result = await call()
            except (ApiError, TransportError) as error:
                self._journal.record_call_outcome(call_id, **call_outcome(error))
                decision = decide(error, campaign=self.config.campaign, max_pause=self.config.max_pause)
                self._count_failure(decision)
                if decision.reason == "rate_limited":
                    attempt -= 1  # the server's limit, not this member's fault: it does not use up attempts
                if member is not None and decision.action is not Action.FAIL_MEMBER:
                    now = anyio.current_time()
                    self._failing[member.id] = (self._failing.get(member.id, (now, now))[0], now)
                outcome = await self._after_failure(kind, member, error, decision, attempt, source_id, served_before)
                if outcome is not _RETRY and member is not None:
                    self._failing.pop(member.id, None)
                if outcome is _RETRY:
                    continue
                return outcome
            self._journal.record_call_outcome(call_id, **call_outcome(None))
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
        source_id: str | None,
        served_before: float = 0.0,
    ) -> Any:
        """Apply ``decision``: returns ``_RETRY``, a recovered result, or ``None`` (member failed, left for the next
        run, or stopping).

        Only a definite refusal fails a member.  Transient failures (no answer, 5xx, 429, a look-up that finds
        nothing) are retried with backoff for as long as Voucherify fails for everyone — the outage rule stops the
        run resumably after a minute — and, once ``max_attempts`` are spent while the others are served, the
        member is left ``sending`` for the next run, which re-sends it under the same key.  The pre-flight call
        gives up after ``max_attempts`` only once nothing succeeded for a minute.
        """
        if decision.action is Action.STOP:
            if kind == "campaign" and decision.reason == "forbidden":
                log.warning("these keys may not read campaigns (403): skipping the pre-flight check")
                return None
            self._request_stop(StopRun(decision.message, reason=decision.reason, resume_at=decision.not_before))
            return None
        if decision.action is Action.LOOKUP and member is not None and source_id is not None:
            found = await self._look_up(member, source_id)
            if found is not None:
                return found
        elif decision.action is Action.FAIL_MEMBER:
            if member is None:
                self._request_stop(StopRun(f"Voucherify refused the {kind} call: {error}", reason="refused"))
            else:
                self._fail_member(member, error, attempt)
            return None
        if attempt >= self.config.max_attempts:
            if member is not None and (decision.action is Action.LOOKUP or self._failing_alone(member, served_before)):
                # a key Voucherify says is taken but whose publication it cannot show, or others are served
                # meanwhile: this member's trouble persists; the next run tries again
                self._defer_member(member, error, attempt)
                return None
            if member is None and anyio.current_time() - self._last_success >= _OUTAGE_SECONDS:
                self._request_stop(StopRun(
                    f"no answer to the {kind} call after {attempt} attempts ({error}): run the same command "
                    "again later", reason="unreachable",
                ))
                return None
        if self._outage():
            return None
        self.stats.retries += 1
        delay = 0.0 if decision.reason == "rate_limited" else backoff(min(attempt, 32), base=_BACKOFF_BASE, cap=_BACKOFF_CAP)
        fields = {"event": "retry", "kind": kind, "row": member.seen_row if member else None,
                  "reason": decision.reason, "attempt": attempt, "delay_seconds": round(delay, 3)}
        if decision.reason == "rate_limited":
            log.debug("retry: %s call%s answered 429 (%s); not counted as an attempt, next after the throttle's pause",
                      kind, _row_of(member), error, extra=fields)
        else:
            log.debug("retry: %s call%s failed (%s: %s); attempt %d of %d, next in %s", kind, _row_of(member),
                      decision.reason, error, attempt, self.config.max_attempts, format_duration(delay), extra=fields)
        if delay:  # a 429 already paused the throttle until the server's hint
            await self._sleep_unless_stopping(delay)
        return _RETRY

    async def _look_up(self, member: Member, source_id: str) -> Publication | None:
        """``duplicate_source_id``: the publication exists; fetch its code instead of publishing again."""
        for attempt in range(1, self.config.max_attempts + 1):
            if not await self._wait_for_turn():
                return None
            call_id = self._log_call("lookup", member, source_id=source_id)
            log.debug("look-up%s: the publication under source_id %s exists (duplicate_source_id or a lost answer); "
                      "fetching its code, attempt %d", _row_of(member), source_id, attempt,
                      extra={"event": "lookup", "row": member.seen_row, "source_id": source_id, "attempt": attempt})
            try:
                found = await self._api.find_publication(source_id)
            except (ApiError, TransportError) as error:
                self._journal.record_call_outcome(call_id, **call_outcome(error))
                decision = decide(error, campaign=self.config.campaign, max_pause=self.config.max_pause)
                self._count_failure(decision)
                if decision.action is Action.STOP:
                    self._request_stop(StopRun(decision.message, reason=decision.reason, resume_at=decision.not_before))
                    return None
                if decision.action is not Action.RETRY:
                    return None
                await self._sleep_unless_stopping(backoff(attempt, base=_BACKOFF_BASE, cap=_BACKOFF_CAP))
                continue
            self._journal.record_call_outcome(call_id, **call_outcome(None))
            if found is not None:
                self.stats.recovered_by_lookup += 1
            return found
        return None

    def _fail_member(self, member: Member, error: Exception, attempts: int) -> None:
        """A definite refusal by Voucherify: the member is ``failed`` (``--retry-failed`` tries it again)."""
        if isinstance(error, ApiError):
            status, key, message, request_id = error.status, error.key, error.description, error.request_id
        else:
            status, key, message, request_id = None, getattr(error, "kind", "no_answer"), str(error), None
        self._journal.fail(member.id, status=status, key=key, message=message, request_id=request_id)
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
            self._request_stop(StopRun(
                f"Voucherify has not answered successfully for {format_duration(silent)} "
                f"({self._consecutive_failures} calls in a row failed): check the network and "
                "https://status.voucherify.io, then run the same command again",
                reason="unreachable",
            ))
            return True
        return False

    def _log_call(self, kind: str, member: Member | None, *, source_id: str | None = None) -> int:
        now = anyio.current_time()
        call_id = self._journal.log_call(self._run_id, kind, member.id if member else None, source_id=source_id)
        self.stats.calls[kind] += 1
        if self.stats.first_call is None:
            self.stats.first_call = now
        self.stats.last_call = now
        return call_id

    # ------------------------------------------------------------------ waiting and stopping
    async def _wait_for_turn(self) -> bool:
        """Wait for the throttle; ``False`` when the run is stopping (the wait is abandoned)."""
        if self._stopping.is_set():
            return False
        with anyio.CancelScope() as scope:
            self._waiting.add(scope)
            try:
                await self._throttle.acquire()
            finally:
                self._waiting.discard(scope)
        self._note_throttle()
        return not scope.cancelled_caught and not self._stopping.is_set()

    async def _sleep_unless_stopping(self, seconds: float) -> None:
        with anyio.move_on_after(seconds):
            await self._stopping.wait()

    def _request_stop(self, stop: StopRun) -> None:
        """Start no more calls; give those in flight ``STOP_GRACE`` seconds to finish and be saved."""
        if self._stop is None:
            self._stop = stop
            log.warning("stopping: %s", stop)
        self._stopping.set()
        for scope in list(self._waiting):
            scope.cancel()
        if self._work_scope is not None:
            self._work_scope.deadline = min(self._work_scope.deadline, anyio.current_time() + STOP_GRACE)

    async def _watch_signals(self) -> None:
        # SIGHUP (a closed terminal, an ssh session dropped) stops like SIGTERM: files rewritten, end recorded
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM, signal.SIGHUP) as signals:
            async for received in signals:
                name = signal.Signals(received).name
                if not self._stopping.is_set() or self._stop is None or self._stop.reason != "interrupted":
                    self._request_stop(StopRun(
                        f"stopped by {name}: the codes published so far are saved; run the same command again "
                        "to resume", reason="interrupted",
                    ))
                    log.warning("%s: finishing the calls in flight (at most %.0fs); send it again to stop now", name, STOP_GRACE)
                else:
                    log.warning("%s again: stopping now", name)
                    if self._work_scope is not None:
                        self._work_scope.cancel()

    async def _report(self) -> None:
        assert self.reporter is not None
        self.reporter.start(self.stats)
        try:
            while True:
                await anyio.sleep(self.reporter.interval)
                self.stats.paused_for = max(0.0, self._throttle.paused_until - anyio.current_time())
                self.reporter.update(self.stats)
        finally:
            self.reporter.finish(self.stats)

    # ------------------------------------------------------------------ 4. files and summary
    def _finish(self, journal: Journal, run_id: int, segment: Segment) -> RunResult:
        config, stats = self.config, self.stats
        counts = self._recipients(journal, run_id)
        unserved = counts["pending"] + counts["sending"] + (counts["failed"] if config.retry_failed else 0)
        if self._stop is not None:
            exit_code, reason, message = EXIT_STOPPED, self._stop.reason, str(self._stop)
        elif unserved and self._limit_reached:
            exit_code, reason = EXIT_STOPPED, "limit"
            message = (
                f"the first {config.limit} members were served, as --limit asked; {unserved} still have no code: "
                "run the same command without --limit to serve them"
            )
        elif unserved:
            exit_code, reason = EXIT_STOPPED, "incomplete"
            message = f"{unserved} members still have no code; run the same command again to finish"
            if stats.deferred:
                message = (
                    f"{unserved} members still have no code ({stats.deferred} got only transient failures, last: "
                    f"{stats.last_transient}); run the same command again to serve them"
                )
        elif counts["failed"]:
            exit_code, reason = EXIT_MEMBER_FAILURES, "member_failures"
            message = f"{counts['failed']} members could not get a code: see {config.errors_path}"
        else:
            exit_code, reason, message = EXIT_OK, "completed", "every valid member holds a code"
        if config.delivers_to_leavers and exit_code in (EXIT_OK, EXIT_MEMBER_FAILURES):
            message = self._leavers_message(journal, exit_code, message)
            journal.record_watch_list(run_id)  # complete: today's segment is what the next run compares with

        # One writer at a time (an export may be going): the snapshot is read and every file written under the lock.
        with outputs.files_lock(config.output):
            # the skipped and left reports describe the latest segment read whole (this run's, unless interrupted)
            loaded = journal.latest_run(loaded=True)
            if self._stop is not None and not journal.state_counts()[DONE]:
                # stopped before any code was ever published: no empty CSV that looks like a hand-off
                files: dict[str, Path] = {"summary": config.summary_path, "journal": journal.path}
                exported = Exported(files={}, codes=0, errors=0, skipped=0, delta_run=run_id)
            else:
                exported = export_files(
                    config, journal, run_id=loaded.id if loaded else run_id, delta_run=run_id,
                    key=segment.key,
                )
                files = {**exported.files, "summary": config.summary_path, "journal": journal.path}
            exit_code, reason, message = self._push_verdict(exit_code, reason, message, files)  # h7-clevertap
            summary = self._summary(journal, run_id, counts, exit_code, reason, message, files, exported)
            outputs.write_summary(config.summary_path, summary)
        journal.finish_run(run_id, exit_code=exit_code, reason=reason, summary=json.dumps(summary, default=str))
        return RunResult(exit_code, reason, message, stats, summary, files)

    def _leavers_message(self, journal: Journal, exit_code: int, message: str) -> str:
        if not self._watch_baseline:
            return (
                f"baseline recorded: {self.stats.members} members are watched and nothing was published; the next "
                "run publishes to those who have left the segment"
            )
        if exit_code == EXIT_OK:
            return f"every leaver holds a code ({self.stats.leavers_found} left the segment since the previous complete run)"
        return message
    def _begin_files(self, journal: Journal, run_id: int) -> None:
        """Before anything else of a run: remove what killed writes left, and replace the previous run's summary
        by one that says this run has begun, so that a run killed from here on (kill -9, a reboot) never leaves a
        summary that claims the previous outcome."""
        config = self.config
        try:
            with outputs.files_lock(config.output):
                outputs.remove_stale_temporaries(config.output)
                outputs.write_summary(config.summary_path, self._running_summary(journal, run_id))
        except OSError as error:
            raise ConfigError(
                f"cannot write the files beside {config.output}: {error.strerror or error}"
            ) from None

    def _running_summary(self, journal: Journal, run_id: int) -> dict[str, Any]:
        started = _iso(self.stats.started_wall)
        return {
            "distribution": self.config.distribution or journal.meta("distribution"),
            "campaign": self.config.campaign,
            "segment": str(self.config.segment),
            "exit_code": None,
            "reason": "running",
            "message": (
                f"run {run_id} began at {started} and has not recorded its end: it is going, or it died "
                "(kill -9, a crash, a reboot)"
            ),
            "next_step": "distributor status tells whether it is going; if it died, run the same command again to resume",
            "started_at": started,
            "run": self._run_identity(journal, run_id),
        }

    def _write_refused_summary(self, journal: Journal, run_id: int, error: DistributorError, reason: str) -> None:
        """A run refused after it began (an unusable segment, a journal of another campaign): its summary says so
        rather than "running".  The journal has recorded the end already; a failure to write is only logged."""
        summary = {
            **self._running_summary(journal, run_id),
            "exit_code": error.exit_code,
            "reason": reason,
            "message": str(error),
            "next_step": "fix what the message names, then run the same command again",
            "ended_at": _iso(time.time()),
        }
        try:
            with outputs.files_lock(self.config.output):
                outputs.write_summary(self.config.summary_path, summary)
        except OSError as failure:
            log.warning("could not write %s: %s", self.config.summary_path, failure.strerror or failure)

    def _run_identity(self, journal: Journal, run_id: int) -> dict[str, Any]:
        return {
            "id": run_id,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "distributor": __version__,
            "journal": os.path.abspath(journal.path),
        }

    def _summary(
        self,
        journal: Journal,
        run_id: int,
        counts: dict[str, int],
        exit_code: int,
        reason: str,
        message: str,
        files: dict[str, Path],
        exported: Exported,
    ) -> dict[str, Any]:
        config, stats = self.config, self.stats
        ended = time.time()
        unserved = counts["pending"] + counts["sending"] + (counts["failed"] if config.retry_failed else 0)
        left = journal.left_segment(run_id)
        calls_per_code = stats.total_calls / stats.published if stats.published else 1.0
        next_step = self._next_step(exit_code, reason, files)
        codes_this_run = max(1, stats.published)
        achieved = stats.achieved_per_second
        summary: dict[str, Any] = {
            "distribution": self._distribution or journal.meta("distribution") or config.distribution or config.campaign,
            "campaign": config.campaign,
            "campaign_id": journal.meta("campaign_id") or None,
            "segment": str(config.segment),
            "exit_code": exit_code,
            "reason": reason,
            "message": message,
            "started_at": _iso(stats.started_wall),
            "ended_at": _iso(ended),
            "elapsed_seconds": round(ended - stats.started_wall, 3),
            "members": {
                "in_segment": stats.members,
                "published": stats.published,
                "already_held": stats.held_before,
                "failed": counts["failed"],
                "without_code": counts["pending"] + counts["sending"],
                "left_segment": left,
                "codes_in_output": exported.codes,
            },
            "skipped": {"total": sum(stats.skipped.values()), "by_reason": dict(stats.skipped)},
            "calls": {
                "total": stats.total_calls,
                "by_kind": dict(stats.calls),
                "retries": stats.retries,
                "rate_limited_429": stats.rate_limited,
                "server_errors_5xx": stats.server_errors,
                "no_answer": stats.no_answer,
                "recovered_by_lookup": stats.recovered_by_lookup,
                "per_code": round(stats.total_calls / codes_this_run, 4) if stats.published else None,
            },
            "rate": {
                "budget": str(config.budget),
                "budget_per_minute": round(config.budget.per_second * 60, 3),
                "achieved_per_minute": round(achieved * 60, 3) if achieved else None,
                "utilisation": round(stats.utilisation, 4) if stats.utilisation is not None else None,
            },
            "files": {name: str(path) for name, path in files.items()},
            # what to hand to CleverTap: this run's delta (no later run rewrites it) with the manifest
            "upload": {
                "codes": str(files["delta"]) if "delta" in files else None,
                "manifest": str(files["manifest"]) if "manifest" in files else None,
                "count": exported.new_codes,
                "published_after_run": exported.delta_since_run,
                "all_codes": str(files["codes"]) if "codes" in files else None,
            },
            # for the on-call engineer: which run, where, and what to do next
            "run": self._run_identity(journal, run_id),
            # a daily rerun with a fresh export: who entered, who left (never touched), what to upload
            "segment_update": {
                "entered": journal.entered(run_id),
                "left": left,
                "left_holding_code": journal.left_holding_code(run_id),
                "new_codes": exported.new_codes,
                "new_codes_since_run": exported.delta_since_run,
            },
            "deliver_to": config.deliver_to,
            "remaining": {
                "members": unserved,
                "eta_seconds_at_budget": round(unserved * max(1.0, calls_per_code) / config.budget.per_second, 1),
            },
            "next_step": next_step,
        }
        if config.delivers_to_leavers:
            summary["leavers"] = self._leavers_figures(journal, run_id, counts)
        if unlisted := journal.skipped_unlisted(run_id):  # only the first rows of each reason are in the report
            summary["skipped"]["not_listed"] = unlisted
        if self._stop is not None and self._stop.resume_at:
            summary["resume_at"] = _iso(self._stop.resume_at)
        if self._push_outcome is not None:  # h7-clevertap
            summary["clevertap"] = self._push_outcome.to_dict()
            if reason in ("push_failures", "push_incomplete"):
                summary["next_step"] = f"see {files['push_errors']}; `distributor push` pushes what CleverTap lacks"
            elif exit_code == EXIT_OK:
                summary["next_step"] = "nothing to upload: CleverTap holds every code (pushed by the run)"
        if hasattr(self, "_throttle"):
            summary["rate"]["lowest_allowed_per_window"] = self._throttle.stats.lowest_allowed
            summary["rate"]["paused_for_server_seconds"] = round(self._throttle.stats.seconds_paused, 3)
        return summary

    def _next_step(self, exit_code: int, reason: str, files: dict[str, Path]) -> str:
        """What to do now, true to the stop reason: rerunning unchanged helps only when the cause was passing."""
        if exit_code == EXIT_OK:
            if "delta" in files:
                return f"upload {files['delta']} with {files['manifest']} in CleverTap"
            return f"nothing new to upload: every code is in an earlier run's delta file (and in {files['codes']})"
        if exit_code == EXIT_MEMBER_FAILURES:
            return f"see {files['errors']}; --retry-failed tries those members again"
        if reason in _FATAL_NEXT_STEPS:
            return _FATAL_NEXT_STEPS[reason]
        if reason == "limit":
            return "run the same command without --limit to serve the rest"
        if reason == "storage_failure":
            return "free space (or make the folder writable), then run the same command again to resume"
        if self._stop is not None and self._stop.resume_at:
            return f"run the same command again after {_iso(self._stop.resume_at)} to resume"
        return "run the same command again to resume"
    def _leavers_figures(self, journal: Journal, run_id: int, counts: dict[str, int]) -> dict[str, Any]:
        """deliver_to=leavers: the watch list this run compared with, who left, and the leavers' state."""
        return {
            # the run whose segment was the watch list (None: there was none, this run recorded the baseline)
            "compared_with_run": self._watch_baseline or None,
            "watched": self.stats.members,
            "found_this_run": journal.leavers_found(run_id),
            "owed_total": sum(counts.values()),
            "served_total": counts["done"],
            "published_this_run": self.stats.published,
            "failed": counts["failed"],
            "without_code": counts["pending"] + counts["sending"],
        }


def call_outcome(error: ApiError | TransportError | None) -> dict[str, Any]:
    """How a call ended, as the journal's ``calls`` records it: ``outcome``, HTTP ``status``, ``request_id``."""
    if error is None:
        return {"outcome": "ok", "status": 200, "request_id": None}
    if isinstance(error, TransportError):
        return {"outcome": error.kind.replace(" ", "_"), "status": None, "request_id": None}
    if error.status == 429:
        outcome = "rate_limited"
    elif error.status >= 500:
        outcome = "server_error"
    else:
        outcome = "refused"
    return {"outcome": outcome, "status": error.status, "request_id": error.request_id}



#: Stops that rerunning the same command cannot mend: what to change first.
_FATAL_NEXT_STEPS = {
    "unauthorized": "fix VOUCHERIFY_APP_ID / VOUCHERIFY_APP_TOKEN or --api-url (the region), then run again",
    "plan_exceeded": "raise the Voucherify plan (or ask Voucherify), then run again",
    "forbidden": "use server-side keys whose role may publish codes, then run again",
    "unknown_campaign": "fix --campaign (its name or camp_… id), the keys' project or --api-url, then run again",
    "refused": "fix what Voucherify refused (see message), then run again",
    "out_of_codes": "add codes to the campaign (or make it generate them, AUTO_UPDATE), then run the same command again",
}


def _row_of(member: Member | None) -> str:
    """`` of the member at row N`` for a log line (identities stay out of logs), or nothing."""
    return f" of the member at row {member.seen_row}" if member is not None else ""


def _end_reason(error: DistributorError) -> str:
    """The summary's ``reason`` for a run that ended on ``error``."""
    return getattr(error, "reason", None) or (
        "storage_failure" if isinstance(error, StorageError) else type(error).__name__
    )


def _record_end(journal: Journal, run_id: int, error: DistributorError) -> None:
    """Record how a run ended on an error, where the storage still allows it."""
    try:
        journal.finish_run(run_id, exit_code=error.exit_code, reason=_end_reason(error), summary="{}")
    except StorageError:
        log.warning("the run's end could not be recorded in the journal either; the next run resumes all the same")


async def _alongside(
    body: Callable[[], Awaitable[None]], *background: Callable[[], Coroutine[Any, Any, None]]
) -> None:
    """Run ``body`` with ``background`` tasks that are cancelled when it ends.

    A :class:`DistributorError` from ``body`` is raised as itself, not wrapped in an exception group, so the edge
    can render it as one line.
    """
    failure: DistributorError | None = None
    async with anyio.create_task_group() as group:
        for task in background:
            group.start_soon(task)
        try:
            await body()
        except DistributorError as error:
            failure = error
        finally:
            group.cancel_scope.cancel()
    if failure is not None:
        raise failure


def _iso(unix: float) -> str:
    return datetime.fromtimestamp(unix, timezone.utc).isoformat(timespec="seconds")


def run_distribution(config: JobConfig, **options: Any) -> RunResult:
    """Run a distribution to its end from synchronous code (on anyio's asyncio backend: aiolimiter needs it)."""
    return anyio.run(Distribution(config, **options).run, backend="asyncio")

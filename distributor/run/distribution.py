"""One distribution run: segment → journal → one publication per member → CleverTap files.

:class:`Distribution` is the library entry point (the CLI is a thin skin over it)::

    config = JobConfig.load(Path("jobs/demo.toml"))
    result = anyio.run(Distribution(config).run)
    print(result.exit_code, result.stats.published)

The order of a run, and why:

1. open the segment and the journal, take the journal's lock, check the journal belongs to this distribution,
   load every valid row into the journal — all before any API call, so unusable input is refused (exit 2) without
   spending quota;
2. one ``GET /v1/campaigns/{id}`` pre-flight: bad keys, an unknown campaign or a spent quota stop the run after a
   single call; it also tells the campaign's id (the default distribution name) and whether it is join-once
   (:mod:`.publishing`);
3. members without a code are dispatched in segment order, each call waiting for its turn at the throttle
   (:mod:`.pace`), as many in flight as the latency needs; every call is logged in the journal before it is sent
   and every code saved when it arrives, in commits shared by the calls and answers around it (:mod:`.calls`,
   :mod:`.recording`);
4. the files are rewritten from the journal, even when the run stops early (:mod:`.ending`, :mod:`.summary`).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import httpx

from .. import outputs
from ..config import JobConfig, refuse_stand_in_codes_for_real_profiles
from ..errors import EXIT_MEMBER_FAILURES, EXIT_OK, ConfigError, DistributorError, StorageError
from ..export import Exported, export_files
from ..journal import DONE, Journal
from ..paths import check_destinations
from ..push import PushOutcome, RunPush
from ..segment import Segment, open_segment
from ..segment.loading import load_segment
from ..target import api_host, project_digest, voucherify_target
from ..voucherify import RateLimitHeaders, VoucherifyClient
from .calls import Calls
from .ending import Ending, Verdict, build_summary, end_reason, record_end, running_summary, unserved, verdict
from .pace import MAX_IN_FLIGHT, Pace
from .publishing import Publisher
from .stats import Reporter, RunStats
from .stopping import Stopping, alongside
from .summary import Summary, iso

if TYPE_CHECKING:
    from ..sandbox import Sandbox

log = logging.getLogger("distributor")

_LOAD_BATCH = 20_000


@dataclass(frozen=True)
class RunResult:
    exit_code: int
    reason: str
    message: str
    stats: RunStats
    #: the summary as written to ``<name>.summary.json`` (:class:`~distributor.run.summary.Summary` rendered)
    summary: dict[str, Any]
    files: dict[str, Path]
    #: the same summary, typed
    report: Summary | None = None


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
        self.sandbox: Sandbox | None = None  # the embedded sandbox's state, when api_url is "sandbox"
        self._stopping = Stopping()
        #: deliver_to=leavers: the run whose segment was the watch list when this run read its own (0: none)
        self._watch_baseline = 0
        self._pace: Pace | None = None  # made when the first call is about to be sent
        self._publisher: Publisher | None = None
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
        journal = Journal.open(config.layout.journal, lock=True)
        run_id = 0
        try:
            self._check_journal(journal, segment)
            run_id = journal.start_run(segment.name)  # what was read: every part, globs and folders expanded
            self._begin_files(journal, run_id)
            await self._run_watched(journal, run_id, segment)
            result = self._finish_or_storage_error(journal, run_id, segment)
        except DistributorError as error:
            if run_id:
                record_end(journal, run_id, error)
                self._write_refused_summary(journal, run_id, error, end_reason(error))
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
            # h7-clevertap: CleverTap's credentials proven first, codes pushed meanwhile
            async with self._pushing(journal):
                if self.stats.to_publish and not self._stopping.is_set():
                    async with self._client(journal) as client:
                        await self._distribute(journal, run_id, client)

        await alongside(load_and_publish, *([self._stopping.watch_signals] if self.handle_signals else []))

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

    def _push_verdict(self, result: Verdict, files: dict[str, Path]) -> Verdict:
        """The push's part of the verdict; writes ``<name>.push-errors.csv`` and keeps the outcome for the summary."""
        self._push_outcome = self.push.conclude() if self.push is not None else None
        if self._push_outcome is None:
            return result
        files["push_errors"] = self._push_outcome.errors_file
        return Verdict(*self._push_outcome.verdict(result.exit_code, result.reason, result.message))

    # ------------------------------------------------------------------ 1. journal and segment
    def _check_journal(self, journal: Journal, segment: Segment) -> None:
        config = self.config
        journal.check_belongs(
            key=segment.key, distribution=config.distribution, campaign=config.campaign, segment=segment.name
        )
        journal.check_delivery(config.deliver_to)
        note = journal.bind_project(host=api_host(config), project=project_digest(config))
        if note:
            log.warning("%s", note)
        journal.set_meta(key=segment.key, property=config.property_name, deliver_to=config.deliver_to)

    def _load(self, journal: Journal, run_id: int, segment: Segment) -> None:
        """Read the whole segment into the journal: valid members, skipped rows, duplicates."""
        loaded = load_segment(journal, run_id, segment, batch_size=_LOAD_BATCH, interrupted=self._stopping.is_set)
        if loaded is None:
            return  # interrupted while reading: nothing was published, _finish says so
        stats, config = self.stats, self.config
        stats.skipped = loaded.skipped
        stats.members = loaded.members
        if config.delivers_to_leavers:
            self._watch_baseline = journal.watch_baseline()
            stats.leavers_found = journal.mark_leavers(run_id)
        counts = self._recipients(journal, run_id)
        stats.held_before = journal.held_before(run_id)
        pending = unserved(config, counts)
        stats.to_publish = pending if config.limit is None else min(pending, config.limit)
        if config.delivers_to_leavers:
            log.info(
                "members: %d valid (%d skipped), watched; %d left since the previous complete run; %d leavers to "
                "publish to", stats.members, sum(stats.skipped.values()), stats.leavers_found, pending,
            )
            return
        log.info(
            "members: %d valid (%d skipped); %d already hold a code, %d to publish%s",
            stats.members,
            sum(stats.skipped.values()),
            counts["done"],
            pending,
            "" if config.retry_failed or not counts["failed"]
            else f", {counts['failed']} failed before (--retry-failed to try them again)",
        )

    def _recipients(self, journal: Journal, run_id: int) -> dict[str, int]:
        """Who this run serves, by state: the members of its segment, or (deliver_to=leavers) the leavers owed a
        code."""
        return journal.leaver_counts() if self.config.delivers_to_leavers else journal.state_counts(run_id)

    # ------------------------------------------------------------------ 2. the API
    @asynccontextmanager
    async def _client(self, journal: Journal) -> AsyncIterator[VoucherifyClient]:
        config = self.config
        ceiling = config.concurrency or MAX_IN_FLIGHT
        with voucherify_target(config) as target:
            self.sandbox = target.sandbox
            async with VoucherifyClient(
                target.url,
                target.credentials,
                timeout=config.timeout,
                max_connections=ceiling + 4,
                observer=self._observe,
                transport=self._transport,
            ) as client:
                yield client

    def _observe(self, rate: RateLimitHeaders, status: int, sent_at: float, latency: float) -> None:
        """The client's observer: every answer feeds the pace (made once the client is open, see _distribute)."""
        assert self._pace is not None
        self._pace.observe(rate, status, sent_at, latency)

    # ------------------------------------------------------------------ 3. publishing
    async def _distribute(self, journal: Journal, run_id: int, client: VoucherifyClient) -> None:
        # made now, not before the client was open: the throttle's schedule starts when the first call can be sent
        self._pace = Pace(self.config, journal)
        calls = Calls(self.config, journal, run_id, client, self._pace, self.stats, self._stopping)
        publisher = self._publisher = Publisher(self.config, journal, run_id, calls)

        async def preflight_and_publish() -> None:
            await publisher.preflight()
            if not self._stopping.is_set():
                await publisher.publish_all()

        # Everything that calls Voucherify runs in this scope: a stop gives it a deadline (STOP_GRACE), a second
        # signal cancels it at once; members whose call was cut stay `sending` and are re-sent on resume.
        # Answers are committed in groups (.recording): all of them before the files, the last pushes and the summary.
        with anyio.CancelScope() as self._stopping.work_scope:
            try:
                await alongside(
                    preflight_and_publish,
                    calls.recorder.settle_regularly,
                    *([self._report] if self.reporter is not None else []),
                )
            finally:
                calls.recorder.settle()

    async def _report(self) -> None:
        assert self.reporter is not None and self._pace is not None
        self.reporter.start(self.stats)
        try:
            while True:
                await anyio.sleep(self.reporter.interval)
                self.stats.paused_for = self._pace.paused_for()
                self.reporter.update(self.stats)
        finally:
            self.reporter.finish(self.stats)

    # ------------------------------------------------------------------ 4. files and summary
    def _finish(self, journal: Journal, run_id: int, segment: Segment) -> RunResult:
        config, stats, stop = self.config, self.stats, self._stopping.stop
        counts = self._recipients(journal, run_id)
        publisher = self._publisher
        result = verdict(config, stats, counts, stop, publisher is not None and publisher.limit_reached)
        if config.delivers_to_leavers and result.exit_code in (EXIT_OK, EXIT_MEMBER_FAILURES):
            result = replace(result, message=self._leavers_message(result))
            journal.record_watch_list(run_id)  # complete: today's segment is what the next run compares with

        # One writer at a time (an export may be going): the snapshot is read and every file written under the lock.
        with outputs.files_lock(config.output):
            # the skipped and left reports describe the latest segment read whole (this run's, unless interrupted)
            loaded = journal.latest_run(loaded=True)
            if stop is not None and not journal.state_counts()[DONE]:
                # stopped before any code was ever published: no empty CSV that looks like a hand-off
                files: dict[str, Path] = {"summary": config.layout.summary, "journal": journal.path}
                exported = Exported(files={}, codes=0, errors=0, skipped=0, delta_run=run_id)
            else:
                exported = export_files(
                    config, journal, run_id=loaded.id if loaded else run_id, delta_run=run_id,
                    key=segment.key,
                )
                files = {**exported.files, "summary": config.layout.summary, "journal": journal.path}
            result = self._push_verdict(result, files)  # h7-clevertap
            ending = Ending(
                config=config,
                stats=stats,
                run_id=run_id,
                distribution=publisher.distribution if publisher is not None else "",
                watch_baseline=self._watch_baseline,
                stop=stop,
                throttle=self._pace.throttle.stats if self._pace is not None else None,
                push=self._push_outcome,
            )
            report = build_summary(ending, journal, counts, result, files, exported)
            summary = report.to_dict()
            outputs.write_summary(config.layout.summary, summary)
        journal.finish_run(
            run_id, exit_code=result.exit_code, reason=result.reason, summary=json.dumps(summary, default=str)
        )
        return RunResult(result.exit_code, result.reason, result.message, stats, summary, files, report)

    def _leavers_message(self, result: Verdict) -> str:
        if not self._watch_baseline:
            return (
                f"baseline recorded: {self.stats.members} members are watched and nothing was published; the next "
                "run publishes to those who have left the segment"
            )
        if result.exit_code == EXIT_OK:
            return (
                f"every leaver holds a code ({self.stats.leavers_found} left the segment since the previous complete "
                "run)"
            )
        return result.message

    def _begin_files(self, journal: Journal, run_id: int) -> None:
        """Before anything else of a run: remove what killed writes left, and replace the previous run's summary
        by one that says this run has begun, so that a run killed from here on (kill -9, a reboot) never leaves a
        summary that claims the previous outcome."""
        config = self.config
        try:
            with outputs.files_lock(config.output):
                outputs.remove_stale_temporaries(config.output)
                outputs.write_summary(
                    config.layout.summary, running_summary(config, journal, run_id, self.stats.started_wall).to_dict()
                )
        except OSError as error:
            raise ConfigError(
                f"cannot write the files beside {config.output}: {error.strerror or error}"
            ) from None

    def _write_refused_summary(self, journal: Journal, run_id: int, error: DistributorError, reason: str) -> None:
        """A run refused after it began (an unusable segment, a journal of another campaign): its summary says so
        rather than "running".  The journal has recorded the end already; a failure to write is only logged."""
        summary = replace(
            running_summary(self.config, journal, run_id, self.stats.started_wall),
            exit_code=error.exit_code,
            reason=reason,
            message=str(error),
            next_step="fix what the message names, then run the same command again",
            ended_at=iso(time.time()),
        )
        try:
            with outputs.files_lock(self.config.output):
                outputs.write_summary(self.config.layout.summary, summary.to_dict())
        except OSError as failure:
            log.warning("could not write %s: %s", self.config.layout.summary, failure.strerror or failure)


def run_distribution(config: JobConfig, **options: Any) -> RunResult:
    """Run a distribution to its end from synchronous code (on anyio's asyncio backend: aiolimiter needs it)."""
    return anyio.run(Distribution(config, **options).run, backend="asyncio")

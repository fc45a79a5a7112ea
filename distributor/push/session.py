"""The two ways codes are pushed from a journal: alongside a run (``run --clevertap``, :class:`RunPush`) and on
their own (``distributor push``, :func:`push_journal`)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio

from .. import outputs
from ..clevertap import CleverTapClient, resolve_url
from ..config import is_rehearsal
from ..errors import ConfigError, DistributorError
from ..journal import Journal
from .connection import connect
from .outcome import PushOutcome, conclude
from .pusher import Pusher, PushStats
from .settings import PushSettings


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

"""How a run stops: a doomed condition or a signal asks for a stop, no new call starts, the calls in flight get
:data:`STOP_GRACE` seconds to finish and be saved, and a second signal cuts them at once (members whose call was
cut stay ``sending`` and are re-sent under the same key on resume)."""

from __future__ import annotations

import logging
import signal
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from contextlib import contextmanager
from typing import Any

import anyio

from ..errors import DistributorError, StopRun

log = logging.getLogger("distributor")

#: Seconds in-flight calls may take to finish after a stop was asked for (signal or doomed condition).
STOP_GRACE = 5.0


class Stopping:
    """The stop of one run: the first :class:`StopRun` asked for (it gives the run's reason), and the scopes it
    cancels."""

    def __init__(self) -> None:
        self._event = anyio.Event()
        #: the first stop asked for (``None``: the run is not stopping, or stops only because it was interrupted
        #: while reading the segment)
        self.stop: StopRun | None = None
        self._waiting: set[anyio.CancelScope] = set()
        #: everything that calls Voucherify runs in this scope: a stop gives it a deadline
        self.work_scope: anyio.CancelScope | None = None

    def is_set(self) -> bool:
        return self._event.is_set()

    async def wait(self) -> None:
        await self._event.wait()

    def request(self, stop: StopRun) -> None:
        """Start no more calls; give those in flight ``STOP_GRACE`` seconds to finish and be saved."""
        if self.stop is None:
            self.stop = stop
            log.warning("stopping: %s", stop)
        self._event.set()
        for scope in list(self._waiting):
            scope.cancel()
        if self.work_scope is not None:
            self.work_scope.deadline = min(self.work_scope.deadline, anyio.current_time() + STOP_GRACE)

    @contextmanager
    def abandoned_on_stop(self) -> Iterator[anyio.CancelScope]:
        """A scope for a wait that a stop cancels (a turn at the throttle)."""
        with anyio.CancelScope() as scope:
            self._waiting.add(scope)
            try:
                yield scope
            finally:
                self._waiting.discard(scope)

    async def sleep(self, seconds: float) -> None:
        """Sleep ``seconds``, or less if the run stops meanwhile."""
        with anyio.move_on_after(seconds):
            await self._event.wait()

    async def watch_signals(self) -> None:
        """SIGINT, SIGTERM or SIGHUP (a closed terminal, an ssh session dropped): stop cleanly, files rewritten and
        the end recorded; the same signal again stops at once."""
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM, signal.SIGHUP) as signals:
            async for received in signals:
                name = signal.Signals(received).name
                if not self.is_set() or self.stop is None or self.stop.reason != "interrupted":
                    self.request(StopRun(
                        f"stopped by {name}: the codes published so far are saved; run the same command again "
                        "to resume", reason="interrupted",
                    ))
                    log.warning(
                        "%s: finishing the calls in flight (at most %.0fs); send it again to stop now", name, STOP_GRACE
                    )
                else:
                    log.warning("%s again: stopping now", name)
                    if self.work_scope is not None:
                        self.work_scope.cancel()


async def alongside(
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

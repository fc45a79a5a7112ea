"""Writing one batch of a segment into the journal while the next is read (issue 13.2).

Reading and validating an export is Python; most of writing a batch is SQLite, which runs without the GIL.  With
one worker thread and one batch in flight, the two overlap on two cores and memory stays bounded (two batches).
The journal's connection is used by one thread at a time: the worker while a write is in flight, and the caller
only once :class:`WriteBehind` has waited for it (at the next ``submit`` and on leaving the block).
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from types import TracebackType
from typing import Self


class WriteBehind:
    """``with WriteBehind() as writes: writes.submit(write)``: each ``write`` runs in order on one worker thread,
    at most one at a time while the caller prepares the next.  A write's exception is raised by the next
    ``submit`` or on leaving the block; leaving always waits for the write in flight."""

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="journal-write")
        self._pending: Future[None] | None = None

    def submit(self, write: Callable[[], None]) -> None:
        self._wait()
        self._pending = self._pool.submit(write)

    def _wait(self) -> None:
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        try:
            if kind is None:
                self._wait()
        finally:
            self._pool.shutdown(wait=True)  # an error of the caller's still waits for the write in flight

"""A run's writes on a publication's path, grouped into shared commits (issue 13.3).

* **A call is sent only once its row is committed.**  The calls that become ready in the same moment (one turn of
  the event loop) join one commit, then all go: the first of them yields once so that the others can join, and
  commits for all.  When calls come faster than one per :data:`CALLS_EVERY`, the first waits until then, and
  those that become ready meanwhile join (at most :data:`_CALLS_AT_MOST`): fewer, larger commits at a high rate,
  no wait at a low one.
* **Answers are committed in groups of their own**: a call's outcome and the code that arrived wait at most
  :data:`ANSWERS_INTERVAL` seconds after the first of them began to wait, or until :data:`ANSWERS_AT_MOST` are
  waiting, and never beyond the final :meth:`Recorder.settle` before the run writes its files, pushes its last
  codes or counts its summary (a stop, by a signal or otherwise, passes there too).  A code counts as published
  (``RunStats.published``, the progress lines, the summary) only once committed, and only committed codes are ever
  read (the CleverTap push, ``status``).  Not sharing the calls' commits keeps that window as it is said: a kill -9
  inside it is what the tests make on purpose.
* A crash in between loses only answers to calls already logged: their members are still ``sending`` with their
  ``source_id``, and the next run gets the very same codes back by replay or look-up.
"""

from __future__ import annotations

import anyio
import anyio.lowlevel

from ..errors import StopRun, StorageError
from ..journal import Journal
from ..journal.batch import Batch, CallOutcome, NewCall, SavedCode
from .stats import RunStats
from .stopping import Stopping

#: The longest an answer waits for its commit, in seconds.
ANSWERS_INTERVAL = 0.25
#: Answers waiting that make a commit at once.
ANSWERS_AT_MOST = 256
#: Calls are committed at most this often, in seconds: calls that come faster share commits.
CALLS_EVERY = 0.01
#: The most calls one commit holds.
_CALLS_AT_MOST = 64


class _Calls:
    """Calls that share one commit before they are sent, and what it gave: their ids, or a storage failure."""

    def __init__(self) -> None:
        self.waiting: list[NewCall] = []
        self.led = False  # one of them waits for more to join, then commits for all
        self.committed: anyio.Event | None = None
        self.ids: list[int] = []
        self.failure: StorageError | None = None
        self.finished = False

    def call_id(self, index: int) -> int:
        """The id of the ``index``-th call, once committed."""
        if self.failure is not None:
            raise StorageError(str(self.failure))
        return self.ids[index]

    def done(self, ids: list[int], failure: StorageError | None = None) -> None:
        self.ids, self.failure, self.finished = ids, failure, True
        if self.committed is not None:
            self.committed.set()


class Recorder:
    """The journal's writes of one run's calls and answers, grouped (see the module)."""

    def __init__(self, journal: Journal, stats: RunStats, stopping: Stopping) -> None:
        self.journal, self.stats, self.stopping = journal, stats, stopping
        self._calls = _Calls()
        self._calls_committed_at = -CALLS_EVERY
        self._answers = Batch()
        self._first_answer = anyio.Event()  # set when an answer starts waiting alone

    async def log_call(self, call: NewCall) -> int:
        """Commit ``call`` (with the others ready meanwhile) before it is sent; returns its id.  Raises
        :class:`StorageError` when the journal cannot be written: the call must not be sent."""
        group = self._calls
        index = len(group.waiting)
        group.waiting.append(call)
        if len(group.waiting) >= _CALLS_AT_MOST:
            self._commit_calls(group)
        elif group.led:
            if group.committed is None:
                group.committed = anyio.Event()
            await group.committed.wait()
        else:
            group.led = True
            try:
                await self._let_others_join(group)
            finally:
                self._commit_calls(group)
        return group.call_id(index)

    def record_outcome(self, outcome: CallOutcome) -> None:
        """How a call ended: committed with the answers around it."""
        self._answers.outcomes.append(outcome)
        self._answer_waits()

    def save_code(self, code: SavedCode) -> None:
        """A code that arrived: committed with the answers around it, and counted as published then."""
        self._answers.codes.append(code)
        self._answer_waits()

    def settle(self) -> None:
        """Commit the answers waiting; a storage failure stops the run (their members stay ``sending``)."""
        answers, self._answers = self._answers, Batch()
        if not answers:
            return
        try:
            self.journal.write_batch(answers)
        except StorageError as error:
            self.stopping.request(StopRun(str(error), reason="storage_failure"))
            return
        self.stats.published += len(answers.codes)

    async def settle_regularly(self) -> None:
        """Alongside the publishing: no answer waits longer than :data:`ANSWERS_INTERVAL` for its commit."""
        while True:
            await self._first_answer.wait()
            self._first_answer = anyio.Event()
            await anyio.sleep(ANSWERS_INTERVAL)
            self.settle()

    def _answer_waits(self) -> None:
        waiting = self._answers.answers
        if waiting >= ANSWERS_AT_MOST:
            self.settle()
        elif waiting == 1:
            self._first_answer.set()  # its interval starts

    async def _let_others_join(self, group: _Calls) -> None:
        """The calls ready in this moment join; when calls come faster than one per :data:`CALLS_EVERY`, those
        that become ready until then join too (at a high rate they come one after another, rarely together),
        unless the group fills up first."""
        await anyio.lowlevel.checkpoint()
        wait = self._calls_committed_at + CALLS_EVERY - anyio.current_time()
        if wait > 0 and not group.finished:
            if group.committed is None:
                group.committed = anyio.Event()
            with anyio.move_on_after(wait):
                await group.committed.wait()

    def _commit_calls(self, group: _Calls) -> None:
        if group.finished:
            return
        if group is self._calls:
            self._calls = _Calls()
        self._calls_committed_at = anyio.current_time()
        try:
            ids = self.journal.write_batch(Batch(calls=group.waiting))
        except StorageError as error:
            group.done([], error)
            raise
        group.done(ids)

"""The journal: a SQLite file that holds every member's state and code, and every API call made.

It is the source of truth of a distribution; the CSV files are views of it.  Its rules:

* A member moves ``pending → sending → done(code) | failed(reason)``.  ``sending`` is written (and committed)
  *before* each publication call, with a row in ``calls``; the answer is committed when it arrives — a run groups
  both (:meth:`write_batch`, :mod:`distributor.run.recording`): calls ready together share the commit that precedes
  their sending, answers share commits of their own a fraction of a second later, always before the run ends.  A
  member found ``sending`` on resume may or may not have been published: it is sent again with the *same*
  publication ``source_id``, and Voucherify hands back the code it committed the first time.  That key is stored
  in the member's row (``members.source_id``) when its first call is logged, and reused for ever after: a later
  change of how keys are made (or of the campaign's resolution) never gives a called member a second key.
* ``failed`` is only for Voucherify's definite refusals; a member whose calls failed only transiently stays
  ``sending`` and is served by the next run.
* Every API call is logged in ``calls`` before it is sent, so a resumed run knows how much of the server's rate
  window the dead run used, and the summary can count calls per code.
* One process at a time (:mod:`.lock`): ``Journal.open(path, lock=True)`` takes it before SQLite opens the file.
* One Voucherify project: the journal records the API host and a digest of the app id it was made against
  (:meth:`Journal.bind_project`), so sandbox codes never pass for real ones.
* An export loaded whole is recognised when a later run is given the very same file (:meth:`Journal.already_loaded`,
  :mod:`.fingerprint`): that run takes the loaded segment over instead of reading it again.
* WAL mode with ``synchronous=NORMAL``: a process crash at any moment leaves a consistent file; a power loss can
  lose the last commits, which is harmless because re-sending a publication is idempotent.

Identities are stored as TEXT exactly as read; SQLite compares them byte for byte.  The read-only queries are in
:mod:`.reports`, the tables and migrations in :mod:`.schema`.
"""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path
from typing import Self

from ..errors import JournalError, StorageError
from . import lock as locking
from . import schema
from .batch import Batch, BatchWriter, CallOutcome, NewCall, SavedCode
from .intake import SegmentIntake
from .leavers import LeaverState
from .pushes import PushState
from .rows import FAILED, PENDING, SENDING, Member

#: The meta key of the export loaded whole last: ``{"fingerprint": …, "run": the run that read it}``.
_LOADED_EXPORT = "loaded_export"


class Journal(SegmentIntake, LeaverState, PushState, BatchWriter):
    """One distribution's SQLite journal.  Not shared between threads; open one per thread."""

    def __init__(self, path: Path, connection: sqlite3.Connection, readonly: bool) -> None:
        self.path = path
        self._db = connection
        self._readonly = readonly
        self._lock_handles: list[int] = []

    # ------------------------------------------------------------------ opening
    @classmethod
    def open(cls, path: Path | str, *, readonly: bool = False, lock: bool = False) -> Journal:
        """Open (or create) the journal at ``path``.  ``lock``: take it for this process *before* SQLite opens it
        (:class:`JournalLocked` when another process holds it): SQLite names its WAL after the path, so a second
        writer reaching the file under another name (a hard link) must never open it while the first writes."""
        path = Path(path)
        handles: list[int] = []
        if lock and not readonly:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                handles = locking.take_locks(path)
            except OSError as exc:
                raise JournalError(f"journal {path} cannot be opened: {exc.strerror or exc}") from None
        try:
            journal = cls._open(path, readonly)
        except BaseException:
            locking.release(handles)
            raise
        journal._lock_handles = handles
        return journal

    @classmethod
    def _open(cls, path: Path, readonly: bool) -> Journal:
        if readonly:
            if not path.exists():
                raise JournalError(f"journal {path} does not exist")
            uri = f"file:{path.resolve()}?mode=ro"
            connection = _connect(uri, uri=True)
        else:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                connection = _connect(str(path))
            except (OSError, sqlite3.Error) as exc:
                why = getattr(exc, "strerror", None) or exc
                raise JournalError(f"journal {path} cannot be opened: {why}") from None
        journal = cls(path, connection, readonly)
        try:
            journal._prepare()
        except StorageError as exc:
            connection.close()
            raise JournalError(str(exc)) from None
        except sqlite3.DatabaseError as exc:
            connection.close()
            raise JournalError(f"journal {path} is not a usable SQLite journal: {exc}") from None
        return journal

    def _prepare(self) -> None:
        older = schema.prepare(self._db, self.path, readonly=self._readonly)
        if older is not None:
            with self._transaction():  # every step in one transaction
                schema.migrate(self._db, older)

    def close(self) -> None:
        self._db.close()
        self.unlock()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ one process at a time
    @property
    def lock_path(self) -> Path:
        """``<journal>.lock`` beside the journal's real file: every name of the journal finds the same lock."""
        return locking.lock_path(self.path)

    def lock(self) -> None:
        """Take the journal for this process, or raise :class:`JournalLocked` naming the holder (see
        :func:`.lock.take_locks`).  Prefer ``Journal.open(path, lock=True)``, which locks before SQLite opens it."""
        if not self._lock_handles:
            self._lock_handles = locking.take_locks(self.path)

    def unlock(self) -> None:
        locking.release(self._lock_handles)
        self._lock_handles = []

    # ------------------------------------------------------------------ which distribution and project
    def bind_project(self, *, host: str, project: str) -> str | None:
        """Bind this journal to the Voucherify ``host`` and ``project`` (a digest of the app id) of this run.

        Refuses (:class:`JournalError`) a journal bound to another host or project: its codes exist only there.
        A journal made before journals recorded their project adopts this one; the returned note says so (else
        ``None``).
        """
        known_host, known_project = self.meta("api_host"), self.meta("project")
        if known_host is None or known_project is None:
            adopted = self.meta("distribution") is not None or bool(self.runs())
            self.set_meta(api_host=host, project=project)
            if adopted:
                return (
                    f"journal {self.path} did not record its Voucherify project: it is now bound to {host} ({project})"
                )
            return None
        self.check_project(host=host, project=project)
        return None

    def check_project(self, *, host: str, project: str) -> None:
        """Refuse (:class:`JournalError`) a run aimed at another Voucherify host or project than the journal's."""
        known_host, known_project = self.meta("api_host"), self.meta("project")
        if known_host is None or known_project is None or (known_host, known_project) == (host, project):
            return
        if known_host != host:
            what = f"was made against {_host_name(known_host)}, but this run is aimed at {_host_name(host)}"
        else:
            what = (
                f"was made with the keys of project {known_project} on {known_host}, "
                f"but this run uses project {project}"
            )
        raise JournalError(
            f"journal {self.path} {what}: its codes exist only there. To start afresh there, give this run a fresh "
            "journal: another --output (or --state)"
        )

    def check_belongs(self, *, key: str, distribution: str | None, campaign: str, segment: object) -> None:
        """Refuse (:class:`JournalError`) a journal written for another key kind, distribution or campaign."""
        known_key = self.meta("key")
        if known_key and known_key != key:
            raise JournalError(
                f"journal {self.path} holds CleverTap {known_key}s, but {segment} is keyed on {key}: "
                "use another --state for another kind of key"
            )
        known_distribution = self.meta("distribution")
        if distribution and known_distribution and distribution != known_distribution:
            raise JournalError(
                f"journal {self.path} belongs to distribution {known_distribution!r}, not {distribution!r}: "
                "give a new distribution its own --output (or --state)"
            )
        known_campaign, known_campaign_id = self.meta("campaign"), self.meta("campaign_id")
        if known_campaign and campaign not in (known_campaign, known_campaign_id):
            raise JournalError(
                f"journal {self.path} belongs to campaign {known_campaign!r} ({known_campaign_id}), not "
                f"{campaign!r}: give another campaign its own --output (or --state)"
            )

    # ------------------------------------------------------------------ runs
    def start_run(self, segment: str) -> int:
        with self._transaction():
            cursor = self._db.execute(
                "INSERT INTO runs (started_at, pid, segment) VALUES (?, ?, ?)", (time.time(), os.getpid(), segment)
            )
        return int(cursor.lastrowid or 0)

    def finish_run(self, run_id: int, *, exit_code: int, reason: str, summary: str) -> None:
        with self._transaction():
            self._db.execute(
                "UPDATE runs SET ended_at = ?, exit_code = ?, reason = ?, summary = ? WHERE id = ?",
                (time.time(), exit_code, reason, summary, run_id),
            )

    def mark_loaded(self, run_id: int) -> None:
        """Record that run ``run_id`` has read its whole segment (its skipped and left reports are complete)."""
        with self._transaction():
            self._db.execute("UPDATE runs SET loaded_at = ? WHERE id = ?", (time.time(), run_id))

    # ------------------------------------------------------------------ the work
    def work(self, run_id: int, *, after_seq: int, limit: int, retry_failed: bool = False) -> list[Member]:
        """Members of this run's segment still without a code, in segment order, after position ``after_seq``."""
        states = (PENDING, SENDING, FAILED) if retry_failed else (PENDING, SENDING)
        marks = ",".join("?" * len(states))
        rows = self._db.execute(
            f"""SELECT id, identity, state, attempts, seen_seq, seen_row, source_id FROM members
                WHERE seen_run = ? AND seen_seq > ? AND state IN ({marks})
                ORDER BY seen_seq LIMIT ?""",
            (self.segment_of(run_id), after_seq, *states, limit),
        ).fetchall()
        return [Member(*row) for row in rows]

    def log_call(
        self,
        run_id: int,
        kind: str,
        member_id: int | None = None,
        at: float | None = None,
        *,
        source_id: str | None = None,
    ) -> int:
        """Record an API call about to be sent; a publication also marks its member ``sending`` and pins its key
        (``source_id``) unless it already has one.  Commits.  Returns the call's id, for
        :meth:`record_call_outcome`.  (A run groups its calls: :meth:`write_batch`.)"""
        at = time.time() if at is None else at
        (call_id,) = self.write_batch(Batch(calls=[NewCall(run_id, kind, member_id, at, source_id)]))
        return call_id

    def record_call_outcome(self, call_id: int, *, outcome: str, status: int | None, request_id: str | None) -> None:
        """Record how call ``call_id`` ended: ``outcome`` (``ok``, ``refused``, ``timeout``, …), the HTTP status and
        Voucherify's ``request_id``.  Commits."""
        self.write_batch(Batch(outcomes=[CallOutcome(call_id, outcome, status, request_id)]))

    def source_id(self, member_id: int) -> str | None:
        """The publication key this member's calls are made with (``None``: never called)."""
        row = self._db.execute("SELECT source_id FROM members WHERE id = ?", (member_id,)).fetchone()
        return None if row is None or row[0] is None else str(row[0])

    def complete(
        self, member_id: int, run_id: int, *, code: str, publication_id: str | None, expires_at: float | None = None
    ) -> None:
        """Save the code Voucherify holds for this member (and when it expires, if it does).  Commits."""
        self.write_batch(Batch(codes=[SavedCode(member_id, run_id, code, publication_id, expires_at)]))

    def fail(
        self,
        member_id: int,
        *,
        status: int | None,
        key: str | None,
        message: str | None,
        request_id: str | None,
    ) -> None:
        """Record a failure that retrying will not mend (Voucherify's ``key``, ``message``, ``request_id``)."""
        with self._transaction():
            self._db.execute(
                """UPDATE members SET state = 'failed', error_status = ?, error_key = ?, error_message = ?,
                       request_id = ?, updated_at = ?
                   WHERE id = ? AND state <> 'done'""",
                (status, key, message, request_id, time.time(), member_id),
            )

def _host_name(host: str) -> str:
    return "the embedded sandbox (--api-url sandbox)" if host == "sandbox" else host


def _connect(target: str, uri: bool = False) -> sqlite3.Connection:
    # isolation_level=None: we issue BEGIN/COMMIT ourselves, so every commit point is explicit.
    # Rows come back as tuples: the package hands out typed rows (.rows), never sqlite3.Row.
    return sqlite3.connect(target, uri=uri, isolation_level=None, timeout=10.0, check_same_thread=False)

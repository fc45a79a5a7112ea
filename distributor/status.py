"""``distributor status``: where a distribution stands, read from its journal without disturbing a run.

The journal is opened read-only (WAL: a reader never blocks the writer, and sees a consistent snapshot) and nothing
is written: not the journal, not its lock file.  Whether a run is in progress is told by the journal's lock (see
:func:`run_in_progress`).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .config import LEAVERS, MEMBERS
from .errors import JournalError
from .journal import DONE, FAILED, PENDING, SENDING, Failure, Journal, RecentFailure, Run, lock_holder

#: Seconds of history the recent rate and the ETA are measured over.
DEFAULT_WINDOW = 300.0
DEFAULT_ERRORS = 5
_RECENT_RUNS = 5


@dataclass(frozen=True)
class RunInfo:
    id: int
    started_at: str
    ended_at: str | None
    pid: int
    segment: str | None
    exit_code: int | None
    reason: str | None
    message: str | None


@dataclass(frozen=True)
class ErrorInfo(Failure):
    """A failed member as the journal records it, and when (ISO 8601, UTC)."""

    at: str


@dataclass(frozen=True)
class Status:
    """A distribution's state, as ``distributor status`` shows it (``to_dict()`` for ``--json``)."""

    journal: str
    distribution: str | None
    campaign: str | None
    campaign_id: str | None
    key: str | None
    property: str | None
    #: ``running``, ``finished`` (exit 0/1), ``stopped`` (exit 2/3), ``died`` (ended without a word: killed or
    #: crashed) or ``never run``
    state: str
    #: who holds the journal's lock while a run is in progress (``pid … on host since …``)
    holder: str | None
    run: RunInfo | None
    #: members of the latest run's segment, by state
    members: dict[str, int]
    left_segment: int
    holding_code_total: int
    failed_total: int
    calls: dict[str, int]
    window_seconds: float
    #: the seconds the rates were measured over: the window, or less when the run's calls span less
    rate_span_seconds: float
    calls_in_window: int
    codes_in_window: int
    calls_per_minute: float | None
    codes_per_minute: float | None
    #: members of the latest run's segment still without a code (pending or in flight)
    remaining: int
    eta_seconds: float | None
    last_call_at: str | None
    errors: list[ErrorInfo] = field(default_factory=list)
    previous_runs: list[RunInfo] = field(default_factory=list)
    #: ``members`` or ``leavers``; for leavers, ``members`` counts the leavers owed a code (the recipients) and
    #: ``leavers`` says ``owed``, ``done``, ``failed``, ``without_code`` and ``watched`` (the latest segment)
    deliver_to: str = MEMBERS
    leavers: dict[str, int] | None = None
    #: h7-clevertap: codes CleverTap confirmed (``pushed``), refused (``failed``), not yet pushed (``waiting``);
    #: ``None`` when this distribution never pushed to CleverTap
    clevertap: dict[str, int] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def read_status(
    journal_path: Path | str,
    *,
    errors: int = DEFAULT_ERRORS,
    window: float = DEFAULT_WINDOW,
    now: float | None = None,
) -> Status:
    """Read the journal at ``journal_path`` (read-only).  Raises :class:`JournalError` when there is none."""
    path = Path(journal_path)
    if not path.exists():
        raise JournalError(no_journal(path))
    with Journal.open(path, readonly=True) as journal:
        holder = run_in_progress(journal)
        with journal.snapshot():
            return _read(journal, path, holder, errors, window, time.time() if now is None else now)


def _read(journal: Journal, path: Path, holder: str | None, errors: int, window: float, now: float) -> Status:
    latest = journal.latest_run()
    run = _run_info(latest) if latest is not None else None
    running = holder is not None
    members = journal.state_counts(run.id) if run else {PENDING: 0, SENDING: 0, DONE: 0, FAILED: 0}
    deliver_to = journal.meta("deliver_to") or MEMBERS
    leavers = None
    if deliver_to == LEAVERS:
        watched = sum(members.values())
        members = journal.leaver_counts()  # the recipients: the segment's members are only watched
        leavers = {
            "owed": sum(members.values()), "done": members[DONE], "failed": members[FAILED],
            "without_code": members[PENDING] + members[SENDING], "watched": watched,
        }
    everyone = journal.state_counts()
    calls = journal.call_counts(run.id) if run else {}
    first_call, last_call = journal.call_span(run.id) if run else (None, None)

    # The recent rate: over the last `window` seconds while running, else over the window before the last call.
    calls_in_window = codes_in_window = 0
    span = 0.0
    if run is not None and last_call is not None and first_call is not None:
        until = now if running else last_call
        since = until - window
        span = min(window, until - first_call)
        calls_in_window = sum(journal.calls_between(since, until, run.id).values())
        codes_in_window = journal.codes_between(run.id, since, until)
    measurable = span >= 1.0  # a rate over less than a second says nothing
    calls_rate = 60.0 * calls_in_window / span if measurable and calls_in_window > 1 else None
    codes_rate = 60.0 * codes_in_window / span if measurable and codes_in_window > 0 else None
    remaining = members[PENDING] + members[SENDING]
    eta = None
    if running and remaining and codes_rate:
        eta = remaining / (codes_rate / 60.0)
    elif running and not remaining:
        eta = 0.0

    pushes = journal.push_counts()  # h7-clevertap
    return Status(
        clevertap=pushes if pushes["pushed"] or pushes["failed"] else None,
        journal=str(path),
        distribution=journal.meta("distribution") or None,
        campaign=journal.meta("campaign") or None,
        campaign_id=journal.meta("campaign_id") or None,
        key=journal.meta("key") or None,
        property=journal.meta("property") or None,
        state=_state(run, running),
        holder=holder,
        run=run,
        members=members,
        left_segment=journal.left_segment(run.id) if run else 0,
        holding_code_total=everyone[DONE],
        failed_total=everyone[FAILED],
        calls=calls,
        window_seconds=window,
        rate_span_seconds=round(span, 1),
        calls_in_window=calls_in_window,
        codes_in_window=codes_in_window,
        calls_per_minute=round(calls_rate, 2) if calls_rate is not None else None,
        codes_per_minute=round(codes_rate, 2) if codes_rate is not None else None,
        remaining=remaining,
        eta_seconds=round(eta, 1) if eta is not None else None,
        last_call_at=_iso(last_call) if last_call is not None else None,
        errors=[_error_info(row) for row in journal.recent_failures(errors)] if errors > 0 else [],
        previous_runs=[_run_info(row) for row in journal.recent_runs(_RECENT_RUNS + 1)[1:]],
        deliver_to=deliver_to,
        leavers=leavers,
    )


def no_journal(path: Path) -> str:
    """The message when a distribution's journal is not where it should be."""
    return f"no journal at {path}: this distribution has not run yet (or its journal is elsewhere: give --state)"


def run_in_progress(journal: Journal) -> str | None:
    """Who is running this distribution right now (``"pid 123 on host since …"``), or ``None``.

    A run holds an exclusive ``flock`` on ``<journal>.lock`` from before it records itself in ``runs`` until after
    it records its end.  So only when the latest run has no end can one be in progress; then a shared lock is tried
    without waiting and released at once: it fails exactly while the run holds its lock (a run in progress is
    never made to wait or fail), and succeeds when that run died without a word (killed, crashed, a reboot).
    Never creates the lock file.
    """
    latest = journal.latest_run()
    if latest is None or latest.ended_at is not None:
        return None
    return lock_holder(journal.lock_path)


def _state(run: RunInfo | None, running: bool) -> str:
    if running:
        return "running"
    if run is None:
        return "never run"
    if run.ended_at is None:
        return "died"
    return "finished" if run.exit_code in (0, 1) else "stopped"


def _run_info(row: Run) -> RunInfo:
    message = None
    if row.summary:
        try:
            summary = json.loads(row.summary)
        except ValueError:
            summary = {}
        message = summary.get("message") if isinstance(summary, dict) else None
    return RunInfo(
        id=row.id,
        started_at=_iso(row.started_at),
        ended_at=_iso(row.ended_at) if row.ended_at is not None else None,
        pid=row.pid,
        segment=row.segment,
        exit_code=row.exit_code,
        reason=row.reason,
        message=message,
    )


def _error_info(row: RecentFailure) -> ErrorInfo:
    return ErrorInfo(
        identity=row.identity,
        row=row.row,
        status=row.status,
        key=row.key,
        message=row.message,
        request_id=row.request_id,
        attempts=row.attempts,
        at=_iso(row.at),
    )


def _iso(unix: float) -> str:
    return datetime.fromtimestamp(unix, UTC).isoformat(timespec="seconds")

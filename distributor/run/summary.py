"""``<name>.summary.json``: how a run ended, its figures, and what to do next — as typed dataclasses rendered to
JSON (:meth:`Summary.to_dict`), the keys in the order the file has always had.

A run replaces the previous summary as soon as it begins by a :class:`RunningSummary` ("running"), so that a run
killed from then on never leaves a summary that claims the previous outcome; a run refused after it began leaves
the same with its error.
"""

from __future__ import annotations

import dataclasses
import os
import socket
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from .._version import __version__

#: A field left out of the JSON when it is ``None`` (the others are written as ``null``).
_OPTIONAL: dict[str, Any] = {"optional": True}


def _render(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            item.name: _render(getattr(value, item.name))
            for item in dataclasses.fields(value)
            if not (item.metadata.get("optional") and getattr(value, item.name) is None)
        }
    if isinstance(value, dict):
        return {key: _render(item) for key, item in value.items()}
    return value


def iso(unix: float) -> str:
    return datetime.fromtimestamp(unix, UTC).isoformat(timespec="seconds")


@dataclass(frozen=True)
class RunIdentity:
    """For the on-call engineer: which run, where."""

    id: int
    host: str
    pid: int
    distributor: str
    journal: str

    @classmethod
    def here(cls, run_id: int, journal: os.PathLike[str] | str) -> RunIdentity:
        return cls(run_id, socket.gethostname(), os.getpid(), __version__, os.path.abspath(journal))


@dataclass(frozen=True)
class RunningSummary:
    """A run that began and has not recorded its end (or, with ``ended_at``, one refused after it began)."""

    distribution: str | None
    campaign: str
    segment: str
    exit_code: int | None
    reason: str
    message: str
    next_step: str
    started_at: str
    run: RunIdentity
    ended_at: str | None = field(default=None, metadata=_OPTIONAL)

    def to_dict(self) -> dict[str, Any]:
        rendered: dict[str, Any] = _render(self)
        return rendered


@dataclass(frozen=True)
class MemberFigures:
    in_segment: int
    published: int
    already_held: int
    failed: int
    without_code: int
    left_segment: int
    codes_in_output: int


@dataclass(frozen=True)
class SkippedFigures:
    total: int
    by_reason: dict[str, int]
    #: rows skipped beyond those the report lists (only the first rows of each reason are in it)
    not_listed: int | None = field(default=None, metadata=_OPTIONAL)


@dataclass(frozen=True)
class CallFigures:
    total: int
    by_kind: dict[str, int]
    retries: int
    rate_limited_429: int
    server_errors_5xx: int
    no_answer: int
    recovered_by_lookup: int
    per_code: float | None


@dataclass(frozen=True)
class RateFigures:
    budget: str
    budget_per_minute: float
    achieved_per_minute: float | None
    utilisation: float | None
    #: the throttle's figures, when the run made calls
    lowest_allowed_per_window: int | None = field(default=None, metadata=_OPTIONAL)
    paused_for_server_seconds: float | None = field(default=None, metadata=_OPTIONAL)


@dataclass(frozen=True)
class Upload:
    """What to hand to CleverTap: this run's delta (no later run rewrites it) with the manifest."""

    codes: str | None
    manifest: str | None
    count: int
    published_after_run: int
    all_codes: str | None


@dataclass(frozen=True)
class SegmentUpdate:
    """A daily rerun with a fresh export: who entered, who left (never touched), what to upload."""

    entered: int
    left: int
    left_holding_code: int
    new_codes: int
    new_codes_since_run: int


@dataclass(frozen=True)
class Remaining:
    members: int
    eta_seconds_at_budget: float


@dataclass(frozen=True)
class LeaversFigures:
    """deliver_to=leavers: the watch list this run compared with, who left, and the leavers' state."""

    #: the run whose segment was the watch list (None: there was none, this run recorded the baseline)
    compared_with_run: int | None
    watched: int
    found_this_run: int
    owed_total: int
    served_total: int
    published_this_run: int
    failed: int
    without_code: int


@dataclass(frozen=True)
class Summary:
    """How a run ended (``<name>.summary.json``, and ``RunResult.summary`` as a dict)."""

    distribution: str
    campaign: str
    campaign_id: str | None
    segment: str
    exit_code: int
    reason: str
    message: str
    started_at: str
    ended_at: str
    elapsed_seconds: float
    members: MemberFigures
    skipped: SkippedFigures
    calls: CallFigures
    rate: RateFigures
    files: dict[str, str]
    upload: Upload
    run: RunIdentity
    segment_update: SegmentUpdate
    deliver_to: str
    remaining: Remaining
    next_step: str
    leavers: LeaversFigures | None = field(default=None, metadata=_OPTIONAL)
    resume_at: str | None = field(default=None, metadata=_OPTIONAL)
    #: h7-clevertap: the push's outcome when the run pushed to CleverTap
    clevertap: dict[str, Any] | None = field(default=None, metadata=_OPTIONAL)

    def to_dict(self) -> dict[str, Any]:
        rendered: dict[str, Any] = _render(self)
        return rendered

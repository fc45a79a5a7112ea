"""How a run ends: its verdict (exit code, reason, message), the next step true to that reason, and the figures of
its :class:`Summary`."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

from ..config import JobConfig
from ..errors import EXIT_MEMBER_FAILURES, EXIT_OK, EXIT_STOPPED, DistributorError, StopRun, StorageError
from ..export import Exported
from ..journal import Journal
from ..pacing.throttle import ThrottleStats
from ..push import PushOutcome
from .stats import RunStats
from .summary import (
    CallFigures,
    LeaversFigures,
    MemberFigures,
    RateFigures,
    Remaining,
    RunIdentity,
    RunningSummary,
    SegmentUpdate,
    SkippedFigures,
    Summary,
    Upload,
    iso,
)

log = logging.getLogger("distributor")

#: Stops that rerunning the same command cannot mend: what to change first.
_FATAL_NEXT_STEPS = {
    "unauthorized": "fix VOUCHERIFY_APP_ID / VOUCHERIFY_APP_TOKEN or --api-url (the region), then run again",
    "plan_exceeded": "raise the Voucherify plan (or ask Voucherify), then run again",
    "forbidden": "use server-side keys whose role may publish codes, then run again",
    "unknown_campaign": "fix --campaign (its name or camp_… id), the keys' project or --api-url, then run again",
    "refused": "fix what Voucherify refused (see message), then run again",
    "out_of_codes": (
        "add codes to the campaign (or make it generate them, AUTO_UPDATE), then run the same command again"
    ),
}


@dataclass(frozen=True)
class Verdict:
    exit_code: int
    reason: str
    message: str


def unserved(config: JobConfig, counts: dict[str, int]) -> int:
    """Recipients still owed a code that a rerun of the same command would serve."""
    return counts["pending"] + counts["sending"] + (counts["failed"] if config.retry_failed else 0)


def verdict(
    config: JobConfig, stats: RunStats, counts: dict[str, int], stop: StopRun | None, limit_reached: bool
) -> Verdict:
    """The run's verdict from the recipients' states and why it stopped (if it did)."""
    left = unserved(config, counts)
    if stop is not None:
        return Verdict(EXIT_STOPPED, stop.reason, str(stop))
    if left and limit_reached:
        return Verdict(EXIT_STOPPED, "limit", (
            f"the first {config.limit} members were served, as --limit asked; {left} still have no code: "
            "run the same command without --limit to serve them"
        ))
    if left:
        message = f"{left} members still have no code; run the same command again to finish"
        if stats.deferred:
            message = (
                f"{left} members still have no code ({stats.deferred} got only transient failures, last: "
                f"{stats.last_transient}); run the same command again to serve them"
            )
        return Verdict(EXIT_STOPPED, "incomplete", message)
    if counts["failed"]:
        return Verdict(
            EXIT_MEMBER_FAILURES, "member_failures",
            f"{counts['failed']} members could not get a code: see {config.layout.errors}",
        )
    return Verdict(EXIT_OK, "completed", "every valid member holds a code")


def next_step(exit_code: int, reason: str, files: dict[str, Path], stop: StopRun | None) -> str:
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
    if stop is not None and stop.resume_at:
        return f"run the same command again after {iso(stop.resume_at)} to resume"
    return "run the same command again to resume"


@dataclass(frozen=True)
class Ending:
    """Everything a summary is made of, besides the journal's own figures."""

    config: JobConfig
    stats: RunStats
    run_id: int
    distribution: str
    watch_baseline: int
    stop: StopRun | None
    throttle: ThrottleStats | None
    push: PushOutcome | None


def build_summary(
    ending: Ending, journal: Journal, counts: dict[str, int], result: Verdict, files: dict[str, Path],
    exported: Exported,
) -> Summary:
    """The summary of a run that reached its end (completed or stopped)."""
    config, stats, run_id = ending.config, ending.stats, ending.run_id
    exit_code, reason = result.exit_code, result.reason
    ended = time.time()
    owed = unserved(config, counts)
    left = journal.left_segment(run_id)
    calls_per_code = stats.total_calls / stats.published if stats.published else 1.0
    step = next_step(exit_code, reason, files, ending.stop)
    if ending.push is not None:  # h7-clevertap
        if reason in ("push_failures", "push_incomplete"):
            step = f"see {files['push_errors']}; `distributor push` pushes what CleverTap lacks"
        elif exit_code == EXIT_OK:
            step = "nothing to upload: CleverTap holds every code (pushed by the run)"
    achieved = stats.achieved_per_second
    unlisted = journal.skipped_unlisted(run_id)  # only the first rows of each reason are in the report
    return Summary(
        distribution=ending.distribution or journal.meta("distribution") or config.distribution or config.campaign,
        campaign=config.campaign,
        campaign_id=journal.meta("campaign_id") or None,
        segment=str(config.segment),
        exit_code=exit_code,
        reason=reason,
        message=result.message,
        started_at=iso(stats.started_wall),
        ended_at=iso(ended),
        elapsed_seconds=round(ended - stats.started_wall, 3),
        members=MemberFigures(
            in_segment=stats.members,
            published=stats.published,
            already_held=stats.held_before,
            failed=counts["failed"],
            without_code=counts["pending"] + counts["sending"],
            left_segment=left,
            codes_in_output=exported.codes,
        ),
        skipped=SkippedFigures(
            total=sum(stats.skipped.values()), by_reason=dict(stats.skipped), not_listed=unlisted or None
        ),
        calls=CallFigures(
            total=stats.total_calls,
            by_kind=dict(stats.calls),
            retries=stats.retries,
            rate_limited_429=stats.rate_limited,
            server_errors_5xx=stats.server_errors,
            no_answer=stats.no_answer,
            recovered_by_lookup=stats.recovered_by_lookup,
            per_code=round(stats.total_calls / max(1, stats.published), 4) if stats.published else None,
        ),
        rate=RateFigures(
            budget=str(config.budget),
            budget_per_minute=round(config.budget.per_second * 60, 3),
            achieved_per_minute=round(achieved * 60, 3) if achieved else None,
            utilisation=round(stats.utilisation, 4) if stats.utilisation is not None else None,
            lowest_allowed_per_window=ending.throttle.lowest_allowed if ending.throttle is not None else None,
            paused_for_server_seconds=(
                round(ending.throttle.seconds_paused, 3) if ending.throttle is not None else None
            ),
        ),
        files={name: str(path) for name, path in files.items()},
        upload=Upload(
            codes=str(files["delta"]) if "delta" in files else None,
            manifest=str(files["manifest"]) if "manifest" in files else None,
            count=exported.new_codes,
            published_after_run=exported.delta_since_run,
            all_codes=str(files["codes"]) if "codes" in files else None,
        ),
        run=RunIdentity.here(run_id, journal.path),
        segment_update=SegmentUpdate(
            entered=journal.entered(run_id),
            left=left,
            left_holding_code=journal.left_holding_code(run_id),
            new_codes=exported.new_codes,
            new_codes_since_run=exported.delta_since_run,
        ),
        deliver_to=config.deliver_to,
        remaining=Remaining(
            members=owed,
            eta_seconds_at_budget=round(owed * max(1.0, calls_per_code) / config.budget.per_second, 1),
        ),
        next_step=step,
        leavers=_leavers_figures(ending, journal, counts) if config.delivers_to_leavers else None,
        resume_at=iso(ending.stop.resume_at) if ending.stop is not None and ending.stop.resume_at else None,
        clevertap=ending.push.to_dict() if ending.push is not None else None,
    )


def _leavers_figures(ending: Ending, journal: Journal, counts: dict[str, int]) -> LeaversFigures:
    return LeaversFigures(
        compared_with_run=ending.watch_baseline or None,
        watched=ending.stats.members,
        found_this_run=journal.leavers_found(ending.run_id),
        owed_total=sum(counts.values()),
        served_total=counts["done"],
        published_this_run=ending.stats.published,
        failed=counts["failed"],
        without_code=counts["pending"] + counts["sending"],
    )


def running_summary(config: JobConfig, journal: Journal, run_id: int, started_wall: float) -> RunningSummary:
    """The summary of a run that has begun: it is going, or it died."""
    started = iso(started_wall)
    return RunningSummary(
        distribution=config.distribution or journal.meta("distribution"),
        campaign=config.campaign,
        segment=str(config.segment),
        exit_code=None,
        reason="running",
        message=(
            f"run {run_id} began at {started} and has not recorded its end: it is going, or it died "
            "(kill -9, a crash, a reboot)"
        ),
        next_step="distributor status tells whether it is going; if it died, run the same command again to resume",
        started_at=started,
        run=RunIdentity.here(run_id, journal.path),
    )


def end_reason(error: DistributorError) -> str:
    """The summary's ``reason`` for a run that ended on ``error``."""
    reason: str | None = getattr(error, "reason", None)
    return reason or ("storage_failure" if isinstance(error, StorageError) else type(error).__name__)


def record_end(journal: Journal, run_id: int, error: DistributorError) -> None:
    """Record how a run ended on an error, where the storage still allows it."""
    try:
        journal.finish_run(run_id, exit_code=error.exit_code, reason=end_reason(error), summary="{}")
    except StorageError:
        log.warning("the run's end could not be recorded in the journal either; the next run resumes all the same")

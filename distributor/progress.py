"""Progress display: a live bar with ETA on a terminal, plain periodic log lines otherwise (cron, CI, pipes)."""

from __future__ import annotations

import logging
import sys
from typing import TextIO

from .engine import RunStats
from .units import format_duration

log = logging.getLogger("distributor")


def describe(stats: RunStats) -> str:
    """One line: where the run stands."""
    done = stats.published + stats.failed
    share = f" ({100 * done / stats.to_publish:.1f} %)" if stats.to_publish else ""
    achieved = stats.achieved_per_second
    rate = f"{achieved * 60:.1f}/min" if achieved else "-"
    utilisation = f" = {100 * stats.utilisation:.0f} % of budget" if stats.utilisation else ""
    return (
        f"{done}/{stats.to_publish} served{share}: {stats.published} published, {stats.failed} failed; "
        f"{stats.total_calls} calls, {stats.retries} retries, {stats.rate_limited} × 429; "
        f"{rate}{utilisation}; {stats.in_flight} in flight; {eta_text(stats)}"
        + clevertap_progress(stats)
    )


def eta_text(stats: RunStats) -> str:
    """``ETA 5min``; while Voucherify makes every call wait, how long it still does instead (no ETA holds then)."""
    if stats.paused_for > 0:
        return f"paused {format_duration(stats.paused_for)} by Voucherify (429)"
    eta = stats.eta_seconds()
    return f"ETA {format_duration(eta) if eta is not None else '-'}"


def clevertap_progress(stats: RunStats) -> str:
    """h7-clevertap: ``; CleverTap: N pushed, M refused`` when the run pushes codes to CleverTap."""
    pushes = stats.clevertap
    return f"; CleverTap: {pushes.pushed} pushed, {pushes.failed} refused" if pushes is not None else ""


class LogProgress:
    """A log line every ``interval`` seconds (default 30 s): readable in a cron mail or a journald log."""

    def __init__(self, interval: float = 30.0) -> None:
        self.interval = interval

    def start(self, stats: RunStats) -> None:
        log.info("publishing %d codes", stats.to_publish)

    def update(self, stats: RunStats) -> None:
        log.info("progress: %s", describe(stats))

    def finish(self, stats: RunStats) -> None:
        pass


class TerminalProgress:
    """A live bar with rate and ETA (rich), redrawn a few times a second."""

    interval = 0.25

    def __init__(self, stream: TextIO | None = None) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

        self.console = Console(file=stream or sys.stderr)
        self._progress = Progress(
            TextColumn("[bold]publishing"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[detail]}"),
            TextColumn("{task.fields[eta]}"),  # ours: rich's own estimate would keep counting down during a pause
            console=self.console,
            transient=False,
        )
        self._task = self._progress.add_task("publishing", total=None, detail="", eta="", visible=False)

    def start(self, stats: RunStats) -> None:
        self._progress.update(self._task, total=stats.to_publish, visible=True)
        self._progress.start()

    def update(self, stats: RunStats) -> None:
        achieved = stats.achieved_per_second
        detail = (
            f"{stats.failed} failed · {stats.total_calls} calls · {stats.retries} retries · "
            f"{achieved * 60:.0f}/min" if achieved else f"{stats.failed} failed · {stats.total_calls} calls"
        )
        self._progress.update(
            self._task, completed=stats.published + stats.failed, detail=detail + clevertap_progress(stats),
            eta=eta_text(stats),
        )

    def finish(self, stats: RunStats) -> None:
        self.update(stats)
        self._progress.stop()

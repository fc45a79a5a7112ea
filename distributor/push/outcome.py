"""Where pushing stands when it ends: the journal's counts, the push-errors report, and what they do to a run's
verdict."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import outputs
from ..clevertap import describe_target
from ..errors import EXIT_MEMBER_FAILURES, EXIT_OK, EXIT_STOPPED
from ..journal import Journal
from .pusher import Pusher, PushStats
from .settings import PushSettings


def write_push_errors(path: Path, journal: Journal, *, key: str) -> int:
    """``<key>,row,code,clevertap_code,message,attempts``: the codes CleverTap did not take (a report for people:
    spreadsheet-safe, as the other reports)."""
    return outputs.write_report(
        path,
        [key, "row", "code", "clevertap_code", "message", "attempts"],
        journal.push_failures(),
    )


@dataclass(frozen=True)
class PushOutcome:
    """Where the push stands after a run or ``distributor push``: the journal's counts and the verdict."""

    counts: dict[str, int]
    stats: PushStats
    errors_file: Path
    stopped: str | None  # why pushing stopped early (credentials refused mid-way), or None

    def verdict(self, exit_code: int, reason: str, message: str) -> tuple[int, str, str]:
        """The run's exit code, reason and message, worsened by what the push left undone."""
        if exit_code not in (EXIT_OK, EXIT_MEMBER_FAILURES):
            return exit_code, reason, message
        if self.stopped is not None or self.counts["waiting"]:
            why = self.stopped or f"{self.counts['waiting']} codes are not in CleverTap yet"
            return EXIT_STOPPED, "push_incomplete", f"{why}: run `distributor push` (or the same command) again"
        if self.counts["failed"] and exit_code == EXIT_OK:
            return (
                EXIT_MEMBER_FAILURES,
                "push_failures",
                f"{self.counts['failed']} codes could not be pushed to CleverTap: see {self.errors_file}",
            )
        return exit_code, reason, message

    def to_dict(self) -> dict[str, Any]:
        per_member = self.stats.records_sent / self.stats.pushed if self.stats.pushed else None
        return {
            **self.counts,
            "errors_file": str(self.errors_file),
            "stopped": self.stopped,
            "this_run": self.stats.to_dict(),
            "records_per_code": round(per_member, 4) if per_member is not None else None,
        }


def conclude(config: PushSettings, journal: Journal, pusher: Pusher) -> PushOutcome:
    """Write the push-errors CSV from the journal and sum up."""
    path = config.layout.push_errors
    write_push_errors(path, journal, key=pusher.key)
    stopped = None
    if pusher.auth_error is not None:
        stopped = f"CleverTap refused the credentials while pushing ({describe_target(config.clevertap or '')})"
    return PushOutcome(journal.push_counts(), pusher.stats, path, stopped)

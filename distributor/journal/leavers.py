"""``deliver_to = leavers``: the watch list and the leavers owed a code.

A leavers distribution loads its segment like any other (every member seen is recorded, new ones as `pending`), but
those members are the *watch list*, not recipients.  A run that completes (exit 0/1) makes its segment the watch
list (`watched_run`, meta `watch_run`); the next run, once it has read its whole segment, records every watched
member absent from it and without a code as owed a code (`owed_run`).  The owed set is what a run serves and
resumes: it is never recomputed from a later export.
"""

from __future__ import annotations

from ..config import MEMBERS
from ..errors import JournalError
from .reports import JournalReports
from .rows import FAILED, PENDING, SENDING, Member


class LeaverState(JournalReports):
    """The leavers side of :class:`~distributor.journal.Journal`."""

    def check_delivery(self, deliver_to: str) -> None:
        """Refuse (:class:`JournalError`) a journal whose runs delivered to the other audience."""
        known = self.meta("deliver_to") or (MEMBERS if self.latest_run() is not None else None)
        if known and known != deliver_to:
            raise JournalError(
                f"journal {self.path} belongs to a distribution that delivers to {known}, not {deliver_to}: "
                f"give --deliver-to {deliver_to} its own --output (or --state)"
            )

    def mark_leavers(self, run_id: int) -> int:
        """Run ``run_id`` has read its whole segment: record the watched members absent from it who hold no code as
        owed one.  Returns how many were newly recorded (0 without a watch list: the first run)."""
        baseline = self.watch_baseline()
        if not baseline:
            return 0
        with self._transaction():
            cursor = self._db.execute(
                """UPDATE members SET owed_run = ?
                   WHERE watched_run = ? AND seen_run < ? AND owed_run IS NULL AND state <> 'done'""",
                (run_id, baseline, self.segment_of(run_id)),
            )
        return cursor.rowcount

    def record_watch_list(self, run_id: int) -> None:
        """Run ``run_id`` completed: its segment becomes the watch list the next run is compared with."""
        with self._transaction():
            self._db.execute(
                "UPDATE members SET watched_run = ? WHERE seen_run = ?", (run_id, self.segment_of(run_id))
            )
            self._db.execute(
                "INSERT INTO meta (key, value) VALUES ('watch_run', ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (str(run_id),),
            )

    def leaver_work(self, *, after_id: int, limit: int, retry_failed: bool = False) -> list[Member]:
        """Owed leavers still without a code, in the order they were first seen, after member ``after_id``."""
        states = (PENDING, SENDING, FAILED) if retry_failed else (PENDING, SENDING)
        marks = ",".join("?" * len(states))
        rows = self._db.execute(
            f"""SELECT id, identity, state, attempts, seen_seq, seen_row FROM members
                WHERE owed_run IS NOT NULL AND id > ? AND state IN ({marks})
                ORDER BY id LIMIT ?""",
            (after_id, *states, limit),
        ).fetchall()
        return [Member(*row) for row in rows]


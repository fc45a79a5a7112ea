"""CleverTap push state (h7-clevertap): which codes CleverTap confirmed holding.  A member needs pushing when it holds
a code and CleverTap has not confirmed holding that very code."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator

from .reports import JournalReports
from .rows import DONE


class PushState(JournalReports):
    """The CleverTap side of :class:`~distributor.journal.Journal`."""

    def unpushed(self, *, after_id: int, limit: int) -> list[tuple[int, str, str, float | None]]:
        """``(member_id, identity, code, expires_at)`` of members holding a code CleverTap has not confirmed."""
        return [
            (row[0], row[1], row[2], row[3])
            for row in self._db.execute(
                """SELECT m.id, m.identity, m.code, e.expires_at FROM members m
                   LEFT JOIN pushes p ON p.member_id = m.id LEFT JOIN code_expiry e ON e.member_id = m.id
                   WHERE m.state = 'done' AND m.id > ?
                     AND (p.member_id IS NULL OR p.state <> 'pushed' OR p.code <> m.code)
                   ORDER BY m.id LIMIT ?""",
                (after_id, limit),
            )
        ]

    def mark_pushed(self, items: Iterable[tuple[int, str]], attempts: int) -> None:
        """CleverTap confirmed holding these ``(member_id, code)``.  Commits."""
        now = time.time()
        with self._transaction():
            self._db.executemany(
                """INSERT INTO pushes (member_id, code, state, attempts, pushed_at, updated_at)
                   VALUES (?, ?, 'pushed', ?, ?, ?)
                   ON CONFLICT (member_id) DO UPDATE SET code = excluded.code, state = 'pushed',
                       attempts = pushes.attempts + excluded.attempts, error_code = NULL, error_message = NULL,
                       pushed_at = excluded.pushed_at, updated_at = excluded.updated_at""",
                [(member_id, code, attempts, now, now) for member_id, code in items],
            )

    def mark_push_failed(self, items: Iterable[tuple[int, str, int | None, str]], attempts: int) -> None:
        """CleverTap did not take these ``(member_id, code, error_code, message)`` for good.  Commits."""
        now = time.time()
        with self._transaction():
            self._db.executemany(
                """INSERT INTO pushes (member_id, code, state, attempts, error_code, error_message, updated_at)
                   VALUES (?, ?, 'failed', ?, ?, ?, ?)
                   ON CONFLICT (member_id) DO UPDATE SET code = excluded.code, state = 'failed',
                       attempts = pushes.attempts + excluded.attempts, error_code = excluded.error_code,
                       error_message = excluded.error_message, updated_at = excluded.updated_at""",
                [(member_id, code, attempts, code_, message, now) for member_id, code, code_, message in items],
            )

    def push_again(self) -> int:
        """``push --all``: forget what CleverTap confirmed, so every code is sent again.  Commits."""
        with self._transaction():
            return self._db.execute("UPDATE pushes SET state = 'again', updated_at = ?", (time.time(),)).rowcount

    def push_counts(self) -> dict[str, int]:
        """``pushed``, ``failed`` (final) and ``waiting`` among the members holding a code."""
        if not self._has_table("pushes") or self._db.execute("SELECT 1 FROM pushes LIMIT 1").fetchone() is None:
            # nothing pushed yet (or a read-only journal older than schema 6): every code is waiting
            return {"pushed": 0, "failed": 0, "waiting": self.state_counts()[DONE]}
        counts = {"pushed": 0, "failed": 0, "waiting": 0}
        for state, count in self._db.execute(
            """SELECT CASE WHEN p.code = m.code AND p.state IN ('pushed', 'failed') THEN p.state ELSE 'waiting' END,
                      count(*)
               FROM members m LEFT JOIN pushes p ON p.member_id = m.id WHERE m.state = 'done' GROUP BY 1"""
        ):
            counts[state] = count
        return counts

    def push_failures(self) -> Iterator[tuple[str, int, str, int | None, str | None, int]]:
        """``(identity, row, code, error_code, error_message, attempts)`` of each code CleverTap did not take."""
        if not self._has_table("pushes"):
            return
        yield from (
            (row[0], row[1], row[2], row[3], row[4], row[5])
            for row in self._db.execute(
                """SELECT m.identity, m.seen_row, m.code, p.error_code, p.error_message, p.attempts
                   FROM pushes p JOIN members m ON m.id = p.member_id
                   WHERE p.state = 'failed' AND p.code = m.code AND m.state = 'done' ORDER BY m.id"""
            )
        )


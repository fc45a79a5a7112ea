"""The journal's read-only queries: what ``status``, ``plan``, ``export`` and ``verify`` (and a run's own summary)
ask of it.

None of them writes to the journal file, so they work on a journal opened with ``readonly=True`` while a run is
writing to it (WAL: readers never block the writer).  They return typed rows (:mod:`.rows`), never ``sqlite3.Row``.
Counts come from the kept counts (``member_counts``, ``call_counts``, see :mod:`.schema`) — a read-only journal not
migrated yet is counted from its rows instead — and every other query walks an index, so ``status`` answers at
once on a journal of ten million members.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager

from .base import JournalBase
from .rows import (
    DONE,
    FAILED,
    MEMBER_COLUMNS,
    PENDING,
    RUN_COLUMNS,
    SENDING,
    CallRecord,
    Failure,
    LeftMember,
    MemberRecord,
    RecentFailure,
    RowLabel,
    Run,
    no_states,
)
from .schema import SKIPPED_EXAMPLES

#: The last id a query of runs "up to" may meet.
_NO_END = 2**62


class JournalReports(JournalBase):
    """The read side of :class:`~distributor.journal.Journal`."""

    # ------------------------------------------------------------------ runs
    def _runs(self, where: str = "", args: Sequence[object] = (), tail: str = "ORDER BY id") -> list[Run]:
        columns = RUN_COLUMNS if self._has_column("runs", "segment_run") else RUN_COLUMNS.replace(", segment_run", "")
        return [Run(*row) for row in self._db.execute(f"SELECT {columns} FROM runs {where} {tail}", tuple(args))]

    def runs(self) -> list[Run]:
        return self._runs()

    def latest_run(self, *, loaded: bool = False) -> Run | None:
        """The newest run; ``loaded``: the newest that read its whole segment (a run interrupted or refused while
        reading may have loaded only part of it, so its segment says nothing about who left)."""
        found = self._runs("WHERE loaded_at IS NOT NULL" if loaded else "", (), "ORDER BY id DESC LIMIT 1")
        return found[0] if found else None

    def recent_runs(self, limit: int) -> list[Run]:
        """The ``limit`` newest runs, newest first."""
        return self._runs("", (), f"ORDER BY id DESC LIMIT {int(limit)}")

    def last_finished_run(self, before: int) -> int:
        """The newest run before ``before`` that went through its whole segment (exit 0 or 1), or 0."""
        row = self._db.execute("SELECT max(id) FROM runs WHERE id < ? AND exit_code IN (0, 1)", (before,)).fetchone()
        return int(row[0] or 0)

    def run_started_at(self, run_id: int) -> float | None:
        row = self._db.execute("SELECT started_at FROM runs WHERE id = ?", (run_id,)).fetchone()
        return None if row is None else float(row[0])

    def delivered_through(self, before: int) -> int:
        """The newest run before ``before`` whose codes are all in a delta file already: one that recorded its end
        with an ``upload`` in its summary (its files were written), or — a journal of a version before delta
        files — one that went through its whole segment (exit 0 or 1), whose ``<name>.new.csv`` held them.  0 when
        there is none.  A run that died (or failed before writing its files) is not one: its codes go into the
        next run's delta."""
        rows = self._db.execute(
            "SELECT id, exit_code, summary FROM runs WHERE id < ? AND ended_at IS NOT NULL ORDER BY id DESC",
            (before,),
        )
        for run_id, exit_code, summary in rows:
            recorded = _summary_of(summary)
            if "upload" in recorded or ("files" in recorded and exit_code in (0, 1)):
                return int(run_id)
        return 0

    # ------------------------------------------------------------------ members, counted
    def state_counts(self, run_id: int | None = None) -> dict[str, int]:
        """Members by state; with ``run_id``, only the members of that run's segment."""
        counts = no_states()
        if self._counted():
            where, args = ("WHERE seen_run = ?", (self.segment_of(run_id),)) if run_id is not None else ("", ())
            rows = self._db.execute(f"SELECT state, sum(n) FROM member_counts {where} GROUP BY state", args)
        else:
            where, args = ("WHERE seen_run = ?", (run_id,)) if run_id is not None else ("", ())
            rows = self._db.execute(f"SELECT state, count(*) FROM members {where} GROUP BY state", args)
        counts.update({state: int(count) for state, count in rows})
        return counts

    def held_before(self, run_id: int) -> int:
        """Members of this run's segment that already held a code when the run started: those of its segment
        holding one, less those it saved itself (or a later run: walked on the index of codes by run)."""
        segment = self.segment_of(run_id)
        since = self._db.execute(  # +seen_run: walk the codes saved since (members_done), not the whole segment
            "SELECT count(*) FROM members WHERE state = 'done' AND done_run >= ? AND +seen_run = ?", (run_id, segment)
        ).fetchone()[0]
        return self.state_counts(run_id)[DONE] - int(since)

    def left_segment(self, run_id: int) -> int:
        """Members of earlier runs that are not in this run's segment (they are reported, never touched)."""
        segment = self.segment_of(run_id)
        table, count = ("member_counts", "sum(n)") if self._counted() else ("members", "count(*)")
        row = self._db.execute(f"SELECT {count} FROM {table} WHERE seen_run < ?", (segment,)).fetchone()
        return int(row[0] or 0)

    def left_holding_code(self, run_id: int) -> int:
        table, count = ("member_counts", "sum(n)") if self._counted() else ("members", "count(*)")
        row = self._db.execute(
            f"SELECT {count} FROM {table} WHERE seen_run < ? AND state = 'done'", (self.segment_of(run_id),)
        ).fetchone()
        return int(row[0] or 0)

    def entered(self, run_id: int) -> int:
        """Members first seen in run ``run_id`` (they entered the segment since the earlier runs)."""
        row = self._db.execute("SELECT count(*) FROM members WHERE first_run = ?", (run_id,)).fetchone()
        return int(row[0])

    def publication_history(self) -> tuple[int, int]:
        """``(publish and look-up calls, members that reached done or failed)`` over the journal's whole life."""
        if self._counted():
            calls = self._db.execute("SELECT sum(n) FROM call_counts WHERE kind IN ('publish', 'lookup')").fetchone()[0]
        else:
            calls = self._db.execute("SELECT count(*) FROM calls WHERE kind IN ('publish', 'lookup')").fetchone()[0]
        counts = self.state_counts()
        return int(calls or 0), counts[DONE] + counts[FAILED]

    def leaver_counts(self) -> dict[str, int]:
        """The leavers owed a code, by state (``done``: served)."""
        counts = no_states()
        counts.update(
            {state: n for state, n in self._db.execute(
                "SELECT state, count(*) FROM members WHERE owed_run IS NOT NULL GROUP BY state"
            )}
        )
        return counts

    def leavers_found(self, run_id: int) -> int:
        """Leavers run ``run_id`` found (recorded as owed a code)."""
        row = self._db.execute("SELECT count(*) FROM members WHERE owed_run = ?", (run_id,)).fetchone()
        return int(row[0])

    def watch_baseline(self) -> int:
        """The run whose segment is the watch list (the last complete run of a leavers distribution), or 0."""
        return int(self.meta("watch_run") or 0)

    # ------------------------------------------------------------------ members, listed
    def member(self, identity: str) -> MemberRecord | None:
        row = self._db.execute(f"SELECT {MEMBER_COLUMNS} FROM members WHERE identity = ?", (identity,)).fetchone()
        return None if row is None else MemberRecord(*row)

    def members_by_id(self, ids: Sequence[int]) -> list[MemberRecord]:
        """The members with these ids, in id order."""
        rows: list[MemberRecord] = []
        for start in range(0, len(ids), 500):
            chunk = list(ids[start : start + 500])
            marks = ",".join("?" * len(chunk))
            rows += [
                MemberRecord(*row)
                for row in self._db.execute(f"SELECT {MEMBER_COLUMNS} FROM members WHERE id IN ({marks})", chunk)
            ]
        return sorted(rows, key=lambda row: row.id)

    def published_member_ids(self) -> list[int]:
        """Members that hold a code or were ever sent a publication (Voucherify may hold one for them)."""
        return [int(row[0]) for row in self._db.execute(
            "SELECT id FROM members WHERE state = 'done' OR attempts > 0 ORDER BY id"
        )]

    def left_members(self, run_id: int) -> Iterator[LeftMember]:
        """Members of earlier runs absent from run ``run_id``'s segment: identity, state, code, and the run that
        last saw them (``seen_run``, ``seen_at``: its start, Unix time) — the last of the runs that shared the
        segment that held them, when later runs took an unchanged export over."""
        segment = self.segment_of(run_id)
        if self._has_column("runs", "segment_run"):
            last_seen = "(SELECT coalesce(segment_run, id) AS seg, max(id) AS last FROM runs GROUP BY 1)"
        else:
            last_seen = "(SELECT id AS seg, id AS last FROM runs)"
        for identity, state, code, seen_run, seen_at in self._db.execute(
            f"""SELECT m.identity, m.state, m.code, coalesce(s.last, m.seen_run), r.started_at
                FROM members m LEFT JOIN {last_seen} s ON s.seg = m.seen_run
                LEFT JOIN runs r ON r.id = coalesce(s.last, m.seen_run)
                WHERE m.seen_run < ? ORDER BY m.seen_run, m.seen_seq""",
            (segment,),
        ):
            yield LeftMember(identity, state, code, int(seen_run), seen_at)

    def codes(self) -> Iterator[tuple[str, str]]:
        """``(identity, code)`` of every member holding a code, in order of first appearance."""
        rows = self._db.execute("SELECT identity, code FROM members WHERE state = 'done' ORDER BY id")
        yield from ((identity, code) for identity, code in rows)

    def codes_published_after(self, run_id: int, *, through: int | None = None) -> Iterator[tuple[str, str]]:
        """``(identity, code)`` of the members who got their code in a run after ``run_id`` (and, with
        ``through``, no later than run ``through``), in order of first appearance."""
        last = through if through is not None else _NO_END
        rows = self._db.execute(
            "SELECT identity, code FROM members WHERE state = 'done' AND done_run > ? AND done_run <= ? ORDER BY id",
            (run_id, last),
        )
        yield from ((identity, code) for identity, code in rows)

    def codes_with_expiry(
        self, *, after_run: int = -1, through: int | None = None
    ) -> Iterator[tuple[str, str, float | None]]:
        """``(identity, code, expires_at)`` of every member holding a code — or, as :meth:`codes_published_after`,
        only those who got it in a run after ``after_run`` and no later than ``through`` — in order of first
        appearance."""
        last = through if through is not None else _NO_END
        yield from (
            (row[0], row[1], row[2])
            for row in self._db.execute(
                """SELECT m.identity, m.code, e.expires_at FROM members m LEFT JOIN code_expiry e ON e.member_id = m.id
                   WHERE m.state = 'done' AND (? < 0 OR (m.done_run > ? AND m.done_run <= ?)) ORDER BY m.id""",
                (after_run, after_run, last),
            )
        )

    def codes_between(self, run_id: int, since: float, until: float) -> int:
        """Codes saved by run ``run_id`` in ``(since, until]``."""
        row = self._db.execute(
            "SELECT count(*) FROM members WHERE state = 'done' AND done_run = ? AND updated_at > ? AND updated_at <= ?",
            (run_id, since, until),
        ).fetchone()
        return int(row[0])

    def failures(self) -> Iterator[Failure]:
        yield from (
            Failure(*row)
            for row in self._db.execute(
                """SELECT identity, seen_row, error_status, error_key, error_message, request_id, attempts
                   FROM members WHERE state = 'failed' ORDER BY id"""
            )
        )

    def recent_failures(self, limit: int) -> list[RecentFailure]:
        """The ``limit`` most recent failed members, newest first, with Voucherify's error fields."""
        return [
            RecentFailure(*row)
            for row in self._db.execute(
                """SELECT identity, seen_row, error_status, error_key, error_message, request_id, attempts, updated_at
                   FROM members WHERE state = 'failed' ORDER BY updated_at DESC, id DESC LIMIT ?""",
                (limit,),
            )
        ]

    # ------------------------------------------------------------------ calls
    def calls_since(self, since: float) -> list[float]:
        """Unix times of the calls logged after ``since`` (any run), oldest first."""
        return [float(row[0]) for row in self._db.execute("SELECT at FROM calls WHERE at > ? ORDER BY at", (since,))]

    def call_counts(self, run_id: int) -> dict[str, int]:
        table, count = ("call_counts", "sum(n)") if self._counted() else ("calls", "count(*)")
        rows = self._db.execute(f"SELECT kind, {count} FROM {table} WHERE run_id = ? GROUP BY kind", (run_id,))
        return {kind: int(count) for kind, count in rows}

    def call_span(self, run_id: int) -> tuple[float | None, float | None]:
        """Unix times of run ``run_id``'s first and last call."""
        if self._counted():
            row = self._db.execute("SELECT min(first_at), max(last_at) FROM call_counts WHERE run_id = ?", (run_id,))
        else:
            row = self._db.execute("SELECT min(at), max(at) FROM calls WHERE run_id = ?", (run_id,))
        first, last = row.fetchone()
        return first, last

    def calls_between(self, since: float, until: float, run_id: int | None = None) -> dict[str, int]:
        """Calls logged in ``(since, until]`` by kind (of one run, or of any)."""
        where, args = ("AND run_id = ?", (run_id,)) if run_id is not None else ("", ())
        rows = self._db.execute(
            f"SELECT kind, count(*) FROM calls WHERE at > ? AND at <= ? {where} GROUP BY kind", (since, until, *args)
        )
        return {kind: count for kind, count in rows}

    def call_records(self) -> Iterator[CallRecord]:
        """Every API call logged, oldest first, with the member's identity (``None`` for a campaign check)."""
        yield from (
            CallRecord(*row)
            for row in self._db.execute(
                """SELECT c.id, c.at, c.run_id, c.kind, m.identity, c.outcome, c.status, c.request_id
                   FROM calls c LEFT JOIN members m ON m.id = c.member_id ORDER BY c.at, c.id"""
            )
        )

    # ------------------------------------------------------------------ skipped rows
    def skipped(self, run_id: int) -> Iterator[tuple[RowLabel, str, str, str]]:
        """``(row, value, reason, detail)`` of the rows this run's segment skipped, in file order, as far as they
        are kept; then, for a reason with more rows than were kept, one line ``("", "", reason, "N more …")``
        saying how many are not listed."""
        for row, value, reason, detail in self._db.execute(
            "SELECT row, value, reason, detail FROM skipped WHERE run_id = ? ORDER BY rowid", (run_id,)
        ):
            yield row, value, reason, detail
        listed = dict(
            self._db.execute("SELECT reason, count(*) FROM skipped WHERE run_id = ? GROUP BY reason", (run_id,))
        )
        for reason, count in sorted(self.skipped_counts(run_id).items()):
            unlisted = count - listed.get(reason, 0)
            if unlisted > 0:
                detail = (
                    f"{unlisted:,} more rows not listed: only the first {SKIPPED_EXAMPLES:,} of each reason are kept"
                )
                yield "", "", reason, detail

    def skipped_unlisted(self, run_id: int) -> int:
        """Skipped rows of this run's segment counted but not kept as examples (not listed in the report)."""
        listed = self._db.execute("SELECT count(*) FROM skipped WHERE run_id = ?", (run_id,)).fetchone()[0]
        return sum(self.skipped_counts(run_id).values()) - int(listed)

    def skipped_counts(self, run_id: int) -> dict[str, int]:
        """Every skipped row of this run's segment, counted by reason (listed or not)."""
        if not self._has_table("skipped_counts"):  # an older journal opened read-only: not migrated yet
            rows = self._db.execute("SELECT reason, count(*) FROM skipped WHERE run_id = ? GROUP BY reason", (run_id,))
        else:
            rows = self._db.execute("SELECT reason, count FROM skipped_counts WHERE run_id = ?", (run_id,))
        return {reason: count for reason, count in rows}

    # ------------------------------------------------------------------ `distributor plan`
    def compare_segment(self, identities: Iterable[str]) -> dict[str, int]:
        """How a segment's distinct ``identities`` stand in this journal, without writing to it.

        Returns the count per state of those already known (``pending``, ``sending``, ``done``, ``failed``), ``new``
        (unknown to the journal) and ``left`` (known, but not in ``identities``).  The identities go to a TEMP table,
        which lives outside the journal file (so this works on a read-only journal) and is dropped afterwards.
        """
        with self._plan_segment(identities):
            counts = {PENDING: 0, SENDING: 0, DONE: 0, FAILED: 0, "new": 0}
            with self.snapshot():
                for state, count in self._db.execute(
                    """SELECT m.state, count(*) FROM temp.plan_segment s
                       LEFT JOIN members m ON m.identity = s.identity GROUP BY m.state"""
                ):
                    counts["new" if state is None else state] = count
                counts["left"] = self._db.execute(
                    """SELECT count(*) FROM members m
                       WHERE NOT EXISTS (SELECT 1 FROM temp.plan_segment s WHERE s.identity = m.identity)"""
                ).fetchone()[0]
        return counts

    def compare_leavers(self, identities: Iterable[str]) -> dict[str, int]:
        """What a leavers run with a segment of ``identities`` would find, without writing to the journal:
        ``leaving`` (watched members absent from it, holding no code, not yet owed one), ``owed`` (recorded earlier
        and still without a code), ``failed`` (owed, refused before) and ``baseline`` (the watch list's run, 0: none
        yet, the run would record it)."""
        baseline = self.watch_baseline()
        with self._plan_segment(identities), self.snapshot():
            leaving = self._db.execute(
                """SELECT count(*) FROM members m
                   WHERE m.watched_run = ? AND m.owed_run IS NULL AND m.state <> 'done'
                     AND NOT EXISTS (SELECT 1 FROM temp.plan_segment s WHERE s.identity = m.identity)""",
                (baseline,),
            ).fetchone()[0] if baseline else 0
            owed = self.leaver_counts()
        return {
            "leaving": int(leaving),
            "owed": owed[PENDING] + owed[SENDING],
            "failed": owed[FAILED],
            "baseline": baseline,
        }

    @contextmanager
    def _plan_segment(self, identities: Iterable[str]) -> Iterator[None]:
        """The identities in a TEMP table ``plan_segment`` for the block (outside the journal file, so this works on
        a read-only journal), dropped afterwards."""
        self._db.execute("CREATE TEMP TABLE IF NOT EXISTS plan_segment (identity TEXT PRIMARY KEY)")
        try:
            self._db.execute("DELETE FROM temp.plan_segment")
            self._db.execute("BEGIN")
            batch: list[tuple[str]] = []
            for identity in identities:
                batch.append((identity,))
                if len(batch) >= 10_000:
                    self._db.executemany("INSERT OR IGNORE INTO temp.plan_segment VALUES (?)", batch)
                    batch = []
            self._db.executemany("INSERT OR IGNORE INTO temp.plan_segment VALUES (?)", batch)
            self._db.execute("COMMIT")
            yield
        finally:
            self._db.execute("DROP TABLE IF EXISTS temp.plan_segment")


def _summary_of(text: str | None) -> dict[str, object]:
    """A run's summary as recorded in ``runs.summary`` (``{}`` when absent or unreadable)."""
    try:
        summary = json.loads(text or "{}")
    except ValueError:
        return {}
    return summary if isinstance(summary, dict) else {}

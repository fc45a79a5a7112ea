"""Loading a segment into the journal: members in batches, the skipped rows, and an export loaded whole taken over
by a later run given the same file (issue 13.1)."""

from __future__ import annotations

import json
import operator
import time
from collections.abc import Iterable, Sequence
from itertools import compress
from operator import itemgetter

from .reports import JournalReports
from .rows import LoadedSegment, LoadResult, RowLabel
from .schema import SKIPPED_EXAMPLES

#: The meta key of the export loaded whole last: ``{"fingerprint": …, "run": the run that read it}``.
_LOADED_EXPORT = "loaded_export"


class SegmentIntake(JournalReports):
    """The segment side of :class:`~distributor.journal.Journal`."""

    def load(self, run_id: int, rows: Sequence[tuple[int, RowLabel, str]]) -> LoadResult:
        """Record one batch of valid segment rows ``(seq, row, identity)`` as members of ``run_id``.

        New identities become ``pending`` members; known ones (from earlier runs) are marked as seen in this run
        and keep their state and code; an identity seen earlier *in this run* is a duplicate, returned to be
        reported.  One transaction per batch, set-based: the batch goes to SQLite as one JSON array of the rows as
        they are (no per-row Python), inserted in one statement in file order (``ON CONFLICT DO NOTHING RETURNING
        seen_seq`` says which rows were new: the first of each identity); only the others are looked up (CROSS
        JOIN makes SQLite walk them and probe the UNIQUE index), and the returning members' new place is one
        ``executemany``.  One statement, not an ``executemany`` of the rows: SQLite runs it without the GIL, so the
        write-behind thread overlaps the reader, where a statement per row would hand the GIL back and forth.  The
        count of new members is added in the same transaction; the trigger moves those of returning ones.
        """
        with self._transaction():
            self._db.execute("DELETE FROM meta WHERE key = ?", (_LOADED_EXPORT,))  # the members are changing
            inserted = self._db.execute(
                """INSERT INTO members (identity, first_run, seen_run, seen_seq, seen_row, updated_at)
                   SELECT j.value ->> 2, ?1, ?1, j.value ->> 0, j.value ->> 1, ?2 FROM json_each(?3) AS j WHERE true
                   ON CONFLICT (identity) DO NOTHING RETURNING seen_seq""",
                (run_id, time.time(), json.dumps(rows, ensure_ascii=False, check_circular=False)),
            ).fetchall()
            added = len(inserted)
            duplicates = self._seen_again(run_id, rows, inserted) if added < len(rows) else []
            if added:
                self._db.execute(
                    """INSERT INTO member_counts (seen_run, state, n) VALUES (?, 'pending', ?)
                       ON CONFLICT (seen_run, state) DO UPDATE SET n = n + excluded.n""",
                    (run_id, added),
                )
        return LoadResult(added, duplicates)

    def _seen_again(
        self, run_id: int, rows: Sequence[tuple[int, RowLabel, str]], inserted: list[tuple[int]]
    ) -> list[tuple[RowLabel, str, RowLabel]]:
        """The rows of a batch that :meth:`load` did not insert, in file order: a member known from an earlier run
        is moved to this run (one ``executemany``); one already seen in this run is a duplicate, returned as
        ``(row, identity, its first row)``."""
        new = set(map(itemgetter(0), inserted))
        others = list(compress(rows, map(operator.not_, map(new.__contains__, map(itemgetter(0), rows)))))
        known: dict[str, tuple[int, RowLabel, int]] = {
            identity: (seen_run, seen_row, member_id)
            for identity, seen_run, seen_row, member_id in self._db.execute(
                """SELECT m.identity, m.seen_run, m.seen_row, m.id
                   FROM json_each(?) AS j CROSS JOIN members AS m ON m.identity = j.value""",
                (json.dumps(sorted({identity for _, _, identity in others})),),
            )
        }
        duplicates: list[tuple[RowLabel, str, RowLabel]] = []
        returning: list[tuple[int, int, RowLabel, int]] = []
        for seq, row, identity in others:
            seen_run, seen_row, member_id = known[identity]
            if seen_run == run_id:  # already seen in this very run (this batch included): a duplicate row
                duplicates.append((row, identity, seen_row))
            else:
                returning.append((run_id, seq, row, member_id))
                known[identity] = (run_id, row, member_id)
        self._db.executemany("UPDATE members SET seen_run = ?, seen_seq = ?, seen_row = ? WHERE id = ?", returning)
        return duplicates

    def already_loaded(self, fingerprint: str) -> LoadedSegment | None:
        """The segment this journal loaded whole from the export of this ``fingerprint``
        (:func:`~distributor.journal.fingerprint.export_fingerprint`), if it is the last export loaded and no run
        has loaded rows since; else ``None`` (the export must be read)."""
        recorded = _json_object(self.meta(_LOADED_EXPORT))
        run = recorded.get("run")
        if recorded.get("fingerprint") != fingerprint or not isinstance(run, int):
            return None
        found = self._db.execute("SELECT sum(n) FROM member_counts WHERE seen_run = ?", (run,)).fetchone()[0]
        members, skipped = int(found or 0), self.skipped_counts(run)
        return LoadedSegment(run=run, rows=members + sum(skipped.values()), members=members, skipped=skipped)

    def adopt_load(self, run_id: int, loaded: LoadedSegment) -> None:
        """Run ``run_id``'s segment is ``loaded`` (:meth:`already_loaded`): take it over without touching a member
        (its members stay marked as seen by ``loaded.run``; the reports follow ``runs.segment_run``), copy its
        skipped rows and counts, and mark the run loaded.  One transaction."""
        with self._transaction():
            self._db.execute(
                "UPDATE runs SET segment_run = ?, loaded_at = ? WHERE id = ?", (loaded.run, time.time(), run_id)
            )
            self._db.execute(
                """INSERT INTO skipped (run_id, row, value, reason, detail)
                   SELECT ?, row, value, reason, detail FROM skipped WHERE run_id = ? ORDER BY rowid""",
                (run_id, loaded.run),
            )
            self._db.execute(
                """INSERT OR REPLACE INTO skipped_counts (run_id, reason, count)
                   SELECT ?, reason, count FROM skipped_counts WHERE run_id = ?""",
                (run_id, loaded.run),
            )

    def record_loaded(self, run_id: int, fingerprint: str) -> None:
        """Run ``run_id`` has read the export of this ``fingerprint`` whole (and marked itself loaded): a later run
        given the same file may take its segment over (:meth:`already_loaded`)."""
        self.set_meta(**{_LOADED_EXPORT: json.dumps({"fingerprint": fingerprint, "run": self.segment_of(run_id)})})

    def record_skipped(self, run_id: int, rows: Iterable[tuple[RowLabel, str, str, str]]) -> None:
        """Count invalid or duplicate rows ``(row, value, reason, detail)`` of this run's segment, given in file
        order, and keep the first :data:`SKIPPED_EXAMPLES` of each reason as examples.  One transaction."""
        with self._transaction():
            counts = dict(
                self._db.execute("SELECT reason, count FROM skipped_counts WHERE run_id = ?", (run_id,)).fetchall()
            )
            kept: list[tuple[RowLabel, str, str, str]] = []
            for row in rows:
                reason = row[2]
                if counts.get(reason, 0) < SKIPPED_EXAMPLES:
                    kept.append(row)
                counts[reason] = counts.get(reason, 0) + 1
            self._db.executemany(
                "INSERT INTO skipped (run_id, row, value, reason, detail) VALUES (?, ?, ?, ?, ?)",
                [(run_id, *row) for row in kept],
            )
            self._db.executemany(
                "INSERT OR REPLACE INTO skipped_counts (run_id, reason, count) VALUES (?, ?, ?)",
                [(run_id, reason, count) for reason, count in counts.items()],
            )


def _json_object(text: str | None) -> dict[str, object]:
    try:
        value = json.loads(text or "{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}



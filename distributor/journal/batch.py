"""Several calls' and answers' writes in one commit (issue 13.3): the calls about to be sent, how earlier calls
ended, and the codes that arrived — a run groups what becomes ready together, so a publication costs a share of a
commit, not three commits.

The journal's guarantees hold per row, not per commit: a call's row (and its member ``sending`` with its key) is
committed before the call is sent, whatever else shares that commit; an answer is committed later, with others.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from .base import JournalBase


@dataclass(frozen=True)
class NewCall:
    """An API call about to be sent (``member_id``: the member it is about; a publication marks it ``sending``
    and pins its key ``source_id`` unless it has one)."""

    run_id: int
    kind: str
    member_id: int | None
    at: float
    source_id: str | None = None


@dataclass(frozen=True)
class CallOutcome:
    """How call ``call_id`` ended: ``outcome`` (``ok``, ``refused``, ``timeout``, …), HTTP ``status``,
    Voucherify's ``request_id``."""

    call_id: int
    outcome: str
    status: int | None
    request_id: str | None


@dataclass(frozen=True)
class SavedCode:
    """The code Voucherify holds for a member (and when it expires, if it does), saved by run ``run_id``."""

    member_id: int
    run_id: int
    code: str
    publication_id: str | None
    expires_at: float | None = None
    at: float = field(default_factory=time.time)


@dataclass
class Batch:
    """Writes waiting for one commit."""

    calls: list[NewCall] = field(default_factory=list)
    outcomes: list[CallOutcome] = field(default_factory=list)
    codes: list[SavedCode] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.calls or self.outcomes or self.codes)

    @property
    def answers(self) -> int:
        """Outcomes and codes waiting: what may wait for a group commit."""
        return len(self.outcomes) + len(self.codes)


class BatchWriter(JournalBase):
    """The writes on a publication's path, any number in one transaction."""

    def write_batch(self, batch: Batch) -> list[int]:
        """Commit ``batch`` in one transaction; returns the ids of its new calls, in order.

        The answers go first (a code is never overwritten by a member marked ``sending``), then the new calls:
        their ids are given here (the journal has one writer, its lock holder), so the rows go in with one
        prepared statement each, not one round trip per row.
        """
        with self._transaction():
            self._write_answers(batch.outcomes, batch.codes)
            return self._write_calls(batch.calls)

    def _write_answers(self, outcomes: list[CallOutcome], codes: list[SavedCode]) -> None:
        if outcomes:
            self._db.executemany(
                "UPDATE calls SET outcome = ?, status = ?, request_id = ? WHERE id = ?",
                [(each.outcome, each.status, each.request_id, each.call_id) for each in outcomes],
            )
        expiring = [(each.member_id, each.expires_at) for each in codes if each.expires_at is not None]
        if expiring:  # h7-clevertap: --expiry-property
            self._db.executemany("INSERT OR REPLACE INTO code_expiry (member_id, expires_at) VALUES (?, ?)", expiring)
        if codes:
            self._db.executemany(
                """UPDATE members SET state = 'done', code = ?, publication_id = ?, done_run = ?,
                       error_status = NULL, error_key = NULL, error_message = NULL, request_id = NULL, updated_at = ?
                   WHERE id = ?""",
                [(each.code, each.publication_id, each.run_id, each.at, each.member_id) for each in codes],
            )

    def _write_calls(self, calls: list[NewCall]) -> list[int]:
        if not calls:
            return []
        (first,) = self._db.execute("SELECT coalesce(max(id), 0) + 1 FROM calls").fetchone()
        ids = list(range(int(first), int(first) + len(calls)))
        self._db.executemany(
            "INSERT INTO calls (id, run_id, at, kind, member_id) VALUES (?, ?, ?, ?, ?)",
            [
                (call_id, each.run_id, each.at, each.kind, each.member_id)
                for call_id, each in zip(ids, calls, strict=True)
            ],
        )
        publications = [
            (each.at, each.source_id, each.member_id)
            for each in calls
            if each.kind == "publish" and each.member_id is not None
        ]
        if publications:
            self._db.executemany(
                """UPDATE members SET state = 'sending', attempts = attempts + 1, updated_at = ?,
                       source_id = coalesce(source_id, ?)
                   WHERE id = ? AND state <> 'done'""",
                publications,
            )
        return ids

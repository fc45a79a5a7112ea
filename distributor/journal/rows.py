"""What the journal hands out: member states and typed rows (never a ``sqlite3.Row`` read by string keys).

Each row type names its fields; ``row.field`` is how the package reads them.  ``row["field"]`` still works (see
:class:`Fields`) for callers written when the journal returned ``sqlite3.Row``.
"""

from __future__ import annotations

from dataclasses import dataclass

#: A row of the segment as messages and reports name it: its number, or ``file:number`` in a segment of several
#: parts (stored as TEXT in the INTEGER columns ``seen_row`` and ``skipped.row``, which SQLite allows).
RowLabel = int | str

PENDING = "pending"
SENDING = "sending"
DONE = "done"
FAILED = "failed"
#: Every member state, in the order reports list them.
STATES = (PENDING, SENDING, DONE, FAILED)


class Fields:
    """``row["name"]``: the field ``name`` of a typed row — what callers of the ``sqlite3.Row`` era wrote."""

    __slots__ = ()

    def __getitem__(self, name: str) -> object:
        return getattr(self, name)


def no_states() -> dict[str, int]:
    """A count per member state, all zero."""
    return dict.fromkeys(STATES, 0)


@dataclass(frozen=True)
class Member:
    """A member to serve: what a run needs to publish to it."""

    id: int
    identity: str
    state: str
    attempts: int
    seen_seq: int
    seen_row: RowLabel
    #: the publication ``source_id`` of its first call; ``None`` until a call was logged
    source_id: str | None = None


@dataclass(frozen=True)
class MemberRecord(Fields):
    """A member's whole row in the journal."""

    id: int
    identity: str
    state: str
    code: str | None
    publication_id: str | None
    attempts: int
    error_status: int | None
    error_key: str | None
    error_message: str | None
    request_id: str | None
    first_run: int
    seen_run: int
    seen_seq: int
    seen_row: RowLabel
    done_run: int | None
    updated_at: float
    watched_run: int | None
    owed_run: int | None
    source_id: str | None


#: The columns of :class:`MemberRecord`, in its order (for ``SELECT``).
MEMBER_COLUMNS = ", ".join(MemberRecord.__dataclass_fields__)


@dataclass(frozen=True)
class LoadResult:
    """What one batch of segment rows did to the journal."""

    added: int
    #: rows whose identity appeared earlier in the same segment: ``(row, identity, first_row)``
    duplicates: list[tuple[RowLabel, str, RowLabel]]


@dataclass(frozen=True)
class LoadedSegment:
    """A segment export the journal has loaded whole already (see :meth:`Journal.already_loaded`)."""

    #: the run that read it (its members are those with ``seen_run`` = this run)
    run: int
    #: rows read (every row is either a member or a skipped row)
    rows: int
    #: valid distinct members
    members: int
    #: skipped rows by reason
    skipped: dict[str, int]


@dataclass(frozen=True)
class Failure:
    """A member Voucherify refused, with its error fields as the errors report shows them."""

    identity: str
    row: RowLabel
    status: int | None
    key: str | None
    message: str | None
    request_id: str | None
    attempts: int


@dataclass(frozen=True)
class RecentFailure(Fields, Failure):
    """A :class:`Failure` and when it failed (``at``, Unix time)."""

    at: float


@dataclass(frozen=True)
class Run(Fields):
    """One run as ``runs`` records it."""

    id: int
    started_at: float
    ended_at: float | None
    pid: int
    segment: str | None
    exit_code: int | None
    reason: str | None
    summary: str | None
    #: when the run had read its whole segment (``None``: interrupted while reading)
    loaded_at: float | None
    #: the run whose loaded segment this run took over because its export was the same file (``None``: it read
    #: its own)
    segment_run: int | None = None


#: The columns of :class:`Run`, in its order (for ``SELECT``).
RUN_COLUMNS = ", ".join(Run.__dataclass_fields__)


@dataclass(frozen=True)
class LeftMember(Fields):
    """A member of earlier runs absent from a run's segment, and the last run that saw it (``seen_at``: its start)."""

    identity: str
    state: str
    code: str | None
    seen_run: int
    seen_at: float | None


@dataclass(frozen=True)
class CallRecord(Fields):
    """One API call as logged: ``identity`` is ``None`` for a campaign check, ``outcome`` until an answer came."""

    id: int
    at: float
    run_id: int
    kind: str
    identity: str | None
    outcome: str | None
    status: int | None
    request_id: str | None

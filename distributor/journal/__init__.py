"""The journal: one distribution's SQLite file, the source of truth of who got which code.

* :mod:`.writer` — :class:`Journal`, opened per process (and locked by a run): runs, each call logged before it is
  sent, each code saved when it arrives; it is made of
  :mod:`.intake` (the segment loaded in batches, an unchanged export taken over), :mod:`.leavers` (the watch list
  and the leavers owed a code), :mod:`.pushes` (CleverTap's push state), :mod:`.reports` (the read-only queries of
  ``status``, ``plan``, ``export``, ``verify`` and the run's summary) and :mod:`.base` (transactions, ``meta``);
* :mod:`.batch` — several calls' and answers' writes in one commit (a run's group commits);
* :mod:`.rows` — the states and typed rows the queries return;
* :mod:`.schema` — tables, kept counts and migrations; :mod:`.lock` — one process at a time;
* :mod:`.fingerprint` — telling that an export is the one loaded already, so a rerun does not read it again;
* :mod:`.pipeline` — a batch written while the next is read.
"""

from .fingerprint import export_fingerprint
from .lock import holder as lock_holder
from .pipeline import WriteBehind
from .rows import (
    DONE,
    FAILED,
    PENDING,
    SENDING,
    STATES,
    CallRecord,
    Failure,
    LeftMember,
    LoadedSegment,
    LoadResult,
    Member,
    MemberRecord,
    RecentFailure,
    RowLabel,
    Run,
)
from .schema import SCHEMA_VERSION, SKIPPED_EXAMPLES
from .writer import Journal

__all__ = [
    "DONE",
    "FAILED",
    "PENDING",
    "SCHEMA_VERSION",
    "SENDING",
    "SKIPPED_EXAMPLES",
    "STATES",
    "CallRecord",
    "Failure",
    "Journal",
    "LeftMember",
    "LoadResult",
    "LoadedSegment",
    "Member",
    "MemberRecord",
    "RecentFailure",
    "RowLabel",
    "Run",
    "WriteBehind",
    "export_fingerprint",
    "lock_holder",
]

"""Loading a segment export into the journal: CleverTap's identity rules, de-duplication, the skipped rows.

Every row of the export ends up in exactly one place: a member of this run's segment (new, or known from an earlier
run), or a skipped row with its reason (an identity CleverTap would refuse, or one that appeared earlier in the
segment, in any of its parts).  Skipped rows are counted, and only the first of each reason kept as examples (see
:meth:`Journal.record_skipped`), so a file of millions of blank or repeated lines costs a few journal rows.
Batches are committed one by one; the run is marked *loaded* only once the whole file is read, so a run
interrupted while reading never passes its partial segment off as the whole.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from itertools import chain
from typing import TypeVar

from ..journal import Journal, WriteBehind, export_fingerprint
from . import identities
from .reader import RowLabel, Segment, refuse_unusable

_T = TypeVar("_T")
#: ``(seq, row, identity)``: a valid member, its position in the segment and its row in the file.
Valid = tuple[int, RowLabel, str]
#: ``(row, value, reason, detail)``: a row that is not published.
Skipped = tuple[RowLabel, str, str, str]


@dataclass
class Loaded:
    rows: int = 0
    #: valid distinct members of this run's segment
    members: int = 0
    #: skipped rows by reason (``empty``, ``placeholder``, ``too_long``, ``duplicate``, …)
    skipped: Counter[str] = field(default_factory=Counter)


def validated_batches(segment: Segment, size: int) -> Iterator[tuple[int, list[Valid], list[Skipped]]]:
    """``(rows in the batch, valid members, invalid rows)`` per batch, in file order.  Judged a batch at a time
    (:func:`identities.invalid_rows`), the valid rows kept as the slices between the invalid ones: no Python step
    per valid row."""
    seq = 0
    for labels, values in segment.rows(size):
        invalid = identities.invalid_rows(values)
        # a lone surrogate has no UTF-8 form: the report spells it out instead
        skipped = [(labels[at], identities.storable(values[at]), reason, "") for at, reason in invalid]
        kept_labels, kept_values = _between(labels, invalid), _between(values, invalid)
        valid = list(zip(range(seq + 1, seq + 1 + len(kept_values)), kept_labels, kept_values, strict=True))
        seq += len(kept_values)
        yield len(values), valid, skipped


def _between(items: Sequence[_T], invalid: list[tuple[int, str]]) -> Sequence[_T]:
    """``items`` without those at the ``invalid`` positions (sorted)."""
    if not invalid:
        return items
    starts = [0, *(at + 1 for at, _ in invalid)]
    ends = [at for at, _ in invalid] + [len(items)]
    return list(chain.from_iterable(items[start:end] for start, end in zip(starts, ends, strict=True)))


def _record(journal: Journal, run_id: int, valid: list[Valid], skipped: list[Skipped], counts: Counter[str]) -> None:
    """h11-journal-perf: one batch into the journal — its members, then its invalid and duplicate rows — in the
    write-behind thread (the loop's body before)."""
    result = journal.load(run_id, valid)
    skipped += [(row, value, identities.DUPLICATE, f"first at row {first}") for row, value, first in result.duplicates]
    journal.record_skipped(run_id, _in_file_order(skipped))
    counts.update(reason for _, _, reason, _ in skipped)


def _in_file_order(skipped: list[Skipped]) -> list[Skipped]:
    """The batch's invalid and duplicate rows merged back into file order (a batch never spans two parts)."""
    return sorted(skipped, key=lambda row: _row_number(row[0]))


def _row_number(label: RowLabel) -> int:
    return label if isinstance(label, int) else int(label.rpartition(":")[2])


def load_segment(
    journal: Journal,
    run_id: int,
    segment: Segment,
    *,
    batch_size: int = 20_000,
    interrupted: Callable[[], bool] = lambda: False,
) -> Loaded | None:
    """Read ``segment`` whole into ``journal`` as run ``run_id``'s segment.

    Returns what was loaded, or ``None`` when ``interrupted()`` said to stop before the end.  Raises
    :class:`~distributor.errors.InputError` for a file that cannot be read exactly, has no rows, or has no usable
    identity.
    """
    # h11-journal-perf (issue 13.1): the export this journal loaded whole last is taken over, not read again
    fingerprint = _fingerprint(segment)
    known = journal.already_loaded(fingerprint) if fingerprint else None
    if known is not None:
        journal.adopt_load(run_id, known)
        return Loaded(rows=known.rows, members=known.members, skipped=Counter(known.skipped))
    # end h11-journal-perf
    loaded = Loaded()
    with WriteBehind() as writes:  # h11-journal-perf (13.2): a batch is written while the next is read
        for rows, valid, skipped in validated_batches(segment, batch_size):
            if interrupted():
                return None
            loaded.rows += rows
            writes.submit(partial(_record, journal, run_id, valid, skipped, loaded.skipped))
    loaded.members = sum(journal.state_counts(run_id).values())
    refuse_unusable(segment, rows=loaded.rows, members=loaded.members, skipped=loaded.skipped)
    journal.mark_loaded(run_id)
    if fingerprint:  # h11-journal-perf: a rerun given this same export takes this segment over
        journal.record_loaded(run_id, fingerprint)
    return loaded


def _fingerprint(segment: Segment) -> str | None:
    """h11-journal-perf: the export's fingerprint (:func:`~distributor.journal.export_fingerprint`) with how it is
    read; ``None`` when a part cannot be looked at (the export is then read, and says why it cannot be)."""
    reading = f"{segment.format}|{segment.delimiter}|{segment.id_column}|{segment.key}"
    try:
        return export_fingerprint([part.path for part in segment.parts], reading=reading)
    except OSError:
        return None

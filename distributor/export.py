"""The CleverTap files, rewritten from the journal: after every run, and on demand (``distributor export``).

The journal is the source of truth; these files are views of it, so they can be rewritten at any time — also
while a run is going: everything is read in one consistent snapshot of the journal, inside the files' lock
(``outputs.files_lock``), and every file is written to a temporary name and renamed (``outputs.atomic_write``), so
a reader never sees half a file and the files always hold the newest snapshot written.

Beside ``<name>.csv`` (every member holding a code) a segment-update schedule needs two more views:

* ``<name>.new.<YYYY-MM-DD>.run<N>.csv`` — run N's *delta*: the codes run N published, plus those of earlier runs
  that died before writing their own delta (kill -9, a crash).  Named after the run's UTC start date and id, it is
  written by run N (and by ``export``, identically, from the journal) and by no later run, so reruns on the same
  day, catch-up runs and interrupted runs never take a code out of the hand-off.  A run with no such code writes
  none.  Each delta is uploaded once, with ``<name>.manifest.json`` (one manifest fits every delta).
* ``<name>.left.csv`` — members of earlier runs who are no longer in the latest segment.  They keep their code and
  are never touched; this is a report for the marketer, not a file to upload.

``distributor export --calls`` writes instead ``<name>.calls.csv``: every API call the journal logged (when, which
member, which endpoint, how it ended, Voucherify's request id), the counterpart of Voucherify's own audit log.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

from . import outputs
from .config import DEFAULT_PROPERTY
from .errors import JournalError
from .files import HandOffSettings
from .journal import Journal
from .layout import Layout

log = logging.getLogger("distributor")

_Item = TypeVar("_Item")


@dataclass(frozen=True)
class _Upload:
    """The upload's shape: its files, the key column, the code's property and the expiry's (if any)."""

    layout: Layout
    key: str
    property_name: str
    expiry_property: str | None


@dataclass(frozen=True)
class Exported:
    files: dict[str, Path]
    codes: int
    errors: int
    skipped: int
    #: codes in the delta file (``files["delta"]``, absent when there are none)
    new_codes: int = 0
    #: members in ``<name>.left.csv``
    left: int = 0
    #: the run whose segment the skipped and left reports describe
    run_id: int = 0
    #: the run whose delta was written (or had no code to write)
    delta_run: int = 0
    #: the delta holds the codes published after this run (0: since the start)
    delta_since_run: int = 0


#: The endpoint each kind of logged call went to.
CALL_ENDPOINTS = {
    "publish": "POST /v1/publications",
    "lookup": "GET /v1/publications",
    "campaign": "GET /v1/campaigns/{id}",
}
#: A call whose answer was never recorded: cut by a stop or a kill, or logged by a journal older than schema 3.
UNKNOWN_OUTCOME = "unknown"


def export_calls(config: HandOffSettings, journal: Journal) -> tuple[Path, int]:
    """``distributor export --calls``: write ``<name>.calls.csv`` from one snapshot of the journal; returns the path
    and the number of calls.  Columns: ``at`` (UTC, ISO 8601, milliseconds), ``run``, the member's identity (the
    journal's key column; empty for a campaign check), ``kind``, ``endpoint``, ``outcome`` (``ok``, ``refused``,
    ``rate_limited``, ``server_error``, ``timeout``, ``connection``, … or ``unknown``), ``http_status`` and
    ``request_id`` (when Voucherify's answer gave one)."""
    path = config.layout.calls
    key = journal.meta("key") or "identity"
    with journal.snapshot():
        count = outputs.write_report(
            path,
            ["at", "run", key, "kind", "endpoint", "outcome", "http_status", "request_id"],
            (
                (
                    datetime.fromtimestamp(call.at, UTC).isoformat(timespec="milliseconds"),
                    call.run_id,
                    call.identity or "",
                    call.kind,
                    CALL_ENDPOINTS.get(call.kind, call.kind),
                    call.outcome or UNKNOWN_OUTCOME,
                    call.status,
                    call.request_id or "",
                )
                for call in journal.call_records()
            ),
        )
    return path, count


def export_files(
    config: HandOffSettings,
    journal: Journal,
    *,
    run_id: int,
    delta_run: int,
    key: str,
    property_name: str | None = None,
) -> Exported:
    """Write the codes CSV, the manifest, the errors report, run ``run_id``'s skipped-rows report, run
    ``delta_run``'s delta file, and the members who left the segment — all from one snapshot of the journal.
    The code's column is ``property_name``, else the configuration's.

    The caller holds ``outputs.files_lock(config.layout.output)``: reading the snapshot and writing happen under it.
    """
    upload = _Upload(config.layout, key, property_name or config.property_name, config.expiry_property)
    formula_like = _Tally()
    with journal.snapshot():
        codes = _write_codes(upload, journal, upload.layout.output)
        outputs.write_manifest(
            upload.layout.manifest, key=key, property=upload.property_name, expiry_property=upload.expiry_property
        )
        errors = outputs.write_errors(
            config.layout.errors, formula_like.watch(journal.failures(), lambda failure: failure.identity), key=key
        )
        outputs.write_skipped(config.layout.skipped, formula_like.watch(journal.skipped(run_id), lambda row: row[1]))
        skipped = sum(journal.skipped_counts(run_id).values())  # every skipped row, listed in the report or not
        since = journal.delivered_through(before=delta_run)
        delta = _write_delta(upload, journal, delta_run, since)
        left = _write_left(config.layout.left, journal, run_id, key=key, tally=formula_like)
    if formula_like.count:
        log.warning(
            "%d identities in the reports for people (errors, skipped, left) start with =, +, -, @, a tab or a "
            "carriage return: those reports prefix them with ' so a spreadsheet shows them instead of running "
            "them; %s keeps them exact", formula_like.count, config.layout.output.name,
        )
    files = {
        "codes": config.layout.output,
        "manifest": config.layout.manifest,
        "errors": config.layout.errors,
        "skipped": config.layout.skipped,
        "left": config.layout.left,
    }
    new_codes = 0
    if delta is not None:
        files["delta"], new_codes = delta
    return Exported(files, codes, errors, skipped, new_codes=new_codes, left=left, run_id=run_id,
                    delta_run=delta_run, delta_since_run=since)


def _write_codes(
    upload: _Upload, journal: Journal, path: Path, *, since: int | None = None, through: int | None = None
) -> int:
    """A codes CSV: every code, or (``since``) those published after run ``since`` up to run ``through``.  With
    ``--expiry-property`` (h7-clevertap) a third column holds each code's expiration date."""
    if upload.expiry_property is None:
        rows = journal.codes() if since is None else journal.codes_published_after(since, through=through)
        return outputs.write_codes(path, rows, key=upload.key, property=upload.property_name)
    return outputs.write_codes_with_expiry(
        path, journal.codes_with_expiry(after_run=-1 if since is None else since, through=through), key=upload.key,
        property=upload.property_name, expiry_property=upload.expiry_property,
    )


def export_journal(config: HandOffSettings, journal: Journal, *, property_name: str | None = None) -> Exported:
    """``distributor export``: rewrite the files of ``config``'s distribution from its journal, as the end of the
    latest run wrote (or will write) them.

    The CSV's key column (``identity`` or ``objectId``) is the journal's; the property is ``property_name`` when
    given, else the one the runs used (the journal remembers it), else the configuration's.  The skipped-rows and
    left-the-segment reports describe the latest run that read its whole segment; the delta is the latest run's.
    Works on a journal opened read-only, while a run is writing to it: the files' lock makes a run's final write
    and this one take turns, each reading the journal once it holds the lock.
    """
    key = journal.meta("key") or "identity"
    chosen = property_name or journal.meta("property") or config.property_name or DEFAULT_PROPERTY
    with outputs.files_lock(config.layout.output):
        loaded, latest = journal.latest_run(loaded=True), journal.latest_run()
        if loaded is None or latest is None:
            raise JournalError(f"journal {journal.path} holds no run yet: nothing to export")
        outputs.remove_stale_temporaries(config.layout.output)
        return export_files(config, journal, run_id=loaded.id, delta_run=latest.id, key=key, property_name=chosen)


def _write_delta(upload: _Upload, journal: Journal, run_id: int, since: int) -> tuple[Path, int] | None:
    """Run ``run_id``'s delta: the codes published after run ``since`` up to it; nothing when there are none."""
    started_at = journal.run_started_at(run_id)
    if started_at is None or next(journal.codes_published_after(since, through=run_id), None) is None:
        return None
    path = upload.layout.delta(run_id, started_at)
    return path, _write_codes(upload, journal, path, since=since, through=run_id)


def _write_left(path: Path, journal: Journal, run_id: int, *, key: str, tally: _Tally) -> int:
    """``<key>,code,state,last_seen_run,last_seen_at``: who left the segment, the code they keep (if any), and
    when a segment last held them."""
    members = tally.watch(journal.left_members(run_id), lambda member: member.identity)
    return outputs.write_report(
        path,
        [key, "code", "state", "last_seen_run", "last_seen_at"],
        (
            (
                member.identity,
                member.code or "",
                member.state,
                member.seen_run,
                "" if member.seen_at is None else _iso(member.seen_at),
            )
            for member in members
        ),
    )


class _Tally:
    """Counts the identities of the reports for people that start like a spreadsheet formula."""

    def __init__(self) -> None:
        self.count = 0

    def watch(self, items: Iterable[_Item], identity: Callable[[_Item], str]) -> Iterator[_Item]:
        for item in items:
            if outputs.needs_neutralising(identity(item)):
                self.count += 1
            yield item


def _iso(unix: float) -> str:
    return datetime.fromtimestamp(unix, UTC).isoformat(timespec="seconds")

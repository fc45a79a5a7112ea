"""The CleverTap files, rewritten from the journal: after every run, and on demand (``distributor export``).

The journal is the source of truth; these files are views of it, so they can be rewritten at any time — also
while a run is going: everything is read in one consistent snapshot of the journal, and every file is written to
a temporary name and renamed (``outputs.atomic_write``), so a reader never sees half a file.

Beside ``<name>.csv`` (every member holding a code) a segment-update schedule needs two more views:

* ``<name>.new.csv`` — the codes published since the last run that went through its whole segment (exit 0 or 1):
  the daily upload when CleverTap should "deliver codes when a customer enters a segment".  A day whose run was
  interrupted and then resumed is covered whole; a code may appear in two consecutive files when a run ended
  unfinished, which is harmless (a CleverTap upload is an upsert of the same value).
* ``<name>.left.csv`` — members of earlier runs who are no longer in the latest segment.  They keep their code and
  are never touched; this is a report for the marketer, not a file to upload.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path

from . import outputs
from .config import DEFAULT_PROPERTY, JobConfig
from .errors import JournalError
from .journal import Journal


@dataclass(frozen=True)
class Exported:
    files: dict[str, Path]
    codes: int
    errors: int
    skipped: int
    #: codes in ``<name>.new.csv``: published since the last run that finished its segment
    new_codes: int = 0
    #: members in ``<name>.left.csv``
    left: int = 0
    #: the run whose segment the skipped and left reports describe
    run_id: int = 0


def new_codes_path(config: JobConfig) -> Path:
    return config.output.with_name(config.output.stem + ".new.csv")


def left_path(config: JobConfig) -> Path:
    return config.output.with_name(config.output.stem + ".left.csv")


def export_files(config: JobConfig, journal: Journal, *, run_id: int, key: str) -> Exported:
    """Write the codes CSV, the manifest, the errors report, run ``run_id``'s skipped-rows report, the codes new
    since the last finished run, and the members who left the segment — all from one snapshot of the journal."""
    property_name = config.property_name
    with journal.snapshot():
        codes = _write_codes(config, journal, config.output, key=key, property_name=property_name)
        outputs.write_manifest(config.manifest_path, key=key, property=property_name, expiry_property=config.expiry_property)
        errors = outputs.write_errors(config.errors_path, journal.failures(), key=key)
        skipped = outputs.write_skipped(config.skipped_path, journal.skipped(run_id))
        since = journal.last_finished_run(before=run_id)
        new = _write_codes(config, journal, new_codes_path(config), key=key, property_name=property_name, after_run=since)
        left = _write_left(left_path(config), journal, run_id, key=key)
    files = {
        "codes": config.output,
        "manifest": config.manifest_path,
        "errors": config.errors_path,
        "skipped": config.skipped_path,
        "new": new_codes_path(config),
        "left": left_path(config),
    }
    return Exported(files, codes, errors, skipped, new_codes=new, left=left, run_id=run_id)


def _write_codes(
    config: JobConfig, journal: Journal, path: Path, *, key: str, property_name: str, after_run: int | None = None
) -> int:
    """The codes CSV (all codes, or those published after ``after_run``); with ``--expiry-property`` (h7-clevertap)
    a third column holds each code's expiration date."""
    if config.expiry_property is None:
        rows = journal.codes() if after_run is None else journal.codes_published_after(after_run)
        return outputs.write_codes(path, rows, key=key, property=property_name)
    return outputs.write_codes_with_expiry(
        path, journal.codes_with_expiry(after_run=after_run), key=key, property=property_name,
        expiry_property=config.expiry_property,
    )


def export_journal(config: JobConfig, journal: Journal, *, property_name: str | None = None) -> Exported:
    """``distributor export``: rewrite the files of ``config``'s distribution from its journal, as the end of the
    latest run wrote (or will write) them.

    The CSV's key column (``identity`` or ``objectId``) is the journal's; the property is ``property_name`` when
    given, else the one the runs used (the journal remembers it), else the configuration's.  The skipped-rows and
    left-the-segment reports describe the latest run that read its whole segment.  Works on a journal opened
    read-only, while a run is writing to it.
    """
    run = journal.latest_run(loaded=True)
    if run is None:
        raise JournalError(f"journal {journal.path} holds no run yet: nothing to export")
    key = journal.meta("key") or "identity"
    chosen = property_name or journal.meta("property") or config.property_name or DEFAULT_PROPERTY
    if chosen != config.property_name:
        config = replace(config, property_name=chosen)
    return export_files(config, journal, run_id=int(run["id"]), key=key)


def _write_left(path: Path, journal: Journal, run_id: int, *, key: str) -> int:
    """``<key>,code,state,last_seen_run,last_seen_at``: who left the segment, the code they keep (if any), and
    when a segment last held them."""
    count = 0
    with outputs.atomic_write(path, newline="") as handle:
        writer = csv.writer(handle, lineterminator="\r\n")
        writer.writerow([key, "code", "state", "last_seen_run", "last_seen_at"])
        for member in journal.left_members(run_id):
            seen_at = member["seen_at"]
            writer.writerow(
                [
                    member["identity"],
                    member["code"] or "",
                    member["state"],
                    member["seen_run"],
                    "" if seen_at is None else _iso(seen_at),
                ]
            )
            count += 1
    return count


def _iso(unix: float) -> str:
    return datetime.fromtimestamp(unix, timezone.utc).isoformat(timespec="seconds")

"""The files a distribution leaves beside its output, all written from the journal, all written atomically.

* ``<name>.csv`` — the CleverTap upload: header ``identity,<property>`` (``objectId,<property>`` when the segment
  is keyed on CleverTap ids), one row per member holding a code.  Standard CSV (RFC 4180, CRLF line ends), UTF-8
  without BOM, values exactly as in the segment: read back by any RFC 4180 reader (Python's csv module, pandas
  with ``dtype=str, keep_default_na=False``) every identity comes out byte for byte.
* ``<name>.manifest.json`` — the column mapping for CleverTap's "Upload mapped file", so nobody maps by hand.
* ``<name>.new.<date>.run<N>.csv`` — a run's delta, in the same format (see ``export.py``).
* ``<name>.errors.csv`` — members Voucherify refused: identity, row, HTTP status, Voucherify's ``key``,
  ``message`` and ``request_id`` (what its support asks for), attempts.
* ``<name>.skipped.csv`` — rows of the segment that were not published: row, value, reason, explanation.
* ``<name>.left.csv`` — members who left the segment (see ``export.py``).
* ``<name>.summary.json`` — the run's figures, for monitoring.

Each file is written to a temporary name in the same folder (``.<file>.<8 random characters>.tmp``), flushed to
disk, renamed over the old one, and the folder flushed too: a reader (or a crash, or a power cut) never sees half a
file.  Files get the permissions the umask gives (0644 under umask 022), like any file a program creates.  The
temporary files of a write that was killed are removed by :func:`remove_stale_temporaries`, which only ever
touches names of that shape beside the output.

Writers of the files take :func:`files_lock` around reading the journal and writing, so whichever writes last
wrote the newest snapshot.

The reports meant for people (errors, skipped, left) neutralise spreadsheet formulas (:func:`for_people`); the
CleverTap upload never does.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import re
import secrets
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from .journal import Failure
from .segment.identities import REASON_TEXT, storable

log = logging.getLogger("distributor")

#: A field is quoted when RFC 4180 requires it (a comma, a quote, a line end) and also when it starts or ends with
#: whitespace, because some CSV parsers trim unquoted fields (univocity-parsers does by default) but never quoted ones.
_NEEDS_QUOTES = re.compile(r'[",\r\n]|\A\s|\s\Z')


#: A report cell a spreadsheet would run as a formula (or whose formula-starting character it would strip), or one
#: that starts with the apostrophe this module adds in front of such cells.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "'")
#: Characters of a temporary name: the same alphabet and length Python's ``tempfile`` uses, so the temporaries of
#: earlier versions (written with ``NamedTemporaryFile``) are recognised and removed too.
_TEMP_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789_"
_TEMP_NAME = re.compile(r"\A\.(?P<name>.+)\.[a-z0-9_]{8}\.tmp\Z")


@contextmanager
def atomic_write(path: Path, *, newline: str | None = None) -> Iterator[IO[str]]:
    """Write ``path`` completely or not at all, durably, with the permissions the umask gives."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary, descriptor = _create_temporary(path)
    try:
        with open(descriptor, "w", encoding="utf-8", newline=newline) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    _sync_folder(path.parent)


def _create_temporary(path: Path) -> tuple[Path, int]:
    """A new file ``.<name>.<8 random characters>.tmp`` beside ``path``, created 0666 less the umask."""
    while True:
        token = "".join(secrets.choice(_TEMP_ALPHABET) for _ in range(8))
        temporary = path.with_name(f".{path.name}.{token}.tmp")
        try:
            return temporary, os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue


def _sync_folder(folder: Path) -> None:
    """Flush the folder's entry of a renamed file to disk (without it a power cut can undo the rename)."""
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


@contextmanager
def files_lock(output: Path) -> Iterator[None]:
    """Hold the exclusive lock of the files beside ``output`` (``.<stem>.files.lock``), waiting for it if needed.

    Every writer of these files reads its journal snapshot *inside* this lock: a run's final write and any
    ``distributor export`` are serialised, so the files always hold the newest snapshot written, never an older
    one that happened to finish writing last.  The kernel releases the lock when its holder dies.
    """
    output.parent.mkdir(parents=True, exist_ok=True)
    path = output.with_name(f".{output.stem}.files.lock")
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.info("waiting for another writer of the files beside %s (an export) to finish", output)
            fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield
    finally:
        os.close(descriptor)  # closing the descriptor releases the flock


def remove_stale_temporaries(output: Path) -> int:
    """Remove the temporaries that killed writes of this output's files left behind; returns how many.

    Only names this module creates (``.<file>.<8 characters>.tmp``) of files named after the output
    (``<stem>.…``) in the output's folder are touched.  Call it holding :func:`files_lock`, so that no live write
    of ours is among them.
    """
    removed = 0
    try:
        entries = list(os.scandir(output.parent))
    except FileNotFoundError:
        return 0
    for entry in entries:
        match = _TEMP_NAME.match(entry.name)
        if match is None or not match["name"].startswith(f"{output.stem}.") or not entry.is_file(follow_symlinks=False):
            continue
        try:
            os.unlink(entry.path)
        except FileNotFoundError:
            continue
        removed += 1
    if removed:
        log.info("removed %d temporary files that interrupted writes left beside %s", removed, output)
    return removed


def for_people(value: str) -> str:
    """A report cell safe to open in a spreadsheet: a value starting with ``=``, ``+``, ``-``, ``@``, a tab or a
    carriage return — which a spreadsheet would run as a formula — or with an apostrophe, gets a leading ``'``.
    Every report value that starts with ``'`` carries it; dropping that first character gives the exact value."""
    return "'" + value if value.startswith(_FORMULA_START) else value


def needs_neutralising(value: str) -> bool:
    """``value`` starts like a spreadsheet formula (an apostrophe, escaped too, is not one)."""
    return value.startswith(_FORMULA_START[:-1])


#: h7-clevertap: how the expiry column writes a date, in the manifest's (Java) and Python's notation; UTC.
EXPIRY_DATE_FORMAT = "dd/MM/yyyy HH:mm:ss"
_EXPIRY_STRFTIME = "%d/%m/%Y %H:%M:%S"


def write_codes_with_expiry(
    path: Path, rows: Iterable[tuple[str, str, float | None]], *, key: str, property: str, expiry_property: str
) -> int:
    """The CleverTap upload with a third column, ``expiry_property``: each code's expiration date (UTC, in
    :data:`EXPIRY_DATE_FORMAT`; empty when the voucher does not expire)."""
    count = 0
    with atomic_write(path, newline="") as handle:
        handle.write(csv_line((key, property, expiry_property)))
        for identity, code, expires_at in rows:
            when = "" if expires_at is None else time.strftime(_EXPIRY_STRFTIME, time.gmtime(expires_at))
            handle.write(csv_line((identity, code, when)))
            count += 1
    return count


def write_codes(path: Path, rows: Iterable[tuple[str, str]], *, key: str, property: str) -> int:
    """The CleverTap upload file; returns the number of members written.

    Values are written exactly.  In particular an identity starting with ``=``, ``+``, ``-`` or ``@`` is *not*
    prefixed with an apostrophe (the usual defence against formula injection when a spreadsheet opens a CSV): the
    file is meant for CleverTap, not a spreadsheet, and a changed identity would make CleverTap create a stray
    profile instead of updating the customer.  Exactness wins.
    """
    count = 0
    with atomic_write(path, newline="") as handle:
        handle.write(csv_line((key, property)))
        for identity, code in rows:
            handle.write(csv_line((identity, code)))
            count += 1
    return count


def csv_line(fields: Iterable[str]) -> str:
    """One RFC 4180 record with its CRLF; see :data:`_NEEDS_QUOTES` for when a field is quoted."""
    return ",".join(
        '"' + field.replace('"', '""') + '"' if _NEEDS_QUOTES.search(field) else field for field in fields
    ) + "\r\n"


def write_manifest(path: Path, *, key: str, property: str, expiry_property: str | None = None) -> None:
    """CleverTap's column mapping: the key column, and the code as a string property named ``property`` (and the
    expiry column as a ``Date``, with ``--expiry-property``)."""
    columns: dict[str, dict[str, str]] = {
        key: {"ctName": key, "dataType": "STRING"},
        property: {"ctName": property, "dataType": "STRING"},
    }
    if expiry_property is not None:  # h7-clevertap
        columns[expiry_property] = {"ctName": expiry_property, "dataType": "Date", "dateFormat": EXPIRY_DATE_FORMAT}
    manifest = {"columns": columns}
    with atomic_write(path) as handle:
        json.dump(manifest, handle, indent=2, ensure_ascii=False)
        handle.write("\n")


def write_report(path: Path, header: Sequence[str], rows: Iterable[Sequence[str | int | None]]) -> int:
    """A report meant for people: standard CSV like the upload (a field with surrounding whitespace quoted), every
    text cell passed through :func:`for_people`; returns the number of rows written."""
    count = 0
    with atomic_write(path, newline="") as handle:
        handle.write(csv_line(header))
        for row in rows:
            handle.write(csv_line(_report_cell(value) for value in row))
            count += 1
    return count


def _report_cell(value: str | int | None) -> str:
    if value is None:
        return ""
    return str(value) if isinstance(value, int) else for_people(value)


def write_errors(path: Path, failures: Iterable[Failure], *, key: str) -> int:
    """Members Voucherify refused, with what its support asks for; returns the number written."""
    return write_report(
        path,
        [key, "row", "status", "error_key", "message", "request_id", "attempts"],
        (
            (failure.identity, failure.row, failure.status, failure.key, failure.message, failure.request_id,
             failure.attempts)
            for failure in failures
        ),
    )


def write_skipped(path: Path, rows: Iterable[tuple[int | str, str, str, str]]) -> int:
    """Rows ``(row, value, reason, detail)``; the ``explanation`` column says the reason in words.  A value with a
    lone surrogate is written as its escape (see :func:`identities.storable`): it has no UTF-8 form."""
    return write_report(
        path,
        ["row", "value", "reason", "explanation"],
        (
            (row, storable(value), reason, _explanation(reason, detail))
            for row, value, reason, detail in rows
        ),
    )


def _explanation(reason: str, detail: str) -> str:
    text = REASON_TEXT.get(reason, reason)
    return f"{text} ({detail})" if detail else text


def write_summary(path: Path, summary: Mapping[str, Any]) -> None:
    """The run's figures as JSON, for monitoring."""
    with atomic_write(path) as handle:
        json.dump(summary, handle, indent=2, ensure_ascii=False, default=str)
        handle.write("\n")

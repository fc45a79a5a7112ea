"""The files a distribution leaves beside its output, all written from the journal, all written atomically.

* ``<name>.csv`` — the CleverTap upload: header ``identity,<property>`` (``objectId,<property>`` when the segment
  is keyed on CleverTap ids), one row per member holding a code.  Standard CSV (RFC 4180, CRLF line ends), UTF-8
  without BOM, values exactly as in the segment: read back by any RFC 4180 reader (Python's csv module, pandas
  with ``dtype=str, keep_default_na=False``) every identity comes out byte for byte.
* ``<name>.manifest.json`` — the column mapping for CleverTap's "Upload mapped file", so nobody maps by hand.
* ``<name>.errors.csv`` — members Voucherify refused: identity, row, HTTP status, Voucherify's ``key``,
  ``message`` and ``request_id`` (what its support asks for), attempts.
* ``<name>.skipped.csv`` — rows of the segment that were not published: row, value, reason, explanation.
* ``<name>.summary.json`` — the run's figures, for monitoring.

Each file is written to a temporary name in the same folder, flushed to disk and renamed over the old one, so a
reader (or a crash) never sees half a file.
"""

from __future__ import annotations

import csv
import json
import os
import re
import tempfile
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from .identities import REASON_TEXT, storable
from .journal import Failure

#: A field is quoted when RFC 4180 requires it (a comma, a quote, a line end) and also when it starts or ends with
#: whitespace, because some CSV parsers trim unquoted fields (univocity-parsers does by default) but never quoted ones.
_NEEDS_QUOTES = re.compile(r'[",\r\n]|\A\s|\s\Z')


@contextmanager
def atomic_write(path: Path, *, newline: str | None = None) -> Iterator[IO[str]]:
    """Write ``path`` completely or not at all."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = tempfile.NamedTemporaryFile(
        "w", encoding="utf-8", newline=newline, dir=path.parent, prefix=f".{path.name}.", suffix=".tmp", delete=False
    )
    try:
        with handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(handle.name, path)
    except BaseException:
        os.unlink(handle.name)
        raise


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


def write_errors(path: Path, failures: Iterable[Failure], *, key: str) -> int:
    """Members Voucherify refused, with what its support asks for; returns the number written."""
    count = 0
    with atomic_write(path, newline="") as handle:
        writer = csv.writer(handle, lineterminator="\r\n")
        writer.writerow([key, "row", "status", "error_key", "message", "request_id", "attempts"])
        for failure in failures:
            writer.writerow(
                [
                    failure.identity,
                    failure.row,
                    "" if failure.status is None else failure.status,
                    failure.key or "",
                    failure.message or "",
                    failure.request_id or "",
                    failure.attempts,
                ]
            )
            count += 1
    return count


def write_skipped(path: Path, rows: Iterable[tuple[int, str, str, str]]) -> int:
    """Rows ``(row, value, reason, detail)``; the ``explanation`` column says the reason in words.  A value with a
    lone surrogate is written as its escape (see :func:`identities.storable`): it has no UTF-8 form."""
    count = 0
    with atomic_write(path, newline="") as handle:
        writer = csv.writer(handle, lineterminator="\r\n")
        writer.writerow(["row", "value", "reason", "explanation"])
        for row, value, reason, detail in rows:
            text = REASON_TEXT.get(reason, reason)
            writer.writerow([row, storable(value), reason, f"{text} ({detail})" if detail else text])
            count += 1
    return count


def write_summary(path: Path, summary: Mapping[str, Any]) -> None:
    """The run's figures as JSON, for monitoring."""
    with atomic_write(path) as handle:
        json.dump(summary, handle, indent=2, ensure_ascii=False, default=str)
        handle.write("\n")

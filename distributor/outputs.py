"""The files a distribution leaves beside its output, all written from the journal, all written atomically.

* ``<name>.csv`` — the CleverTap upload: header ``identity,<property>`` (``objectId,<property>`` when the segment
  is keyed on CleverTap ids), one row per member holding a code.  Standard CSV (RFC 4180: quoted only where
  needed, CRLF line ends), UTF-8 without BOM, values exactly as in the segment.
* ``<name>.manifest.json`` — the column mapping for CleverTap's "Upload mapped file", so nobody maps by hand.
* ``<name>.errors.csv`` — members Voucherify refused: identity, row, HTTP status, Voucherify's ``key``,
  ``message`` and ``request_id`` (what its support asks for), attempts.
* ``<name>.skipped.csv`` — rows of the segment that were not published: row, value, reason.
* ``<name>.summary.json`` — the run's figures, for monitoring.

Each file is written to a temporary name in the same folder, flushed to disk and renamed over the old one, so a
reader (or a crash) never sees half a file.
"""

from __future__ import annotations

import csv
import json
import os
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from .identities import REASON_TEXT
from .journal import Failure


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


def write_codes(path: Path, rows: Iterable[tuple[str, str]], *, key: str, property: str) -> int:
    """The CleverTap upload file; returns the number of members written."""
    count = 0
    with atomic_write(path, newline="") as handle:
        writer = csv.writer(handle, lineterminator="\r\n")
        writer.writerow([key, property])
        for identity, code in rows:
            writer.writerow([identity, code])
            count += 1
    return count


def write_manifest(path: Path, *, key: str, property: str) -> None:
    """CleverTap's column mapping: the key column, and the code as a string property named ``property``."""
    manifest = {
        "columns": {
            key: {"ctName": key, "dataType": "STRING"},
            property: {"ctName": property, "dataType": "STRING"},
        }
    }
    with atomic_write(path) as handle:
        json.dump(manifest, handle, indent=2, ensure_ascii=False)
        handle.write("\n")


def write_errors(path: Path, failures: Iterable[Failure], *, key: str) -> int:
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
    """Rows ``(row, value, reason, detail)``; the ``explanation`` column says the reason in words."""
    count = 0
    with atomic_write(path, newline="") as handle:
        writer = csv.writer(handle, lineterminator="\r\n")
        writer.writerow(["row", "value", "reason", "explanation"])
        for row, value, reason, detail in rows:
            text = REASON_TEXT.get(reason, reason)
            writer.writerow([row, value, reason, f"{text} ({detail})" if detail else text])
            count += 1
    return count


def write_summary(path: Path, summary: Mapping[str, Any]) -> None:
    with atomic_write(path) as handle:
        json.dump(summary, handle, indent=2, ensure_ascii=False, default=str)
        handle.write("\n")

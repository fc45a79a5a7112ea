"""Opening a segment: the files a ``--segment`` names (a file, a folder of parts, a glob pattern), each file's
format told by its content, and the identity column every part must share (recognised by name, or as asked with
``--id-column``).  Reading the opened files is :mod:`.reader`'s."""

from __future__ import annotations

import codecs
import glob
from collections.abc import Sequence
from pathlib import Path

from ..errors import InputError
from .formats import (
    CSV,
    GZIP_MAGIC,
    JSON_LINES,
    LOOSE_NAMES,
    PARQUET,
    PARQUET_MAGIC,
    SNIFF_BYTES,
    csv_columns,
    csv_dialect,
    gunzip_head,
    jsonl_columns,
    loose_name,
    parquet_columns,
    refuse_non_exports,
)
from .reader import Segment, SegmentFile

#: Identity columns recognised without ``--id-column``, in order of preference, and what they key on in
#: CleverTap: ``identity`` (the customer's identity) or ``objectId`` (CleverTap's own profile id).
IDENTITY_COLUMNS: tuple[tuple[str, str], ...] = (
    ("identity", "identity"),
    ("Identity", "identity"),
    ("IDENTITY", "identity"),
    ("objectId", "objectId"),
    ("ObjectId", "objectId"),
    ("clevertapId", "objectId"),
    ("CleverTap ID", "objectId"),
    ("CleverTapID", "objectId"),
)


def open_segment(paths: Path | str | Sequence[Path | str], id_column: str | None = None) -> Segment:
    """Open a segment: one export file, or several parts read as one segment (each of ``paths`` a file, a folder
    of parts or a glob pattern, expanded here and sorted).  Tells each part's format and finds the identity column,
    which every part must share.  Raises :class:`InputError` when unusable: missing, unreadable, empty, binary or
    not UTF-8, not an export, no (or an ambiguous) identity column, parts that differ."""
    files = expand_parts([paths] if isinstance(paths, (str, Path)) else list(paths))
    first = _open_file(files[0], id_column)
    parts = [first]
    for path in files[1:]:
        # the first part's column, by name: the same column, hence the same CleverTap key, in every part
        parts.append(_open_file(path, id_column or first.id_column, differs_from=first.path))
    return Segment(tuple(parts))


def expand_parts(given: Sequence[Path | str]) -> list[Path]:
    """The files ``given`` names, in order: a file as it is, a folder as its files (sorted by name; hidden files
    left out), a glob pattern (``exports/part-*.csv.gz``) as its matches, sorted.  A file named twice is read once."""
    files: list[Path] = []
    for item in given:
        path = Path(item)
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if not p.name.startswith(".") and not p.is_dir())
            if not found:
                raise InputError(f"segment folder {path} holds no file")
        elif not path.exists() and glob.has_magic(str(item)):
            found = sorted(Path(p) for p in glob.glob(str(item)) if not Path(p).is_dir())
            if not found:
                raise InputError(f"segment pattern {str(item)!r} matches no file")
        else:
            found = [path]
        files.extend(f for f in found if f not in files)
    if not files:
        raise InputError("no segment file given: give --segment")
    return files


def _open_file(path: Path, id_column: str | None, differs_from: Path | None = None) -> SegmentFile:
    """Open one export file; ``differs_from``: the first part, named when this part lacks its identity column."""
    if not path.exists():
        raise InputError(f"segment file {path} does not exist")
    if path.is_dir():
        raise InputError(f"segment file {path} is a folder, not a file")
    try:
        with path.open("rb") as handle:
            head = handle.read(SNIFF_BYTES)
    except OSError as exc:
        raise InputError(f"segment file {path} cannot be read: {exc.strerror or exc}") from None
    if not head:
        raise InputError(f"segment file {path} is empty")

    if head.startswith(PARQUET_MAGIC):
        columns = parquet_columns(path)
        return _with_id_column(path, PARQUET, False, columns, id_column, differs_from=differs_from)

    compressed = head.startswith(GZIP_MAGIC)
    if compressed:
        head = gunzip_head(path)
        if not head:
            raise InputError(f"segment file {path} is an empty gzip file")
        if head.startswith(PARQUET_MAGIC):
            raise InputError(
                f"segment file {path} is a gzip-compressed Parquet file: Parquet is compressed inside already; "
                "decompress it (gunzip) and give the .parquet file"
            )
        if head.startswith(GZIP_MAGIC):
            raise InputError(f"segment file {path} is gzip-compressed twice: decompress it once (gunzip)")
    refuse_non_exports(path, head)
    start = head.removeprefix(codecs.BOM_UTF8).lstrip(b" \t\r\n")
    if start.startswith(b"["):
        raise InputError(
            f"segment file {path} is one JSON array, not JSON lines (one object per line): export it as JSON "
            "lines or CSV"
        )
    if start.startswith(b"{"):
        columns = jsonl_columns(path, compressed)
        return _with_id_column(path, JSON_LINES, compressed, columns, id_column, differs_from=differs_from)
    delimiter, separator_line = csv_dialect(path, head, id_column)
    columns = csv_columns(path, compressed, delimiter, separator_line)
    return _with_id_column(
        path, CSV, compressed, columns, id_column, delimiter, separator_line=separator_line, differs_from=differs_from
    )


def _with_id_column(
    path: Path,
    fmt: str,
    compressed: bool,
    columns: tuple[str, ...],
    id_column: str | None,
    delimiter: str = ",",
    *,
    separator_line: bool = False,
    differs_from: Path | None = None,
) -> SegmentFile:
    def segment(name: str, key: str, recognised: bool) -> SegmentFile:
        if columns.count(name) > 1:
            raise InputError(
                f"{path}: {columns.count(name)} columns are named {name!r}, so which one holds the identities "
                "cannot be told; rename or remove the others"
            )
        return SegmentFile(path, fmt, compressed, columns, name, key, recognised, delimiter, separator_line)

    if id_column is not None:
        if id_column not in columns:
            near = [c for c in columns if loose_name(c) == loose_name(id_column)]
            hint = f" (did you mean {near[0]!r}?)" if near else ""
            other = f", the identity column of {differs_from}" if differs_from else ""
            raise InputError(
                f"{path}: no column {id_column!r}{other}{hint}; the columns are {_list_columns(columns)}"
                + ("; all parts of a segment share one identity column" if differs_from else "")
            )
        return segment(id_column, LOOSE_NAMES.get(loose_name(id_column), "identity"), recognised=False)
    for name, key in IDENTITY_COLUMNS:
        if name in columns:
            return segment(name, key, recognised=True)
    loose = [c for c in columns if loose_name(c) in LOOSE_NAMES]
    if len(loose) == 1:
        return segment(loose[0], LOOSE_NAMES[loose_name(loose[0])], recognised=True)
    if len(loose) > 1:
        raise InputError(
            f"{path}: several columns could hold the identity ({_list_columns(tuple(loose))}); "
            "name one with --id-column"
        )
    raise InputError(
        f"{path}: no identity column found (looked for identity, Identity, objectId, clevertapId); "
        f"the columns are {_list_columns(columns)}; name one with --id-column"
    )


def _list_columns(columns: tuple[str, ...]) -> str:
    shown = ", ".join(repr(c) for c in columns[:20])
    return shown + (f" and {len(columns) - 20} more" if len(columns) > 20 else "")

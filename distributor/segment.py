"""Reading CleverTap segment exports: which file format, which identity column, and the identities, exactly.

Supported: *Find People* CSV downloads and Export-center profile exports as ``.csv`` / ``.csv.gz``, JSON lines
(``.jsonl``, ``.json``, optionally ``.gz``) and Parquet.  The format is told by the file's first bytes (gzip and
Parquet have magic numbers), then by its name.  Files are read in batches, so memory stays bounded whatever the
size of the export.

Identities are kept byte for byte: CSV cells are read as strings with every NA conversion off (``000123`` stays
``000123``, ``null`` stays ``null``), JSON numbers keep their literal text, nothing is stripped or re-cased.
Row numbers are those a spreadsheet shows: in a CSV the header is row 1 and the first member row 2; in JSON lines
the row is the line number; in Parquet, the record number plus one (as if it had a header).
"""

from __future__ import annotations

import codecs
import csv
import gzip
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from .errors import InputError

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
_OBJECT_ID_NAMES = {name.lower() for name, key in IDENTITY_COLUMNS if key == "objectId"}

CSV = "csv"
JSON_LINES = "jsonl"
PARQUET = "parquet"

_GZIP_MAGIC = b"\x1f\x8b"
_PARQUET_MAGIC = b"PAR1"
_SNIFF_BYTES = 64 * 1024


@dataclass(frozen=True)
class Row:
    number: int
    identity: str


@dataclass(frozen=True)
class Segment:
    """An opened segment export; :meth:`batches` streams its identities."""

    path: Path
    format: str
    compressed: bool
    columns: tuple[str, ...]
    id_column: str
    #: ``"identity"`` or ``"objectId"``: the CleverTap key the identities are, hence the output CSV's first header.
    key: str
    #: True when the column was recognised rather than named with ``--id-column``.
    id_column_recognised: bool

    def describe(self) -> str:
        how = "recognised" if self.id_column_recognised else "as asked"
        kind = f"{'gzip-compressed ' if self.compressed else ''}{self.format.upper()}"
        return f"{self.path} ({kind}): identity column {self.id_column!r} ({how}), keyed as CleverTap {self.key}"

    def batches(self, size: int = 50_000) -> Iterator[list[Row]]:
        """Yield the rows in file order, ``size`` at a time.  Raises :class:`InputError` on unreadable content."""
        reader = {CSV: self._csv_batches, JSON_LINES: self._jsonl_batches, PARQUET: self._parquet_batches}
        yield from reader[self.format](size)

    # ------------------------------------------------------------------ CSV
    def _csv_batches(self, size: int) -> Iterator[list[Row]]:
        import pandas as pd

        number = 1  # the header is row 1
        try:
            chunks = pd.read_csv(
                self.path,
                usecols=[self.id_column],
                dtype=str,
                keep_default_na=False,
                na_filter=False,
                skip_blank_lines=False,
                encoding="utf-8-sig",
                compression="gzip" if self.compressed else None,
                chunksize=size,
                engine="c",
            )
            for chunk in chunks:
                values = chunk[self.id_column].tolist()
                yield [Row(number + i + 1, value) for i, value in enumerate(values)]
                number += len(values)
        except UnicodeDecodeError:
            raise InputError(f"{self.path}: not UTF-8 text after row {number}; export it again as UTF-8") from None
        except (pd.errors.ParserError, EOFError, OSError, gzip.BadGzipFile) as exc:
            raise InputError(f"{self.path}: cannot be read after row {number}: {_first_line(exc)}") from None

    # ------------------------------------------------------------------ JSON lines
    def _jsonl_batches(self, size: int) -> Iterator[list[Row]]:
        batch: list[Row] = []
        number = 0
        try:
            with _open_text(self.path, self.compressed) as handle:
                for number, line in enumerate(handle, start=1):
                    if not line.strip():
                        continue
                    record = _parse_json_record(line, self.path, number)
                    batch.append(Row(number, _json_text(record.get(self.id_column))))
                    if len(batch) >= size:
                        yield batch
                        batch = []
        except UnicodeDecodeError:
            raise InputError(f"{self.path}: not UTF-8 text at line {number + 1}; export it again as UTF-8") from None
        except (EOFError, OSError, gzip.BadGzipFile) as exc:
            raise InputError(f"{self.path}: cannot be read after line {number}: {_first_line(exc)}") from None
        if batch:
            yield batch

    # ------------------------------------------------------------------ Parquet
    def _parquet_batches(self, size: int) -> Iterator[list[Row]]:
        import pyarrow as pa
        import pyarrow.parquet as pq

        number = 1
        try:
            for record_batch in pq.ParquetFile(self.path).iter_batches(batch_size=size, columns=[self.id_column]):
                column = record_batch.column(0)
                if not pa.types.is_string(column.type) and not pa.types.is_large_string(column.type):
                    column = column.cast(pa.string())
                values = ["" if value is None else value for value in column.to_pylist()]
                yield [Row(number + i + 1, value) for i, value in enumerate(values)]
                number += len(values)
        except (pa.ArrowException, OSError) as exc:
            raise InputError(f"{self.path}: cannot be read after record {number - 1}: {_first_line(exc)}") from None


def open_segment(path: Path | str, id_column: str | None = None) -> Segment:
    """Open ``path``, tell its format and find the identity column.  Raises :class:`InputError` when unusable."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"segment file {path} does not exist")
    if path.is_dir():
        raise InputError(f"segment file {path} is a folder, not a file")
    try:
        with path.open("rb") as handle:
            head = handle.read(_SNIFF_BYTES)
    except OSError as exc:
        raise InputError(f"segment file {path} cannot be read: {exc.strerror or exc}") from None
    if not head:
        raise InputError(f"segment file {path} is empty")

    if head.startswith(_PARQUET_MAGIC):
        columns = _parquet_columns(path)
        return _with_id_column(path, PARQUET, False, columns, id_column)

    compressed = head.startswith(_GZIP_MAGIC)
    if compressed:
        head = _gunzip_head(path)
        if not head:
            raise InputError(f"segment file {path} is an empty gzip file")
    _refuse_binary(path, head)
    text_format = _text_format(path, head)
    if text_format == JSON_LINES:
        columns = _jsonl_columns(path, compressed)
    else:
        columns = _csv_columns(path, head)
    return _with_id_column(path, text_format, compressed, columns, id_column)


def _with_id_column(
    path: Path, fmt: str, compressed: bool, columns: tuple[str, ...], id_column: str | None
) -> Segment:
    if id_column is not None:
        if id_column not in columns:
            raise InputError(
                f"{path}: no column {id_column!r}; the columns are {_list_columns(columns)}"
            )
        key = "objectId" if id_column.lower() in _OBJECT_ID_NAMES else "identity"
        return Segment(path, fmt, compressed, columns, id_column, key, id_column_recognised=False)
    for name, key in IDENTITY_COLUMNS:
        if name in columns:
            return Segment(path, fmt, compressed, columns, name, key, id_column_recognised=True)
    lowered = {column.lower(): column for column in columns}
    if "identity" in lowered:
        return Segment(path, fmt, compressed, columns, lowered["identity"], "identity", id_column_recognised=True)
    raise InputError(
        f"{path}: no identity column found (looked for identity, Identity, objectId, clevertapId); "
        f"the columns are {_list_columns(columns)}; name one with --id-column"
    )


def _list_columns(columns: tuple[str, ...]) -> str:
    shown = ", ".join(repr(c) for c in columns[:20])
    return shown + (f" and {len(columns) - 20} more" if len(columns) > 20 else "")


def _refuse_binary(path: Path, head: bytes) -> None:
    if b"\x00" in head:
        raise InputError(f"segment file {path} is binary, not a CSV or JSON lines export")
    # A cut at the sniff boundary may split a multi-byte character: decode incrementally and ignore a tail.
    try:
        codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
    except UnicodeDecodeError as exc:
        raise InputError(
            f"segment file {path} is not UTF-8 text (byte {exc.start}); export it again as UTF-8"
        ) from None


def _text_format(path: Path, head: bytes) -> str:
    suffixes = [s.lower() for s in path.suffixes]
    if any(s in (".jsonl", ".ndjson", ".json") for s in suffixes):
        return JSON_LINES
    if any(s in (".csv", ".tsv", ".txt") for s in suffixes):
        return CSV
    return JSON_LINES if head.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"{") else CSV


def _gunzip_head(path: Path) -> bytes:
    try:
        with gzip.open(path, "rb") as handle:
            return handle.read(_SNIFF_BYTES)
    except (OSError, EOFError) as exc:
        raise InputError(f"segment file {path} is a damaged gzip file: {_first_line(exc)}") from None


def _csv_columns(path: Path, head: bytes) -> tuple[str, ...]:
    text = head.decode("utf-8", errors="ignore").removeprefix("\ufeff")
    try:
        header = next(csv.reader(io.StringIO(text)), None)
    except csv.Error as exc:
        raise InputError(f"{path}: the header row cannot be read: {exc}") from None
    if not header or all(not column.strip() for column in header):
        raise InputError(f"{path}: the first row is empty; a CSV export starts with a header row")
    return tuple(header)


def _jsonl_columns(path: Path, compressed: bool) -> tuple[str, ...]:
    with _open_text(path, compressed) as handle:
        for number, line in enumerate(handle, start=1):
            if line.strip():
                return tuple(_parse_json_record(line, path, number).keys())
    raise InputError(f"segment file {path} holds no JSON record")


def _parquet_columns(path: Path) -> tuple[str, ...]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return tuple(pq.read_schema(path).names)
    except (pa.ArrowException, OSError) as exc:
        raise InputError(f"segment file {path} is not a readable Parquet file: {_first_line(exc)}") from None


def _open_text(path: Path, compressed: bool) -> io.TextIOBase:
    raw = gzip.open(path, "rb") if compressed else path.open("rb")
    return io.TextIOWrapper(raw, encoding="utf-8-sig", newline="")


def _parse_json_record(line: str, path: Path, number: int) -> dict[str, object]:
    try:
        # Numbers keep their literal text: an identity 000123 or 1e3 must not become 123 or 1000.0.
        record = json.loads(line, parse_int=str, parse_float=str, parse_constant=str)
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}: line {number} is not a JSON object: {exc.msg}") from None
    if not isinstance(record, dict):
        raise InputError(f"{path}: line {number} is not a JSON object")
    return record


def _json_text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    # a list or an object is not an identity: keep its JSON text so the row is reported, not lost
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__

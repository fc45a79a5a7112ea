"""Reading CleverTap segment exports: which file format, which identity column, and the identities, exactly.

Supported: *Find People* CSV downloads and Export-center profile exports as CSV, JSON lines and Parquet, CSV and
JSON lines optionally gzip-compressed.  The format is told by the file's content, never by its name alone: gzip
and Parquet by their magic numbers, JSON lines by a first ``{``, anything else is CSV.  CSV may be comma-, tab- or
semicolon-separated (told by the header row; ``.tsv`` files are tab-separated), UTF-8 with or without a BOM, with
CRLF, LF or CR line ends.  Files are read as a stream, a batch at a time, so memory stays bounded whatever the size
of the export.

Identities are kept byte for byte: CSV cells are taken as the csv module parses them (RFC 4180, the same dialect
the output is written in), with no NA conversion, no type inference and no stripping (``000123`` stays ``000123``,
``null`` stays ``null``, `` a `` keeps its spaces); JSON numbers keep their literal text; Parquet integer columns are
cast to their exact decimal text.

Row numbers are those a spreadsheet shows: in a CSV the header is row 1 and the first member row 2 (a quoted
field spanning lines is one row; a blank line is a row with an empty identity); in JSON lines the row is the line
number; in Parquet, the record number plus one (as if it had a header).

Input that cannot be read exactly is refused with an :class:`InputError` naming the file and the row, never
guessed at: a row with more or fewer fields than the header (an unquoted comma shifts every column after it), an
unclosed quote, a byte that is not UTF-8, a gzip file cut short.  The pandas C parser was not used for CSV because,
with ``usecols``, it silently accepts rows with extra fields and takes the identity from the wrong column.
"""

from __future__ import annotations

import codecs
import csv
import gzip
import io
import json
import re
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, NamedTuple

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
#: The same names with case, spaces, ``_`` and ``-`` ignored: recognises ``Identity `` or ``clevertap_id`` too.
_LOOSE_NAMES = {"identity": "identity", "objectid": "objectId", "clevertapid": "objectId"}

CSV = "csv"
JSON_LINES = "jsonl"
PARQUET = "parquet"

_GZIP_MAGIC = b"\x1f\x8b"
_PARQUET_MAGIC = b"PAR1"
_SNIFF_BYTES = 64 * 1024
#: Largest CSV field read (any column): far above any real profile property, low enough to stop a runaway quote.
_MAX_FIELD = 64 * 1024 * 1024
_DELIMITER_NAMES = {",": "comma", "\t": "tab", ";": "semicolon"}
#: Characters that cannot come out of valid UTF-8: what ``surrogateescape`` makes of an undecodable byte.
_UNDECODABLE = re.compile("[\udc80-\udcff]")

#: Files that are not a segment export but look like one by name, told by their first bytes: what to do instead.
_NOT_AN_EXPORT: tuple[tuple[bytes, str], ...] = (
    (b"PK\x03\x04", "is a ZIP archive (a zipped export, or an Excel workbook): unzip it, or save it as CSV"),
    (b"\xef\xbb\xbf\xef\xbb\xbf", "starts with two byte-order marks: it was converted to UTF-8 twice; export it again"),
    (b"\xff\xfe", "is UTF-16 text: export it again (or save it) as UTF-8"),
    (b"\xfe\xff", "is UTF-16 text: export it again (or save it) as UTF-8"),
    (b"BZh", "is bzip2-compressed: decompress it (bunzip2) or export it again as .csv.gz"),
    (b"\xfd7zXZ\x00", "is xz-compressed: decompress it (unxz) or export it again as .csv.gz"),
    (b"\x28\xb5\x2f\xfd", "is zstd-compressed: decompress it (unzstd) or export it again as .csv.gz"),
)


class Row(NamedTuple):
    """One row of the segment: its number as a spreadsheet shows it, and its identity exactly as written."""

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
    #: The CSV field separator (``,``, tab or ``;``); unused for other formats.
    delimiter: str = ","

    def describe(self) -> str:
        """One line for the log: the file, its format and which column holds the identities."""
        how = "recognised" if self.id_column_recognised else "as asked"
        kind = f"{'gzip-compressed ' if self.compressed else ''}{self.format.upper()}"
        if self.format == CSV and self.delimiter != ",":
            kind += f", {_DELIMITER_NAMES[self.delimiter]}-separated"
        where = f"column {self.columns.index(self.id_column) + 1} of {len(self.columns)}"
        column = f"identity column {self.id_column!r} ({how}), {where}"
        return f"{self.path} ({kind}): {column}, keyed as CleverTap {self.key}"

    def batches(self, size: int = 50_000) -> Iterator[list[Row]]:
        """Yield the rows in file order, ``size`` at a time.  Raises :class:`InputError` on unreadable content,
        naming the file and the row."""
        reader = {CSV: self._csv_batches, JSON_LINES: self._jsonl_batches, PARQUET: self._parquet_batches}
        yield from reader[self.format](size)

    # ------------------------------------------------------------------ CSV
    def _csv_batches(self, size: int) -> Iterator[list[Row]]:
        csv.field_size_limit(max(csv.field_size_limit(), _MAX_FIELD))
        index, width = self.columns.index(self.id_column), len(self.columns)
        number = 1  # the header is row 1
        batch: list[Row] = []
        try:
            with _open_text(self.path, self.compressed) as handle:
                records = csv.reader(handle, delimiter=self.delimiter, strict=True)
                next(records)  # the header, already read by open_segment
                for record in records:
                    number += 1
                    if len(record) == width:
                        batch.append(Row(number, record[index]))
                    elif not record:  # a blank line: a row whose identity is empty
                        batch.append(Row(number, ""))
                    else:
                        raise InputError(
                            f"{self.path}: row {number} has {len(record)} fields but the header has {width}, so "
                            f"its {self.id_column!r} cannot be told for sure (a separator inside an unquoted "
                            "value?); fix the row or export the segment again"
                        )
                    if len(batch) >= size:
                        yield batch
                        batch = []
        except UnicodeDecodeError:
            raise self._not_utf8() from None
        except csv.Error as exc:
            raise InputError(f"{self.path}: row {number + 1} is not valid CSV: {_first_line(exc)}") from None
        except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
            raise _damaged_gzip(self.path, "row", number, exc) from None
        except OSError as exc:
            raise InputError(f"{self.path}: cannot be read after row {number}: {_first_line(exc)}") from None
        if batch:
            yield batch

    def _not_utf8(self) -> InputError:
        """Find the first row holding a byte that is not UTF-8 (a second pass, only when reading failed)."""
        with _open_text(self.path, self.compressed, errors="surrogateescape") as handle:
            for number, record in enumerate(csv.reader(handle, delimiter=self.delimiter), start=1):
                for column, value in enumerate(record):
                    if _UNDECODABLE.search(value):
                        name = self.columns[column] if column < len(self.columns) else f"field {column + 1}"
                        return InputError(
                            f"{self.path}: row {number} is not UTF-8 text (in column {name!r}); "
                            "export the segment again as UTF-8"
                        )
        return InputError(f"{self.path}: is not UTF-8 text; export the segment again as UTF-8")

    # ------------------------------------------------------------------ JSON lines
    def _jsonl_batches(self, size: int) -> Iterator[list[Row]]:
        batch: list[Row] = []
        number = 0
        try:
            with _open_binary(self.path, self.compressed) as handle:
                for number, raw in enumerate(handle, start=1):
                    line = _decode_line(raw, self.path, number)
                    if not line.strip():
                        continue
                    record = _parse_json_record(line, self.path, number)
                    batch.append(Row(number, self._json_identity(record.get(self.id_column), number)))
                    if len(batch) >= size:
                        yield batch
                        batch = []
        except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
            raise _damaged_gzip(self.path, "line", number, exc) from None
        except OSError as exc:
            raise InputError(f"{self.path}: cannot be read after line {number}: {_first_line(exc)}") from None
        if batch:
            yield batch

    def _json_identity(self, value: object, number: int) -> str:
        """The identity's text: strings as they are, numbers as written (see :func:`_parse_json_record`),
        ``null`` or a missing key as empty.  A boolean, list or object is no identity: the column is wrong."""
        if value is None:
            return ""
        if isinstance(value, str):
            return value
        kind = {bool: "true/false", list: "list", dict: "object"}.get(type(value), type(value).__name__)
        raise InputError(
            f"{self.path}: line {number}: {self.id_column!r} holds a JSON {kind}, not a text or a number; "
            "is it the right column? name it with --id-column"
        )

    # ------------------------------------------------------------------ Parquet
    def _parquet_batches(self, size: int) -> Iterator[list[Row]]:
        import pyarrow as pa
        import pyarrow.parquet as pq

        number = 1
        try:
            parquet = pq.ParquetFile(self.path)
            for record_batch in parquet.iter_batches(batch_size=size, columns=[self.id_column]):
                values = _parquet_texts(record_batch.column(0), self.path, number)
                yield [Row(number + i + 1, "" if value is None else value) for i, value in enumerate(values)]
                number += len(values)
        except (pa.ArrowException, OSError) as exc:
            raise InputError(f"{self.path}: cannot be read after row {number}: {_first_line(exc)}") from None


# ====================================================================== opening
def open_segment(path: Path | str, id_column: str | None = None) -> Segment:
    """Open ``path``, tell its format and find the identity column.  Raises :class:`InputError` when unusable:
    missing, a folder, unreadable, empty, binary or not UTF-8, not an export, no (or an ambiguous) identity
    column."""
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
        if head.startswith(_PARQUET_MAGIC):
            raise InputError(
                f"segment file {path} is a gzip-compressed Parquet file: Parquet is compressed inside already; "
                "decompress it (gunzip) and give the .parquet file"
            )
        if head.startswith(_GZIP_MAGIC):
            raise InputError(f"segment file {path} is gzip-compressed twice: decompress it once (gunzip)")
    _refuse_non_exports(path, head)
    start = head.removeprefix(codecs.BOM_UTF8).lstrip(b" \t\r\n")
    if start.startswith(b"["):
        raise InputError(
            f"segment file {path} is one JSON array, not JSON lines (one object per line): export it as JSON "
            "lines or CSV"
        )
    if start.startswith(b"{"):
        return _with_id_column(path, JSON_LINES, compressed, _jsonl_columns(path, compressed), id_column)
    delimiter = _csv_delimiter(path, head)
    columns = _csv_columns(path, compressed, delimiter)
    return _with_id_column(path, CSV, compressed, columns, id_column, delimiter)


def _with_id_column(
    path: Path,
    fmt: str,
    compressed: bool,
    columns: tuple[str, ...],
    id_column: str | None,
    delimiter: str = ",",
) -> Segment:
    def segment(name: str, key: str, recognised: bool) -> Segment:
        if columns.count(name) > 1:
            raise InputError(
                f"{path}: {columns.count(name)} columns are named {name!r}, so which one holds the identities "
                "cannot be told; rename or remove the others"
            )
        return Segment(path, fmt, compressed, columns, name, key, recognised, delimiter)

    if id_column is not None:
        if id_column not in columns:
            near = [c for c in columns if _loose(c) == _loose(id_column)]
            hint = f" (did you mean {near[0]!r}?)" if near else ""
            raise InputError(f"{path}: no column {id_column!r}{hint}; the columns are {_list_columns(columns)}")
        return segment(id_column, _LOOSE_NAMES.get(_loose(id_column), "identity"), recognised=False)
    for name, key in IDENTITY_COLUMNS:
        if name in columns:
            return segment(name, key, recognised=True)
    loose = [c for c in columns if _loose(c) in _LOOSE_NAMES]
    if len(loose) == 1:
        return segment(loose[0], _LOOSE_NAMES[_loose(loose[0])], recognised=True)
    if len(loose) > 1:
        raise InputError(
            f"{path}: several columns could hold the identity ({_list_columns(tuple(loose))}); "
            "name one with --id-column"
        )
    raise InputError(
        f"{path}: no identity column found (looked for identity, Identity, objectId, clevertapId); "
        f"the columns are {_list_columns(columns)}; name one with --id-column"
    )


def _loose(name: str) -> str:
    return re.sub(r"[\s_\-]", "", name).casefold()


def _list_columns(columns: tuple[str, ...]) -> str:
    shown = ", ".join(repr(c) for c in columns[:20])
    return shown + (f" and {len(columns) - 20} more" if len(columns) > 20 else "")


def _refuse_non_exports(path: Path, head: bytes) -> None:
    """Refuse what is not UTF-8 text: archives, other encodings, binary files."""
    for magic, problem in _NOT_AN_EXPORT:
        if head.startswith(magic):
            raise InputError(f"segment file {path} {problem}")
    if b"\x00" in head:
        raise InputError(f"segment file {path} is binary, not a CSV, JSON lines or Parquet export")
    # A cut at the sniff boundary may split a multi-byte character: decode incrementally and ignore a tail.
    try:
        codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
    except UnicodeDecodeError as exc:
        line = head[: exc.start].count(b"\n") + 1
        raise InputError(
            f"segment file {path} is not UTF-8 text (line {line}, byte {exc.start + 1}); "
            "export it again as UTF-8"
        ) from None


def _csv_delimiter(path: Path, head: bytes) -> str:
    """Comma, unless the header row has none but tabs (or semicolons, as Excel saves in some locales);
    ``.tsv`` and ``.tab`` files are tab-separated."""
    if {s.lower() for s in path.suffixes} & {".tsv", ".tab"}:
        return "\t"
    header = head.decode("utf-8", errors="ignore").removeprefix("\ufeff").splitlines()[0] if head.strip() else ""
    for delimiter in (",", "\t", ";"):
        if delimiter in header:
            return delimiter
    return ","


def _gunzip_head(path: Path) -> bytes:
    try:
        with gzip.open(path, "rb") as handle:
            return handle.read(_SNIFF_BYTES)
    except (OSError, EOFError, zlib.error) as exc:
        raise InputError(f"segment file {path} is a damaged gzip file: {_first_line(exc)}") from None


def _csv_columns(path: Path, compressed: bool, delimiter: str) -> tuple[str, ...]:
    csv.field_size_limit(max(csv.field_size_limit(), _MAX_FIELD))
    try:
        with _open_text(path, compressed) as handle:
            header = next(csv.reader(handle, delimiter=delimiter, strict=True), None)
    except csv.Error as exc:
        raise InputError(f"{path}: the header row cannot be read: {_first_line(exc)}") from None
    except (UnicodeDecodeError, EOFError, zlib.error, OSError) as exc:
        raise InputError(f"{path}: the header row cannot be read: {_first_line(exc)}") from None
    if not header or all(not column.strip() for column in header):
        raise InputError(f"{path}: the first row is empty; a CSV export starts with a header row")
    return tuple(header)


def _jsonl_columns(path: Path, compressed: bool) -> tuple[str, ...]:
    number = 0
    try:
        with _open_binary(path, compressed) as handle:
            for number, raw in enumerate(handle, start=1):
                line = _decode_line(raw, path, number)
                if line.strip():
                    return tuple(_parse_json_record(line, path, number).keys())
    except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise _damaged_gzip(path, "line", number, exc) from None
    raise InputError(f"segment file {path} holds no JSON record")


def _require_pyarrow(path: Path) -> None:
    """Parquet support is the optional extra ``distributor[parquet]`` (pyarrow, ~170 MB): say so in one line."""
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        raise InputError(
            f"segment file {path} is Parquet, which needs the optional extra: pip install 'distributor[parquet]' "
            "(or give the export as CSV or JSON lines)"
        ) from None


def _parquet_columns(path: Path) -> tuple[str, ...]:
    _require_pyarrow(path)
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return tuple(pq.read_schema(path).names)
    except (pa.ArrowException, OSError) as exc:
        raise InputError(f"segment file {path} is not a readable Parquet file: {_first_line(exc)}") from None


def _parquet_texts(column: object, path: Path, number: int) -> list[str | None]:
    """A Parquet column as exact texts: strings as they are, integers as their decimal digits, binary as UTF-8.
    Anything else (floats, decimals, dates, booleans, …) cannot be an identity without guessing: refused."""
    import pyarrow as pa

    kind = column.type  # type: ignore[attr-defined]
    if pa.types.is_dictionary(kind):
        kind = kind.value_type
        column = column.cast(kind)  # type: ignore[attr-defined]
    if pa.types.is_integer(kind):
        return column.cast(pa.string()).to_pylist()  # type: ignore[attr-defined, no-any-return]
    if pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_string_view(kind):
        try:
            return column.to_pylist()  # type: ignore[attr-defined, no-any-return]
        except UnicodeDecodeError:  # the file holds bytes that are not UTF-8: find the row
            column = column.cast(pa.large_binary())  # type: ignore[attr-defined]
    elif not (pa.types.is_binary(kind) or pa.types.is_large_binary(kind)):
        raise InputError(
            f"{path}: the identity column holds {kind} values, which cannot be identities exactly "
            "(a float loses digits and leading zeros); export it as text"
        )
    texts: list[str | None] = []
    for offset, value in enumerate(column.to_pylist()):  # type: ignore[attr-defined]
        try:
            texts.append(None if value is None else value.decode("utf-8"))
        except UnicodeDecodeError:
            raise InputError(
                f"{path}: row {number + offset + 1} is not UTF-8 text; export the segment again"
            ) from None
    return texts


def _open_binary(path: Path, compressed: bool) -> IO[bytes]:
    return gzip.open(path, "rb") if compressed else path.open("rb")


def _open_text(path: Path, compressed: bool, errors: str = "strict") -> io.TextIOWrapper:
    """Text as the csv module wants it: UTF-8 with a leading BOM dropped, line ends untranslated."""
    return io.TextIOWrapper(_open_binary(path, compressed), encoding="utf-8-sig", errors=errors, newline="")


def _decode_line(raw: bytes, path: Path, number: int) -> str:
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InputError(f"{path}: line {number} is not UTF-8 text; export the segment again as UTF-8") from None
    return line.removeprefix("\ufeff") if number == 1 else line


def _parse_json_record(line: str, path: Path, number: int) -> dict[str, object]:
    try:
        # Numbers keep their literal text: an identity 000123 or 1e3 must not become 123 or 1000.0.
        record = json.loads(line, parse_int=str, parse_float=str, parse_constant=str)
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}: line {number} is not a JSON object: {exc.msg}") from None
    if not isinstance(record, dict):
        raise InputError(f"{path}: line {number} is not a JSON object")
    return record


def _damaged_gzip(path: Path, unit: str, number: int, exc: BaseException) -> InputError:
    return InputError(
        f"{path}: the gzip file is damaged or cut short after {unit} {number} ({_first_line(exc)}); "
        "download or export it again"
    )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def refuse_unusable(segment: Segment, *, rows: int, members: int, skipped: Mapping[str, int]) -> None:
    """After reading ``segment`` whole: refuse a segment without rows, or without one usable identity (most
    likely the wrong column), with the same words for ``run`` and ``plan``."""
    if rows == 0:
        raise InputError(f"{segment.path}: the segment has no rows (only a header)")
    if members == 0:
        reasons = ", ".join(f"{count} {reason}" for reason, count in sorted(skipped.items(), key=lambda i: -i[1]))
        raise InputError(
            f"{segment.path}: no usable identity in column {segment.id_column!r} ({rows} rows: {reasons}); "
            "is it the right column? name it with --id-column"
        )

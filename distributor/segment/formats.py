"""How a segment file is told apart and read raw: its format by its first bytes, a CSV's dialect, its columns,
records read with a bounded ``readline``, bytes decoded exactly, and the :class:`InputError` that names file and
row.  :mod:`.reader` builds segments and rows on these.
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import gzip
import io
import itertools
import json
import re
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import IO, cast

from ..errors import InputError

#: The same names with case, spaces, ``_`` and ``-`` ignored: recognises ``Identity `` or ``clevertap_id`` too.
LOOSE_NAMES = {"identity": "identity", "objectid": "objectId", "clevertapid": "objectId"}

CSV = "csv"
JSON_LINES = "jsonl"
PARQUET = "parquet"

GZIP_MAGIC = b"\x1f\x8b"
PARQUET_MAGIC = b"PAR1"
SNIFF_BYTES = 64 * 1024
#: Largest record (a CSV row, quoted line breaks included, or a JSON line) read, in characters: 1 MiB.  CleverTap
#: refuses identities of 1024 characters or more and caps property values far lower; a longer record is a damaged
#: or hostile file (a gzip bomb of one endless field), refused naming file and row before it is held in memory.
MAX_RECORD = 1024 * 1024
#: An Excel ``sep=`` first line (``sep=,``, ``sep=;``, ``sep=\t``) names the separator; Excel hides it.
_EXCEL_SEPARATOR = re.compile(r"\Asep=(.)(\r\n|\n|\r)")
DELIMITER_NAMES = {",": "comma", "\t": "tab", ";": "semicolon"}
#: Characters that cannot come out of valid UTF-8: what ``surrogateescape`` makes of an undecodable byte.
UNDECODABLE = re.compile("[\udc80-\udcff]")

#: Files that are not a segment export but look like one by name, told by their first bytes: what to do instead.
_NOT_AN_EXPORT: tuple[tuple[bytes, str], ...] = (
    (b"PK\x03\x04", "is a ZIP archive (a zipped export, or an Excel workbook): unzip it, or save it as CSV"),
    (b"\xef\xbb\xbf\xef\xbb\xbf", "starts with two byte-order marks: it was converted to UTF-8 twice; export it again"),
    (b"\xff\xfe\x00\x00", "is UTF-32 text: export it again (or save it) as UTF-8"),
    (b"\x00\x00\xfe\xff", "is UTF-32 text: export it again (or save it) as UTF-8"),
    (b"\xff\xfe", "is UTF-16 text: export it again (or save it) as UTF-8"),
    (b"\xfe\xff", "is UTF-16 text: export it again (or save it) as UTF-8"),
    (b"BZh", "is bzip2-compressed: decompress it (bunzip2) or export it again as .csv.gz"),
    (b"\xfd7zXZ\x00", "is xz-compressed: decompress it (unxz) or export it again as .csv.gz"),
    (b"\x28\xb5\x2f\xfd", "is zstd-compressed: decompress it (unzstd) or export it again as .csv.gz"),
)



class RecordTooLong(Exception):
    """A record longer than :data:`MAX_RECORD`: raised by :class:`BoundedLines` before it is held whole."""


class NulByte(Exception):
    """A NUL byte in the file's text: a binary or damaged file, wherever it is."""


class BoundedLines:
    """The lines of a text stream for the csv module, each read with a bounded ``readline``: a record (the lines
    since :meth:`next_record`) longer than :data:`MAX_RECORD` raises :class:`RecordTooLong` with at most twice that
    much held, whatever the file holds; a NUL raises :class:`NulByte`.  (A generator: much cheaper per line than
    a ``__next__`` method.)"""

    def __init__(self, handle: IO[str], limit: int = MAX_RECORD) -> None:
        self._limit = limit
        self._read = 0  # characters read so far
        self._record_start = 0  # ... when the current record began
        self._lines = self._bounded(handle)

    def next_record(self) -> None:
        self._record_start = self._read

    def __iter__(self) -> Iterator[str]:
        return self._lines

    def __next__(self) -> str:
        return next(self._lines)

    def _bounded(self, handle: IO[str]) -> Iterator[str]:
        readline, limit = handle.readline, self._limit
        while line := readline(limit + 1):
            self._read += len(line)
            if self._read - self._record_start > limit:
                raise RecordTooLong
            if "\x00" in line:
                raise NulByte
            yield line



def refuse_non_exports(path: Path, head: bytes) -> None:
    """Refuse what is not UTF-8 text: archives, other encodings, binary files."""
    for magic, problem in _NOT_AN_EXPORT:
        if head.startswith(magic):
            raise InputError(f"segment file {path} {problem}")
    if b"\x00" in head:
        raise binary_file(path, "line", head[: head.index(b"\x00")].count(b"\n") + 1)
    # A cut at the sniff boundary may split a multi-byte character: decode incrementally and ignore a tail.
    try:
        codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
    except UnicodeDecodeError as exc:
        line = head[: exc.start].count(b"\n") + 1
        raise InputError(
            f"segment file {path} is not UTF-8 text (line {line}, byte {exc.start + 1}); "
            "export it again as UTF-8"
        ) from None


def csv_dialect(path: Path, head: bytes, id_column: str | None) -> tuple[str, bool]:
    """The separator, and whether the file starts with Excel's ``sep=`` line naming it.  Without that line:
    ``.tsv`` and ``.tab`` files are tab-separated; others are sniffed by :func:`_sniff_delimiter`."""
    text = head.decode("utf-8", errors="ignore").removeprefix("\ufeff")
    excel = _EXCEL_SEPARATOR.match(text)
    if excel:
        if excel.group(1) not in DELIMITER_NAMES:
            raise InputError(
                f"{path}: the first line names the separator {excel.group(1)!r}; only comma, tab and semicolon "
                "separated exports are read"
            )
        return excel.group(1), True
    if {s.lower() for s in path.suffixes} & {".tsv", ".tab"}:
        return "\t", False
    return _sniff_delimiter(text, id_column), False


def _sniff_delimiter(text: str, id_column: str | None) -> str:
    """Comma, tab or semicolon, told by the structure of the first rows, not by which character is present (a
    semicolon file may have a comma inside a header): the separator under which the header holds the identity
    column, the rows have as many fields as the header, and the header has the most fields; comma on a tie."""
    lines = text.splitlines(keepends=True)
    if len(lines) > 1 and not lines[-1].endswith(("\n", "\r")):
        lines.pop()  # cut at the sniff boundary
    best, best_score = ",", (False, False, 0)
    for delimiter in DELIMITER_NAMES:
        records = _sample_records(lines[:50], delimiter)
        header = records[0] if records else []
        names = [loose_name(name) for name in header]
        has_identity = loose_name(id_column) in names if id_column else any(name in LOOSE_NAMES for name in names)
        consistent = all(len(record) == len(header) for record in records[1:] if record)
        score = (has_identity, consistent, len(header))
        if score > best_score:
            best, best_score = delimiter, score
    return best


def _sample_records(lines: list[str], delimiter: str) -> list[list[str]]:
    records: list[list[str]] = []
    with contextlib.suppress(csv.Error):
        records.extend(csv.reader(lines, delimiter=delimiter))
    return records


def gunzip_head(path: Path) -> bytes:
    try:
        with gzip.open(path, "rb") as handle:
            return handle.read(SNIFF_BYTES)
    except (OSError, EOFError, zlib.error) as exc:
        raise InputError(f"segment file {path} is a damaged gzip file: {first_line(exc)}") from None


def csv_columns(path: Path, compressed: bool, delimiter: str, separator_line: bool) -> tuple[str, ...]:
    csv.field_size_limit(max(csv.field_size_limit(), MAX_RECORD))
    try:
        with open_text(path, compressed) as handle:
            lines = BoundedLines(handle)
            if separator_line:
                next(lines, None)
            header = next(csv.reader(lines, delimiter=delimiter, strict=True), None)
    except RecordTooLong:
        raise too_long(path, "row", 1) from None
    except NulByte:
        raise binary_file(path, "row", 1) from None
    except csv.Error as exc:
        raise InputError(f"{path}: the header row cannot be read: {first_line(exc)}") from None
    except (UnicodeDecodeError, EOFError, zlib.error, OSError) as exc:
        raise InputError(f"{path}: the header row cannot be read: {first_line(exc)}") from None
    if not header or all(not column.strip() for column in header):
        raise InputError(f"{path}: the first row is empty; a CSV export starts with a header row")
    return tuple(header)


def jsonl_columns(path: Path, compressed: bool) -> tuple[str, ...]:
    number = 0
    try:
        with open_binary(path, compressed) as handle:
            for number, raw in enumerate(bounded_raw_lines(handle, path), start=1):
                line = decode_line(raw, path, number)
                if line.strip():
                    return tuple(parse_json_record(line, path, number).keys())
    except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise damaged_gzip(path, "line", number, exc) from None
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


def parquet_columns(path: Path) -> tuple[str, ...]:
    _require_pyarrow(path)
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return tuple(pq.read_schema(path).names)
    except (pa.ArrowException, OSError) as exc:
        raise InputError(f"segment file {path} is not a readable Parquet file: {first_line(exc)}") from None


def parquet_texts(column: object, path: Path, number: int) -> list[str | None]:
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


def open_binary(path: Path, compressed: bool) -> IO[bytes]:
    return cast(IO[bytes], gzip.open(path, "rb")) if compressed else path.open("rb")


def open_text(path: Path, compressed: bool, errors: str = "strict") -> io.TextIOWrapper:
    """Text as the csv module wants it: UTF-8 with a leading BOM dropped, line ends untranslated."""
    return io.TextIOWrapper(open_binary(path, compressed), encoding="utf-8-sig", errors=errors, newline="")


def bounded_raw_lines(handle: IO[bytes], path: Path) -> Iterator[bytes]:
    """The lines of a JSON lines file, each read with a bounded ``readline``: a line longer than
    :data:`MAX_RECORD` bytes, or holding a NUL, is refused naming it before more of it is read."""
    for number in itertools.count(1):
        raw = handle.readline(MAX_RECORD + 1)
        if not raw:
            return
        if len(raw) > MAX_RECORD:
            raise too_long(path, "line", number, "bytes")
        if b"\x00" in raw:
            raise binary_file(path, "line", number)
        yield raw


def too_long(path: Path, unit: str, number: int, measure: str = "characters") -> InputError:
    return InputError(
        f"{path}: {unit} {number} is longer than {MAX_RECORD:,} {measure}, far beyond any CleverTap profile "
        "(an unclosed quote, or a damaged file); fix it or export the segment again"
    )


def binary_file(path: Path, unit: str, number: int) -> InputError:
    """A NUL byte, wherever it is: no export holds one, so the file is binary or damaged — refused whole."""
    return InputError(
        f"segment file {path} is binary, not a CSV, JSON lines or Parquet export ({unit} {number} holds a NUL byte)"
    )


def decode_line(raw: bytes, path: Path, number: int) -> str:
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InputError(f"{path}: line {number} is not UTF-8 text; export the segment again as UTF-8") from None
    return line.removeprefix("\ufeff") if number == 1 else line


def parse_json_record(line: str, path: Path, number: int) -> dict[str, object]:
    try:
        # Numbers keep their literal text: an identity 000123 or 1e3 must not become 123 or 1000.0.
        record = json.loads(line, parse_int=str, parse_float=str, parse_constant=str)
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}: line {number} is not a JSON object: {exc.msg}") from None
    if not isinstance(record, dict):
        raise InputError(f"{path}: line {number} is not a JSON object")
    return record


def damaged_gzip(path: Path, unit: str, number: int, exc: BaseException) -> InputError:
    return InputError(
        f"{path}: the gzip file is damaged or cut short after {unit} {number} ({first_line(exc)}); "
        "download or export it again"
    )


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def loose_name(name: str) -> str:
    return re.sub(r"[\s_\-]", "", name).casefold()

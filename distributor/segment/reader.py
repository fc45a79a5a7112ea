"""Reading CleverTap segment exports exactly, once :mod:`.opening` has told each file's format and identity column.

Supported: *Find People* CSV downloads and Export-center profile exports as CSV, JSON lines and Parquet, CSV and
JSON lines optionally gzip-compressed.  The format is told by the file's content, never by its name alone: gzip
and Parquet by their magic numbers, JSON lines by a first ``{``, anything else is CSV.  CSV may be comma-, tab- or
semicolon-separated (named by Excel's ``sep=`` first line, else told by the structure of the header and the first
rows, not by which character appears; ``.tsv`` files are tab-separated), UTF-8 with or without a BOM, with CRLF, LF
or CR line ends.  Files are read as a stream, a batch at a time (a CSV a block of text at a time,
:mod:`.csv_blocks`; a JSON line with a bounded ``readline``): a record (a CSV row, quoted line breaks included, or
a JSON line) longer than :data:`MAX_RECORD` is refused before it is held whole, so memory stays bounded whatever
the file holds (a gzip bomb of one endless field included).

A segment may come in several parts (CleverTap splits large exports): :func:`open_segment` takes files, folders
and glob patterns, reads every part as one :class:`Segment`, and names rows ``file:row``.

Identities are kept byte for byte: CSV cells are taken as the csv module parses them (RFC 4180, the same dialect
the output is written in), with no NA conversion, no type inference and no stripping (``000123`` stays ``000123``,
``null`` stays ``null``, `` a `` keeps its spaces); JSON numbers keep their literal text; Parquet integer columns are
cast to their exact decimal text.

Row numbers are those a spreadsheet shows: in a CSV the header is row 1 and the first member row 2 (a quoted
field spanning lines is one row; a blank line is a row with an empty identity); in JSON lines the row is the line
number; in Parquet, the record number plus one (as if it had a header).  Excel's ``sep=`` line is not a row (Excel
hides it): the header stays row 1.

Input that cannot be read exactly is refused with an :class:`InputError` naming the file and the row, never
guessed at: a row with more or fewer fields than the header (an unquoted comma shifts every column after it), an
unclosed quote, a byte that is not UTF-8, a gzip file cut short, a record longer than :data:`MAX_RECORD`.  A NUL
byte refuses the file as binary wherever it is (no export holds one; a NUL that a JSON value spells as ``\u0000``
is text, and its row is skipped as an invalid identity).  The pandas C parser was not used for CSV because,
with ``usecols``, it silently accepts rows with extra fields and takes the identity from the wrong column.
"""

from __future__ import annotations

import csv
import gzip
import zlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from ..errors import InputError
from .csv_blocks import CsvBlocks, WrongWidth
from .formats import (
    CSV,
    DELIMITER_NAMES,
    JSON_LINES,
    MAX_RECORD,
    PARQUET,
    UNDECODABLE,
    BoundedLines,
    NulByte,
    RecordTooLong,
    binary_file,
    bounded_raw_lines,
    damaged_gzip,
    decode_line,
    first_line,
    open_binary,
    open_text,
    parquet_texts,
    parse_json_record,
    too_long,
)

#: How a row is named in messages and reports: its number in a one-file segment, ``file:number`` in several parts.
RowLabel = int | str


class Row(NamedTuple):
    """One row of the segment: its number as a spreadsheet shows it (``file:number`` when the segment has several
    parts), and its identity exactly as written."""

    number: RowLabel
    identity: str


class Rows(NamedTuple):
    """A batch of rows side by side: their labels (a ``range`` when they follow each other) and identities."""

    labels: Sequence[RowLabel]
    identities: list[str]


def _in_batches(blocks: Iterator[list[str]], size: int, first: int) -> Iterator[Rows]:
    """The identities of consecutive rows from row ``first``, given a block at a time, as batches of ``size``."""
    pending: list[str] = []
    for identities in blocks:
        pending += identities
        while len(pending) >= size:
            yield Rows(range(first, first + size), pending[:size])
            del pending[:size]
            first += size
    if pending:
        yield Rows(range(first, first + len(pending)), pending)


def _read(blocks: CsvBlocks | None) -> int:
    """The last row read whole (the header, row 1, before the blocks begin)."""
    return 1 if blocks is None else blocks.rows


@dataclass(frozen=True)
class SegmentFile:
    """One opened export file (a segment may have several parts); :meth:`batches` streams its identities."""

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
    #: The CSV starts with Excel's ``sep=`` line (not a row: Excel hides it, so the header is still row 1).
    separator_line: bool = False

    def describe(self) -> str:
        """One line for the log: the file, its format and which column holds the identities."""
        how = "recognised" if self.id_column_recognised else "as asked"
        kind = f"{'gzip-compressed ' if self.compressed else ''}{self.format.upper()}"
        if self.format == CSV and self.delimiter != ",":
            kind += f", {DELIMITER_NAMES[self.delimiter]}-separated"
        where = f"column {self.columns.index(self.id_column) + 1} of {len(self.columns)}"
        column = f"identity column {self.id_column!r} ({how}), {where}"
        return f"{self.path} ({kind}): {column}, keyed as CleverTap {self.key}"

    def batches(self, size: int = 50_000) -> Iterator[list[Row]]:
        """Yield the rows in file order, ``size`` at a time.  Raises :class:`InputError` on unreadable content,
        naming the file and the row."""
        for rows in self.rows(size):
            yield list(map(Row, rows.labels, rows.identities))

    def rows(self, size: int = 50_000) -> Iterator[Rows]:
        """The rows in file order, ``size`` at a time, as :class:`Rows` (no object per row): what
        :meth:`batches` yields, for readers of millions of rows."""
        reader = {CSV: self._csv_rows, JSON_LINES: self._jsonl_rows, PARQUET: self._parquet_rows}
        yield from reader[self.format](size)

    # ------------------------------------------------------------------ CSV
    def _csv_rows(self, size: int) -> Iterator[Rows]:
        csv.field_size_limit(max(csv.field_size_limit(), MAX_RECORD))
        blocks: CsvBlocks | None = None
        try:
            with open_text(self.path, self.compressed) as handle:
                lines = BoundedLines(handle)
                if self.separator_line:
                    next(lines)
                next(csv.reader(lines, delimiter=self.delimiter, strict=True))  # the header, read by open_segment
                index, width = self.columns.index(self.id_column), len(self.columns)
                blocks = CsvBlocks(handle, delimiter=self.delimiter, width=width, index=index)
                yield from _in_batches(blocks.identities(), size, first=2)  # the header is row 1
        except UnicodeDecodeError:
            raise self._not_utf8() from None
        except RecordTooLong:
            raise too_long(self.path, "row", _read(blocks) + 1) from None
        except NulByte:
            raise binary_file(self.path, "row", _read(blocks) + 1) from None
        except WrongWidth as exc:
            raise InputError(
                f"{self.path}: row {_read(blocks) + 1} has {exc.fields} fields but the header has "
                f"{len(self.columns)}, so its {self.id_column!r} cannot be told for sure (a separator inside an "
                "unquoted value?); fix the row or export the segment again"
            ) from None
        except csv.Error as exc:
            raise InputError(f"{self.path}: row {_read(blocks) + 1} is not valid CSV: {first_line(exc)}") from None
        except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
            raise damaged_gzip(self.path, "row", _read(blocks), exc) from None
        except OSError as exc:
            raise InputError(f"{self.path}: cannot be read after row {_read(blocks)}: {first_line(exc)}") from None

    def _not_utf8(self) -> InputError:
        """Find the first row holding a byte that is not UTF-8 (a second pass, only when reading failed)."""
        with open_text(self.path, self.compressed, errors="surrogateescape") as handle:
            lines = BoundedLines(handle)
            if self.separator_line:
                next(lines, None)
            try:
                for number, record in enumerate(csv.reader(lines, delimiter=self.delimiter), start=1):
                    lines.next_record()
                    for column, value in enumerate(record):
                        if UNDECODABLE.search(value):
                            name = self.columns[column] if column < len(self.columns) else f"field {column + 1}"
                            return InputError(
                                f"{self.path}: row {number} is not UTF-8 text (in column {name!r}); "
                                "export the segment again as UTF-8"
                            )
            except (RecordTooLong, NulByte, csv.Error):
                pass
        return InputError(f"{self.path}: is not UTF-8 text; export the segment again as UTF-8")

    # ------------------------------------------------------------------ JSON lines
    def _jsonl_rows(self, size: int) -> Iterator[Rows]:
        numbers: list[int] = []
        values: list[str] = []
        number = 0
        try:
            with open_binary(self.path, self.compressed) as handle:
                for number, raw in enumerate(bounded_raw_lines(handle, self.path), start=1):
                    line = decode_line(raw, self.path, number)
                    if not line.strip():
                        continue
                    record = parse_json_record(line, self.path, number)
                    numbers.append(number)
                    values.append(self._json_identity(record.get(self.id_column), number))
                    if len(values) >= size:
                        yield Rows(numbers, values)
                        numbers, values = [], []
        except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
            raise damaged_gzip(self.path, "line", number, exc) from None
        except OSError as exc:
            raise InputError(f"{self.path}: cannot be read after line {number}: {first_line(exc)}") from None
        if values:
            yield Rows(numbers, values)

    def _json_identity(self, value: object, number: int) -> str:
        """The identity's text: strings as they are, numbers as written (see :func:`parse_json_record`),
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
    def _parquet_rows(self, size: int) -> Iterator[Rows]:
        import pyarrow as pa
        import pyarrow.parquet as pq

        number = 1
        try:
            parquet = pq.ParquetFile(self.path)
            for record_batch in parquet.iter_batches(batch_size=size, columns=[self.id_column]):
                values = parquet_texts(record_batch.column(0), self.path, number)
                texts = ["" if value is None else value for value in values]
                yield Rows(range(number + 1, number + 1 + len(texts)), texts)
                number += len(values)
        except (pa.ArrowException, OSError) as exc:
            raise InputError(f"{self.path}: cannot be read after row {number}: {first_line(exc)}") from None


@dataclass(frozen=True)
class Segment:
    """An opened segment: one export file, or several parts read as one (CleverTap splits large exports near
    100 MB per file).  :meth:`batches` streams the identities of every part in order; in a segment of several
    parts a row is named ``file:row`` (the file's name, or its path when two parts share a name)."""

    parts: tuple[SegmentFile, ...]

    @property
    def first(self) -> SegmentFile:
        return self.parts[0]

    @property
    def name(self) -> str:
        """What was read, for messages and the journal's ``runs.segment``: the file, or every part's path."""
        return " + ".join(str(part.path) for part in self.parts)

    @property
    def path(self) -> Path:
        """The (first) file."""
        return self.first.path

    @property
    def format(self) -> str:
        return self.first.format

    @property
    def compressed(self) -> bool:
        return self.first.compressed

    @property
    def columns(self) -> tuple[str, ...]:
        return self.first.columns

    @property
    def delimiter(self) -> str:
        return self.first.delimiter

    @property
    def id_column(self) -> str:
        return self.first.id_column

    @property
    def key(self) -> str:
        return self.first.key

    @property
    def id_column_recognised(self) -> bool:
        return self.first.id_column_recognised

    def describe(self) -> str:
        """One line for the log: the file(s), the format(s) and which column holds the identities."""
        if len(self.parts) == 1:
            return self.first.describe()
        how = "recognised" if self.id_column_recognised else "as asked"
        kinds = sorted({f"{'gzip-compressed ' if p.compressed else ''}{p.format.upper()}" for p in self.parts})
        return (
            f"{len(self.parts)} parts read as one segment ({', '.join(kinds)}): {self.name}; identity column "
            f"{self.id_column!r} ({how}), keyed as CleverTap {self.key}"
        )

    def batches(self, size: int = 50_000) -> Iterator[list[Row]]:
        """Yield the rows of every part in order, ``size`` at most at a time (a batch never spans two parts)."""
        for rows in self.rows(size):
            yield list(map(Row, rows.labels, rows.identities))

    def rows(self, size: int = 50_000) -> Iterator[Rows]:
        """What :meth:`batches` yields, as :class:`Rows` (no object per row)."""
        if len(self.parts) == 1:
            yield from self.first.rows(size)
            return
        for part, name in zip(self.parts, self._part_labels(), strict=True):
            for rows in part.rows(size):
                yield Rows([f"{name}:{number}" for number in rows.labels], rows.identities)

    def _part_labels(self) -> list[str]:
        names = [part.path.name for part in self.parts]
        if len(set(names)) == len(names):
            return names
        return [str(part.path) for part in self.parts]


def refuse_unusable(segment: Segment, *, rows: int, members: int, skipped: Mapping[str, int]) -> None:
    """After reading ``segment`` whole: refuse a segment without rows, or without one usable identity (most
    likely the wrong column), with the same words for ``run`` and ``plan``."""
    if rows == 0:
        raise InputError(f"{segment.name}: the segment has no rows (only a header)")
    if members == 0:
        reasons = ", ".join(f"{count} {reason}" for reason, count in sorted(skipped.items(), key=lambda i: -i[1]))
        raise InputError(
            f"{segment.name}: no usable identity in column {segment.id_column!r} ({rows} rows: {reasons}); "
            "is it the right column? name it with --id-column"
        )

"""A CSV export's identity column read a block of text at a time (issue 13.2), with every guarantee of a row-by-row
read: the csv module parses every record, a record longer than :data:`~.formats.MAX_RECORD` characters or a NUL
anywhere refuses the file naming the row, and a row with more or fewer fields than the header is refused.

What a row-by-row reader checks per line is checked here per block, in C: a NUL by one search of the block; the
record bound by the block's construction (a block is at most :data:`BLOCK` characters ending on a line break, so a
longer line crosses its end and is measured there) and by the csv module's line count (a block whose records are
one line each needs no other check); the field count by the set of the records' lengths.  Only a block holding a
record of several lines (a quoted line break), an error or an unfinished record is read again record by record
(:meth:`CsvBlocks._exactly`), and the lines of a record still open at its end are carried into the next block.
"""

from __future__ import annotations

import csv
import io
import operator
from collections.abc import Iterator
from typing import IO, NoReturn

from .formats import MAX_RECORD, NulByte, RecordTooLong

#: Characters read at a time: below :data:`MAX_RECORD`, so that a longer line always crosses a block's end.
BLOCK = 64 * 1024
#: Characters ``str.splitlines`` ends a line at but the csv module does not: a block holding one is split by a
#: ``newline=""`` text stream instead (``\n``, ``\r`` and ``\r\n`` only).
_OTHER_BREAKS = ("\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029")


class WrongWidth(Exception):
    """A record with more or fewer fields than the header (and not a blank line)."""

    def __init__(self, fields: int) -> None:
        super().__init__(fields)
        self.fields = fields


class CsvBlocks:
    """The identity column of the records after the header of ``handle`` (positioned after the header, which is
    row ``rows``): :meth:`identities` yields them a block at a time, in file order, one per row (``""`` for a
    blank line).  :attr:`rows` is the number of the last row read whole, so an exception (:class:`RecordTooLong`,
    :class:`NulByte`, :class:`WrongWidth`, ``csv.Error``, a decoding or gzip error) is about row ``rows + 1``."""

    def __init__(self, handle: IO[str], *, delimiter: str, width: int, index: int, rows: int = 1) -> None:
        self._handle = handle
        self._delimiter = delimiter
        self._width = width
        self._identity = operator.itemgetter(index)
        self.rows = rows
        self._open: list[str] = []  # the lines of a record not finished at the last block's end

    def identities(self) -> Iterator[list[str]]:
        read, readline = self._handle.read, self._handle.readline
        while block := read(BLOCK):
            if not block.endswith("\n"):  # a line cut, or a "\r" that may be a "\r\n" cut in two
                block = self._whole_line(block, readline(MAX_RECORD + 1))
            if "\x00" in block:
                self._refuse_nul(self._open + _lines(block))
            lines = _lines(block)
            if self._open:
                lines = self._open + lines
                self._open = []
            yield self._quickly(lines)
        if self._open:  # a quoted field never closed: the csv module says so, naming the row
            yield self._exactly(self._open, final=True)

    def _whole_line(self, block: str, rest: str) -> str:
        """``block`` completed to its line's end with ``rest``; a line longer than :data:`MAX_RECORD` is refused
        here, with at most twice that much held, once the rows before it are read."""
        start = max(block.rfind("\n"), block.rfind("\r")) + 1
        if len(block) - start + len(rest) > MAX_RECORD:
            before = self._open + _lines(block[:start])
            if any("\x00" in line for line in before):
                self._refuse_nul(before)
            self._exactly(before, final=False)
            raise RecordTooLong
        return block + rest

    def _refuse_nul(self, lines: list[str]) -> NoReturn:
        """Raise :class:`NulByte` once the rows before the first line holding a NUL are read."""
        first = next(n for n, line in enumerate(lines) if "\x00" in line)
        self._exactly(lines[:first], final=False)
        raise NulByte

    def _quickly(self, lines: list[str]) -> list[str]:
        """The block's identities when its records are one line each and as wide as the header; else
        :meth:`_exactly`."""
        reader = csv.reader(lines, delimiter=self._delimiter, strict=True)
        try:
            records = list(reader)
        except csv.Error:
            return self._exactly(lines, final=False)
        if reader.line_num != len(records):  # a record of several lines: measured one by one
            return self._exactly(lines, final=False)
        widths = set(map(len, records))
        if widths == {self._width}:
            identities = list(map(self._identity, records))
        elif widths <= {self._width, 0}:  # blank lines: rows with an empty identity
            identities = [self._identity(record) if record else "" for record in records]
        else:
            return self._exactly(lines, final=False)
        self.rows += len(identities)
        return identities

    def _exactly(self, lines: list[str], *, final: bool) -> list[str]:
        """The identities of ``lines`` record by record: each record measured, the first wrong one raised with
        :attr:`rows` before it; the lines of a record still open at the end (unless ``final``) kept for the next
        block, refused when already longer than :data:`MAX_RECORD`."""
        reader = csv.reader(iter(lines), delimiter=self._delimiter, strict=True)
        identities: list[str] = []
        used = 0  # lines of the records read whole
        while True:
            try:
                record = next(reader)
            except StopIteration:
                break
            except csv.Error:
                if sum(map(len, lines[used : reader.line_num])) > MAX_RECORD:
                    raise RecordTooLong from None  # the bound first, as a line-by-line reader would see it
                if final or reader.line_num < len(lines):
                    raise
                self._open = lines[used:]  # the end of the block is inside a quoted field: carried on
                if sum(map(len, self._open)) > MAX_RECORD:
                    raise RecordTooLong from None
                break
            if sum(map(len, lines[used : reader.line_num])) > MAX_RECORD:
                raise RecordTooLong
            used = reader.line_num
            if len(record) == self._width:
                identities.append(self._identity(record))
            elif not record:
                identities.append("")
            else:
                raise WrongWidth(len(record))
            self.rows += 1
        return identities


def _lines(block: str) -> list[str]:
    """The lines of ``block`` as the csv module must see them: ended by ``\\n``, ``\\r`` or ``\\r\\n`` only."""
    if any(other in block for other in _OTHER_BREAKS):
        return list(io.StringIO(block, newline=""))
    return block.splitlines(keepends=True)

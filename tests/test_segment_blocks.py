"""The CSV reader reads a block of text at a time (issue 13.2): whatever falls on a block's edge — a quoted line
break, a ``\\r\\n`` cut in two, a long record, a wrong row — reads exactly as the csv module reads the file row by
row.  The files are several blocks long, made from seeded random rows."""

from __future__ import annotations

import csv
import gzip
import io
import random
from pathlib import Path

import pytest

from distributor.errors import InputError
from distributor.segment import MAX_RECORD, identities, open_segment
from distributor.segment.csv_blocks import BLOCK

#: Values that test the reader's edges: quoted line breaks of every kind, characters ``str.splitlines`` breaks at
#: but CSV does not, separators and quotes inside quotes, blank-looking values.
ODD_VALUES = ["a\nb", "a\r\nb", "a\rb", "x\u2028y", "x\x85y", "x\x0by\x1cz", 'say "hi"', "1,2", " ", "", "ü€😀"]


def random_rows(rng: random.Random, count: int) -> list[list[str]]:
    rows = []
    for n in range(count):
        identity = rng.choice([f"cust-{n}", f"cust-{n}", f"{n:09d}", rng.choice(ODD_VALUES) + str(n)])
        note = rng.choice(ODD_VALUES + ["plain"] * 20 + ["z" * rng.randrange(1, 3000)])
        rows.append([identity, note])
    return rows


def as_csv(rows: list[list[str]], line_end: str) -> str:
    """RFC 4180 with ``line_end``: a field holding a separator, a quote or any line break is quoted (the csv
    module's writer quotes only the characters of its own line end)."""

    def field(value: str) -> str:
        return '"' + value.replace('"', '""') + '"' if any(c in value for c in ',"\r\n') else value

    return "".join(",".join(map(field, row)) + line_end for row in [["identity", "Note"], *rows])


def read(path: Path) -> list[tuple[int | str, str]]:
    return [(row.number, row.identity) for batch in open_segment(path).batches(700) for row in batch]


def expected(text: str) -> list[tuple[int, str]]:
    """The csv module, row by row, over the whole text."""
    records = list(csv.reader(io.StringIO(text, newline=""), strict=True))[1:]
    return [(number, record[0] if record else "") for number, record in enumerate(records, start=2)]


@pytest.mark.parametrize("line_end", ["\r\n", "\n", "\r"], ids=["crlf", "lf", "cr"])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_rows_across_block_edges_read_as_the_csv_module_reads_them(tmp_path: Path, seed: int, line_end: str) -> None:
    rng = random.Random(seed)
    text = as_csv(random_rows(rng, 12_000), line_end)
    # blank lines too, some of them "\r\n" that a block may cut between "\r" and "\n"
    text = text.replace(f"cust-7{line_end}", f"cust-7{line_end}{line_end}{line_end}")
    assert len(text) > 8 * BLOCK
    path = tmp_path / "s.csv.gz"
    path.write_bytes(gzip.compress(text.encode()))

    assert read(path) == expected(text)


@pytest.mark.parametrize("offset", [-3, -1, 0, 1, 2])
def test_a_crlf_or_a_quoted_break_on_a_block_edge(tmp_path: Path, offset: int) -> None:
    """Rows laid out so that a block ends right inside, before or after a ``\\r\\n`` or a quoted line break."""
    header = "identity,Note\r\n"
    filler = "f" * (BLOCK - len(header) - len("a,") - 1 + offset)
    text = f'{header}a,{filler}\r\n\r\nb,"x\r\ny"\r\nc,z\r\n'
    path = tmp_path / "s.csv"
    path.write_text(text, newline="")
    assert read(path) == [(2, "a"), (3, ""), (4, "b"), (5, "c")] == expected(text)


def test_a_record_over_the_bound_spread_over_many_blocks_is_refused_naming_its_row(tmp_path: Path) -> None:
    """Short lines, one quoted field: the record is measured across blocks, the rows before it read."""
    rows = "".join(f"cust-{n},x\n" for n in range(10_000))
    path = tmp_path / "s.csv"
    path.write_text(f'identity,Note\n{rows}b,"' + "n\n" * (MAX_RECORD // 2 + 10) + '"\nc,y\n', newline="")
    with pytest.raises(InputError, match=r"row 10002 is longer than 1,048,576 characters"):
        read(path)


def test_many_fields_of_quoted_breaks_cannot_grow_a_record_without_bound(tmp_path: Path) -> None:
    """Each field and line short, the record endless: refused at the bound, not held whole."""
    path = tmp_path / "s.csv.gz"
    with gzip.open(path, "wt", newline="") as handle:
        handle.write("identity,Note\na,x\n")
        for _ in range(200):
            handle.write('"a\n",' * 10_000)
    with pytest.raises(InputError, match=r"row 3 is longer than 1,048,576 characters"):
        read(path)


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ("Doe, John,2\r\n", r"row 5003 has 3 fields but the header has 2"),
        ('"ab"cd,y\r\n', r"row 5003 is not valid CSV: ',' expected after '\"'"),
        ('"open,y\r\n', r"row 5003 is not valid CSV: unexpected end of data"),
        ("a\x00b,y\r\n", r"\((line|row) 5003 holds a NUL byte\)"),
    ],
    ids=["fields", "quote", "unclosed", "nul"],
)
def test_a_wrong_row_deep_in_a_block_is_named(tmp_path: Path, bad: str, message: str) -> None:
    rows = "".join(f"cust-{n},x\r\n" for n in range(5_001))
    path = tmp_path / "s.csv"
    path.write_text(f"Name,identity\r\n{rows}{bad}" + "c,d\r\n" * 100, newline="")
    with pytest.raises(InputError, match=message):
        read(path)


def test_a_batch_is_judged_as_row_by_row() -> None:
    """``invalid_rows`` (set operations over a batch) refuses exactly what ``invalid_reason`` refuses, per row."""
    rng = random.Random(5)
    odd = ["", " ", "\t\n", "null", "NuLl", "N/A", "-1", "0", "-InF", "XxXxXx", "x" * 1023, "y" * 1024, "a\x00b",
           "\ud800", "ü\udfff", "é", " a ", "nulls", "KELVIN", "\u212a"]
    values = [rng.choice([*odd, f"cust-{n}"]) for n in range(5_000)]
    expected = [(at, reason) for at, value in enumerate(values) if (reason := identities.invalid_reason(value))]
    assert identities.invalid_rows(values) == expected
    assert identities.invalid_rows([f"cust-{n}" for n in range(100)]) == []


def test_every_spelling_of_a_placeholder_is_known() -> None:
    """The batch check knows each placeholder in every mix of ASCII case: no other character lower-cases to one
    of their letters (U+212A, the Kelvin sign, lower-cases to ``k``, in no placeholder)."""
    letters = set("".join(identities.PLACEHOLDERS))
    for code in range(0x80, 0x110000):
        character = chr(code)
        assert not set(character.lower()) <= letters, hex(code)

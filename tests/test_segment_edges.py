"""Input edge cases handled one way wherever they appear: a NUL byte, Excel's ``sep=`` line, a separator sniffed
from the header's structure, UTF-32."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from distributor.errors import InputError
from distributor.segment import open_segment


def rows(path: Path) -> list[tuple[int | str, str]]:
    return [(row.number, row.identity) for batch in open_segment(path).batches() for row in batch]


FILLER = "".join(f"cust-{i:06d},x@example.com\r\n" for i in range(5_000))  # about 130 KiB: beyond the first 64 KiB


@pytest.mark.parametrize("where", ["first-row", "deep"])
@pytest.mark.parametrize("column", ["identity", "other"])
@pytest.mark.parametrize("compressed", [False, True], ids=["plain", "gzip"])
def test_a_nul_byte_refuses_the_file_as_binary_wherever_it_is(tmp_path: Path, where: str, column: str, compressed: bool) -> None:
    """Once refused early and skipped (or even kept) late: now the same refusal, naming the row."""
    bad = "a\x00b,x@example.com\r\n" if column == "identity" else "a,x\x00@example.com\r\n"
    before = "" if where == "first-row" else FILLER
    data = ("identity,Email\r\n" + before + bad + FILLER).encode()
    path = tmp_path / ("s.csv.gz" if compressed else "s.csv")
    path.write_bytes(gzip.compress(data) if compressed else data)
    row = 2 if where == "first-row" else 5_002
    with pytest.raises(InputError, match=rf"is binary, not a CSV, JSON lines or Parquet export \((line|row) {row} holds a NUL byte\)"):
        rows(path)


@pytest.mark.parametrize("where", [1, 4_000])
def test_a_nul_byte_in_json_lines_refuses_the_file_wherever_it_is(tmp_path: Path, where: int) -> None:
    lines = [f'{{"identity": "c{i}"}}\n' for i in range(5_000)]
    lines[where - 1] = '{"identity": "c\x00"}\n'
    path = tmp_path / "s.jsonl"
    path.write_text("".join(lines))
    with pytest.raises(InputError, match=rf"is binary, .* \(line {where} holds a NUL byte\)"):
        rows(path)


def test_a_json_escaped_nul_is_a_value_not_a_byte_and_its_row_is_skipped_later(tmp_path: Path) -> None:
    """``"\\u0000"`` is text spelling a NUL, not a NUL byte: the file is read, the identity refused as invalid."""
    path = tmp_path / "s.jsonl"
    path.write_text('{"identity": "a\\u0000"}\n{"identity": "b"}\n')
    assert rows(path) == [(1, "a\x00"), (2, "b")]


@pytest.mark.parametrize(
    ("separator", "text"),
    [
        (";", "sep=;\r\nidentity;Name\r\n000123;Doe, John\r\nb;x\r\n"),
        (",", "sep=,\nName;Title,identity\nDoe;Dr,000123\nx,b\n"),
        ("\t", "sep=\t\nidentity\tName\n000123\tDoe, John\nb\tx\n"),
    ],
    ids=["semicolon", "comma", "tab"],
)
def test_excels_sep_line_names_the_separator_and_is_not_a_row(tmp_path: Path, separator: str, text: str) -> None:
    path = tmp_path / "s.csv"
    path.write_bytes(text.encode())
    segment = open_segment(path)
    assert segment.delimiter == separator and segment.id_column == "identity"
    assert rows(path) == [(2, "000123"), (3, "b")]  # as Excel shows it: the header is row 1


def test_a_sep_line_naming_another_separator_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "s.csv"
    path.write_text("sep=|\nidentity|Name\na|b\n")
    with pytest.raises(InputError, match=r"names the separator '\|'; only comma, tab and semicolon"):
        open_segment(path)


@pytest.mark.parametrize(
    "text",
    [
        "identity;Name, first;Email\na;Smith, J;x@y\nb;Doe, K;z@y\n",
        "Name, first;identity\nSmith, J;a\nDoe, K;b\n",
        "identity;Name, first\na;Smith, J\nb;Doe, K\n",  # a comma in every row too: same field counts either way
    ],
)
def test_a_semicolon_file_with_commas_in_its_header_is_semicolon_separated(tmp_path: Path, text: str) -> None:
    path = tmp_path / "s.csv"
    path.write_text(text)
    assert open_segment(path).delimiter == ";"
    assert rows(path) == [(2, "a"), (3, "b")]


def test_a_comma_file_with_semicolons_in_its_header_stays_comma_separated(tmp_path: Path) -> None:
    path = tmp_path / "s.csv"
    path.write_text("identity,Tags;Labels,Email\na,x;y,p@q\nb,z,r@q\n")
    assert open_segment(path).delimiter == ","
    assert rows(path) == [(2, "a"), (3, "b")]


@pytest.mark.parametrize("encoding", ["utf-32", "utf-32-le", "utf-32-be"])
def test_utf32_is_named_utf32(tmp_path: Path, encoding: str) -> None:
    path = tmp_path / "s.csv"
    bom = {"utf-32-le": b"\xff\xfe\x00\x00", "utf-32-be": b"\x00\x00\xfe\xff"}.get(encoding, b"")
    path.write_bytes(bom + "identity\nü\n".encode(encoding))
    with pytest.raises(InputError, match="is UTF-32 text: export it again"):
        open_segment(path)


def test_utf16_is_still_named_utf16(tmp_path: Path) -> None:
    path = tmp_path / "s.csv"
    path.write_bytes("identity\nü\n".encode("utf-16"))
    with pytest.raises(InputError, match="is UTF-16 text"):
        open_segment(path)

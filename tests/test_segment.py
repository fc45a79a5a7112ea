"""Reading segment exports: formats, the identity column, exact values, and refusals that name the problem."""

from __future__ import annotations

import gzip
import zipfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from distributor.errors import InputError
from distributor.segment import open_segment


def rows(path: Path, **options: str) -> list[tuple[int, str]]:
    segment = open_segment(path, **options)
    return [(row.number, row.identity) for batch in segment.batches(2) for row in batch]


EXACT = ["000123", "+4915112345678", "NA", "null", "", "  padded  ", "a,b", 'say "hi"', "line\nbreak", "ü", "=1+1",
         "\ttab", "crlf\r\ninside", "@home", "-5", "Ω\u0301", "x" * 2000]


def cell(value: str, delimiter: str = ",") -> str:
    needs = any(c in value for c in f'{delimiter}"\r\n')
    return '"' + value.replace('"', '""') + '"' if needs else value


def csv_text(values: list[str], *, end: str = "\r\n", delimiter: str = ",", last_end: bool = True) -> str:
    lines = [f"identity{delimiter}Email"] + [f"{cell(v, delimiter)}{delimiter}x@example.com" for v in values]
    return end.join(lines) + (end if last_end else "")


@pytest.mark.parametrize("bom", [b"", b"\xef\xbb\xbf"], ids=["no-bom", "bom"])
@pytest.mark.parametrize("end", ["\r\n", "\n", "\r"], ids=["crlf", "lf", "cr"])
@pytest.mark.parametrize("last_end", [True, False], ids=["final-newline", "no-final-newline"])
def test_csv_values_stay_exact_with_spreadsheet_row_numbers(tmp_path: Path, bom: bytes, end: str, last_end: bool) -> None:
    path = tmp_path / "s.csv"
    path.write_bytes(bom + csv_text(EXACT, end=end, last_end=last_end).encode())
    # a quoted line break is one row: numbers are what a spreadsheet shows, the header being row 1
    assert rows(path) == list(enumerate(EXACT, start=2))


def test_gzip_is_told_by_its_bytes_not_its_name(tmp_path: Path) -> None:
    path = tmp_path / "export-0001.csv"
    path.write_bytes(gzip.compress(b"\xef\xbb\xbf" + csv_text(EXACT).encode()))
    segment = open_segment(path)
    assert segment.compressed and segment.format == "csv"
    assert "gzip-compressed CSV" in segment.describe()
    assert [v for _, v in rows(path)] == EXACT


def test_a_gz_name_on_plain_text_is_read_as_plain_text(tmp_path: Path) -> None:
    path = tmp_path / "s.csv.gz"
    path.write_text(csv_text(["a"]))
    assert not open_segment(path).compressed and rows(path) == [(2, "a")]


def test_extra_columns_are_ignored_wherever_the_identity_column_is(tmp_path: Path) -> None:
    path = tmp_path / "s.csv"
    path.write_text('Email,Name,identity,Phone\na@x,"Doe, John",000042,+491\nb@x,,"  7 ",\n')
    segment = open_segment(path)
    assert "column 3 of 4" in segment.describe()
    assert rows(path) == [(2, "000042"), (3, "  7 ")]


def test_a_blank_line_is_a_row_with_an_empty_identity(tmp_path: Path) -> None:
    one = tmp_path / "one.csv"
    one.write_text("identity\na\n\nb\n")
    assert rows(one) == [(2, "a"), (3, ""), (4, "b")]
    two = tmp_path / "two.csv"
    two.write_text("identity,Email\r\na,x\r\n\r\nb,y\r\n")
    assert rows(two) == [(2, "a"), (3, ""), (4, "b")]


def test_the_header_row_alone_gives_no_rows(tmp_path: Path) -> None:
    path = tmp_path / "s.csv"
    path.write_text("identity,Email")
    assert rows(path) == []


@pytest.mark.parametrize(
    ("name", "text", "delimiter"),
    [("s.tsv", "identity\tName, full\na,b\tc\n", "tab"), ("s.csv", "Email\tidentity\nx\ta,b\n", "tab"),
     ("s.csv", "Email;identity\nx;a,b\n", "semicolon")],
)
def test_tab_and_semicolon_separated_exports_are_told_by_the_header(tmp_path: Path, name: str, text: str, delimiter: str) -> None:
    path = tmp_path / name
    path.write_text(text)
    segment = open_segment(path)
    assert f"{delimiter}-separated" in segment.describe()
    assert rows(path) == [(2, "a,b")]


def test_a_very_long_field_is_read_not_refused(tmp_path: Path) -> None:
    """Longer than the csv module's default field limit (131,072): reported later as too long, not a crash."""
    path = tmp_path / "s.csv"
    path.write_text("identity\n" + "x" * 200_000 + "\nb\n")
    assert [len(v) for _, v in rows(path)] == [200_000, 1]


def test_batches_are_bounded(tmp_path: Path) -> None:
    path = tmp_path / "s.csv"
    path.write_text("identity\n" + "".join(f"c{i}\n" for i in range(10)))
    assert [len(batch) for batch in open_segment(path).batches(4)] == [4, 4, 2]


# ---------------------------------------------------------------------- malformed CSV: refused, naming the row
@pytest.mark.parametrize(
    ("text", "message"),
    [
        # an unquoted comma shifts every column after it: the identity cannot be told
        ("Name,identity\nAda,1\nDoe, John,2\n", r"row 3 has 3 fields but the header has 2"),
        ("Name,identity\nAda,1\nBob\n", r"row 3 has 1 fields but the header has 2"),
        ('identity,Email\na,x\n"open,y\nb,z\n', r"row 3 is not valid CSV: unexpected end of data"),
        ('identity,Email\na,x\n"ab"cd,y\n', r"row 3 is not valid CSV: ',' expected after '\"'"),
    ],
)
def test_malformed_rows_are_refused_naming_the_row(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "s.csv"
    path.write_text(text)
    with pytest.raises(InputError, match=message) as raised:
        rows(path)
    assert str(raised.value).startswith(f"{path}: ")


def test_a_byte_that_is_not_utf8_deep_in_the_file_is_named_by_row_and_column(tmp_path: Path) -> None:
    path = tmp_path / "s.csv.gz"
    body = b"".join(b"cust-%06d,Name\n" % i for i in range(30_000))  # far beyond the first 64 KiB
    path.write_bytes(gzip.compress(b"identity,Name\n" + body + b"cust-x,Ren\xe9e\n" + body))
    with pytest.raises(InputError, match=r"row 30002 is not UTF-8 text \(in column 'Name'\)") as raised:
        rows(path)
    assert str(path) in str(raised.value)


def test_a_gzip_cut_short_is_named_with_the_last_row_read(tmp_path: Path) -> None:
    path = tmp_path / "s.csv.gz"
    whole = gzip.compress(b"identity\n" + b"".join(b"cust-%06d\n" % i for i in range(50_000)))
    path.write_bytes(whole[: len(whole) // 2])
    segment = open_segment(path)
    with pytest.raises(InputError, match=r"the gzip file is damaged or cut short after row \d+ .*download or export it again"):
        for _ in segment.batches(1000):
            pass


# ---------------------------------------------------------------------- the identity column
@pytest.mark.parametrize(
    ("header", "column", "key"),
    [("identity,Email", "identity", "identity"), ("Email,Identity", "Identity", "identity"),
     ("objectId,Email", "objectId", "objectId"), ("Name,IDENTITY", "IDENTITY", "identity"),
     ("Email,clevertapId", "clevertapId", "objectId"), ("Email, Identity ", " Identity ", "identity"),
     ("Email,clevertap_id", "clevertap_id", "objectId"), ("identity,objectId", "identity", "identity")],
)
def test_the_identity_column_is_recognised(tmp_path: Path, header: str, column: str, key: str) -> None:
    path = tmp_path / "s.csv"
    path.write_text(f"{header}\n1,2\n")
    segment = open_segment(path)
    assert (segment.id_column, segment.key, segment.id_column_recognised) == (column, key, True)
    assert f"identity column {column!r} (recognised" in segment.describe()


def test_a_bom_before_the_header_is_not_part_of_the_column_name(tmp_path: Path) -> None:
    path = tmp_path / "s.csv"
    path.write_bytes(b"\xef\xbb\xbfidentity\n000123\n")
    segment = open_segment(path, id_column="identity")
    assert segment.columns == ("identity",) and rows(path) == [(2, "000123")]


def test_a_named_column_wins(tmp_path: Path) -> None:
    path = tmp_path / "s.csv"
    path.write_text("identity,customer_id\nx,000042\n")
    segment = open_segment(path, id_column="customer_id")
    assert "identity column 'customer_id' (as asked" in segment.describe() and segment.key == "identity"
    assert rows(path, id_column="customer_id") == [(2, "000042")]


def test_a_repeated_identity_column_is_refused_but_other_repeats_are_fine(tmp_path: Path) -> None:
    path = tmp_path / "s.csv"
    path.write_text("identity,Email,identity\na,x,b\n")
    with pytest.raises(InputError, match="2 columns are named 'identity'"):
        open_segment(path)
    path.write_text("Email,identity,Email\nx,a,y\n")
    assert rows(path) == [(2, "a")]


def test_two_loosely_matching_columns_are_ambiguous(tmp_path: Path) -> None:
    path = tmp_path / "s.csv"
    path.write_text("Email, identity,identity \nx,a,b\n")
    with pytest.raises(InputError, match="several columns could hold the identity"):
        open_segment(path)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "does not exist"),
        (b"", "is empty"),
        (b"Email,Name\na@x,A\n", "no identity column found .* the columns are 'Email', 'Name'"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "is binary"),
        (b"identity\ncaf\xe9\n", r"is not UTF-8 text \(line 2, byte 13\)"),
        ("identity\nü\n".encode("utf-16"), "is UTF-16 text"),
        (b"\n\n", "the first row is empty"),
        (b'[{"identity": "a"}]', "is one JSON array, not JSON lines"),
        (gzip.compress(b"", mtime=0), "is an empty gzip file"),
        (gzip.compress(gzip.compress(b"identity\na\n", mtime=0), mtime=0), "is gzip-compressed twice"),
        (b"\x1f\x8b\x08\x00garbage", "is a damaged gzip file"),
    ],
)
def test_unusable_files_are_refused_naming_the_file(tmp_path: Path, content: bytes | None, message: str) -> None:
    path = tmp_path / "segment.csv"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(InputError, match=message) as raised:
        open_segment(path)
    assert str(path) in str(raised.value)


def test_archives_and_folders_are_refused_with_what_to_do(tmp_path: Path) -> None:
    archive = tmp_path / "segment.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("segment.csv", "identity\na\n")
    with pytest.raises(InputError, match=r"is a ZIP archive .*: unzip it"):
        open_segment(archive)
    parquet = tmp_path / "s.parquet.gz"
    pq.write_table(pa.table({"identity": ["a"]}), tmp_path / "s.parquet")
    parquet.write_bytes(gzip.compress((tmp_path / "s.parquet").read_bytes()))
    with pytest.raises(InputError, match=r"gzip-compressed Parquet file: .* decompress it"):
        open_segment(parquet)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match=r"segment folder .*empty holds no file"):
        open_segment(empty)  # a folder is read as the parts it holds (see test_segment_parts.py)


@pytest.mark.skipif(not Path("/proc/self/mem").exists(), reason="needs Linux's /proc")
def test_an_unreadable_file_is_refused() -> None:
    """/proc/self/mem exists and is a file, but reading it from offset 0 fails (EIO), even for root."""
    with pytest.raises(InputError, match="segment file /proc/self/mem cannot be read: Input/output error"):
        open_segment("/proc/self/mem")


def test_a_missing_named_column_lists_the_columns_and_suggests_a_near_one(tmp_path: Path) -> None:
    path = tmp_path / "s.csv"
    path.write_text("Identity,Email\nx,y\n")
    with pytest.raises(InputError, match="no column 'customer_id'; the columns are 'Identity', 'Email'"):
        open_segment(path, id_column="customer_id")
    with pytest.raises(InputError, match=r"no column 'identity' \(did you mean 'Identity'\?\)"):
        open_segment(path, id_column="identity")


# ---------------------------------------------------------------------- JSON lines
def test_json_lines_keep_numbers_as_written(tmp_path: Path) -> None:
    path = tmp_path / "s.jsonl.gz"
    lines = ['{"identity": "000123"}', '{"identity": 123}', '{"identity": 1.50}', '{"identity": null}',
             '{"other": 1}', '{"identity": -0}', '{"identity": 1E400}', '{"identity": NaN}']
    path.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
    assert rows(path) == [(1, "000123"), (2, "123"), (3, "1.50"), (4, ""), (5, ""), (6, "-0"), (7, "1E400"), (8, "NaN")]


def test_json_lines_with_bom_crlf_and_blank_lines_number_rows_by_line(tmp_path: Path) -> None:
    path = tmp_path / "export.json"
    text = '{"identity": " a\\tb "}\r\n\r\n{"identity": "\\u00fc", "Email": "x"}\r\n{"identity": "\\ud800"}'
    path.write_bytes(b"\xef\xbb\xbf" + text.encode())
    segment = open_segment(path)
    assert segment.format == "jsonl" and segment.columns == ("identity",)
    # a lone surrogate comes through as it is: identities.invalid_reason reports it, the reader does not judge
    assert rows(path) == [(1, " a\tb "), (3, "ü"), (4, "\ud800")]


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        (['{"identity": "a"}', '{"identity": ["a", "b"]}'], r"line 2: 'identity' holds a JSON list, not a text"),
        (['{"identity": "a"}', '{"identity": true}'], r"line 2: 'identity' holds a JSON true/false"),
        (['{"identity": "a"}', '{"identity": "b"'], r"line 2 is not a JSON object: Expecting"),
        (['{"identity": "a"}', '"b"'], r"line 2 is not a JSON object"),
    ],
)
def test_json_lines_that_are_not_identities_are_refused_naming_the_line(tmp_path: Path, lines: list[str], message: str) -> None:
    path = tmp_path / "s.jsonl"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(InputError, match=message):
        rows(path)


def test_a_json_line_that_is_not_utf8_is_named(tmp_path: Path) -> None:
    path = tmp_path / "s.jsonl"
    path.write_bytes(b'{"identity": "a"}\n' * 5000 + b'{"identity": "caf\xe9"}\n')
    with pytest.raises(InputError, match=r"line 5001 is not UTF-8 text"):
        rows(path)


# ---------------------------------------------------------------------- Parquet
def test_parquet_strings_and_nulls(tmp_path: Path) -> None:
    path = tmp_path / "s.parquet"
    pq.write_table(pa.table({"Email": ["a@x", "b@x", "c@x"], "identity": ["000123", None, " ü "]}), path)
    assert rows(path) == [(2, "000123"), (3, ""), (4, " ü ")]


@pytest.mark.parametrize(
    "column",
    [pa.array([7, -1, None, 9223372036854775807], pa.int64()), pa.array([7, 1, None, 18446744073709551615], pa.uint64())],
)
def test_parquet_integer_identities_are_their_exact_digits(tmp_path: Path, column: pa.Array) -> None:
    path = tmp_path / "s.parquet"
    pq.write_table(pa.table({"identity": column}), path)
    assert [v for _, v in rows(path)] == [("" if v is None else str(v)) for v in column.to_pylist()]


def test_parquet_dictionary_and_binary_columns_are_text(tmp_path: Path) -> None:
    path = tmp_path / "s.parquet"
    table = pa.table({"identity": pa.array(["a", "b", "a"]).dictionary_encode(),
                      "raw": pa.array([b"x", "ü".encode(), None], pa.binary())})
    pq.write_table(table, path)
    assert [v for _, v in rows(path)] == ["a", "b", "a"]
    assert [v for _, v in rows(path, id_column="raw")] == ["x", "ü", ""]


def test_parquet_floats_are_refused_they_may_have_lost_digits(tmp_path: Path) -> None:
    path = tmp_path / "s.parquet"
    pq.write_table(pa.table({"identity": [1.0, 2.5]}), path)
    with pytest.raises(InputError, match="holds double values, which cannot be identities exactly"):
        rows(path)


def test_parquet_bytes_that_are_not_utf8_are_named_by_row(tmp_path: Path) -> None:
    path = tmp_path / "s.parquet"
    pq.write_table(pa.table({"identity": pa.array([b"a", b"b", b"caf\xe9"], pa.binary())}), path)
    with pytest.raises(InputError, match=r"row 4 is not UTF-8 text"):
        rows(path)

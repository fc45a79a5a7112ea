"""Reading segment exports: formats, the identity column, exact values, and refusals that name the problem."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from distributor.errors import InputError
from distributor.segment import open_segment


def rows(path: Path, **options: str) -> list[tuple[int, str]]:
    segment = open_segment(path, **options)
    return [(row.number, row.identity) for batch in segment.batches(2) for row in batch]


EXACT = ["000123", "+4915112345678", "NA", "null", "", "  padded  ", "a,b", 'say "hi"', "line\nbreak", "ü", "=1+1"]


def csv_text(values: list[str]) -> str:
    def cell(value: str) -> str:
        return '"' + value.replace('"', '""') + '"' if any(c in value for c in ',"\n') else value

    return "identity,Email\r\n" + "".join(f"{cell(v)},x@example.com\r\n" for v in values)


def test_csv_values_stay_exact_with_spreadsheet_row_numbers(tmp_path: Path) -> None:
    path = tmp_path / "s.csv"
    path.write_bytes(b"\xef\xbb\xbf" + csv_text(EXACT).encode())
    assert rows(path) == list(enumerate(EXACT, start=2))


def test_gzip_is_told_by_its_bytes_not_its_name(tmp_path: Path) -> None:
    path = tmp_path / "export-0001"
    path.write_bytes(gzip.compress(csv_text(EXACT).encode()))
    segment = open_segment(path)
    assert segment.compressed and segment.format == "csv"
    assert [v for _, v in rows(path)] == EXACT


def test_json_lines_keep_numbers_as_written(tmp_path: Path) -> None:
    path = tmp_path / "s.jsonl.gz"
    records = [{"identity": "000123"}, {"identity": 123}, {"identity": 1.50}, {"identity": None}, {"other": 1}]
    text = "\n".join(json.dumps(r) for r in records).replace("1.5}", "1.50}") + "\n"
    path.write_bytes(gzip.compress(text.encode()))
    assert rows(path) == [(1, "000123"), (2, "123"), (3, "1.50"), (4, ""), (5, "")]


def test_parquet(tmp_path: Path) -> None:
    path = tmp_path / "s.parquet"
    pq.write_table(pa.table({"Email": ["a@x", "b@x"], "identity": ["000123", None]}), path)
    assert rows(path) == [(2, "000123"), (3, "")]


@pytest.mark.parametrize(
    ("header", "column", "key"),
    [("identity,Email", "identity", "identity"), ("Email,Identity", "Identity", "identity"),
     ("objectId,Email", "objectId", "objectId"), ("Name,IDENTITY", "IDENTITY", "identity")],
)
def test_the_identity_column_is_recognised(tmp_path: Path, header: str, column: str, key: str) -> None:
    path = tmp_path / "s.csv"
    path.write_text(f"{header}\n1,2\n")
    segment = open_segment(path)
    assert (segment.id_column, segment.key, segment.id_column_recognised) == (column, key, True)
    assert f"identity column {column!r}" in segment.describe()


def test_a_named_column_wins(tmp_path: Path) -> None:
    path = tmp_path / "s.csv"
    path.write_text("identity,customer_id\nx,000042\n")
    assert rows(path, id_column="customer_id") == [(2, "000042")]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "does not exist"),
        (b"", "is empty"),
        (b"Email,Name\na@x,A\n", "no identity column found .* the columns are 'Email', 'Name'"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "is binary"),
        (b"identity\ncaf\xe9\n", "is not UTF-8"),
    ],
)
def test_unusable_files_are_refused_naming_the_file(tmp_path: Path, content: bytes | None, message: str) -> None:
    path = tmp_path / "segment.csv"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(InputError, match=message) as raised:
        open_segment(path)
    assert str(path) in str(raised.value)


def test_a_missing_named_column_lists_the_columns(tmp_path: Path) -> None:
    path = tmp_path / "s.csv"
    path.write_text("identity,Email\nx,y\n")
    with pytest.raises(InputError, match="no column 'customer_id'; the columns are 'identity', 'Email'"):
        open_segment(path, id_column="customer_id")

"""A whole run fed with messy segments: exact identities all the way to Voucherify and back into the CleverTap CSV,
every bad row accounted for, and unusable input refused before any API call."""

from __future__ import annotations

import csv
import gzip
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from click.testing import CliRunner
from conftest import SANDBOX_ENV, held_codes, make_config, read_codes, run

from distributor.cli import main
from distributor.errors import EXIT_OK
from distributor.outputs import for_people

#: Valid identities a careless reader would change: each must reach Voucherify and the CSV byte for byte.
TRICKY = ["000123", "+4915112345678", "=1+1", "@home", "-5", " padded ", "a,b", 'say "hi"', "two\nlines", "Zoë",
          "e\u0301", "\ttab", "NA ", "1e5", "0x1F"]
#: Invalid rows and the reason each is skipped for.
INVALID = [("", "empty"), ("   ", "empty"), ("x" * 1024, "too_long"), ("NuLL", "placeholder"), ("N/A", "placeholder"),
           ("-1", "placeholder"), ("000123", "duplicate"), ("Zoë", "duplicate")]


def write_csv(path: Path, values: list[str]) -> Path:
    with path.open("w", newline="", encoding="utf-8-sig") as handle:  # with a BOM, as Excel saves
        writer = csv.writer(handle, lineterminator="\r\n")
        writer.writerow(["Email", "identity", "Name"])
        writer.writerows([f"u{i}@example.com", value, "x"] for i, value in enumerate(values))
    return path


def test_tricky_identities_reach_voucherify_and_the_csv_exactly_and_bad_rows_are_reported(tmp_path: Path, sandbox) -> None:
    server = sandbox()
    values = TRICKY + [value for value, _ in INVALID]
    config = make_config(tmp_path, server, write_csv(tmp_path / "segment.csv", values), property="reactivation_code")

    result = run(config)

    assert result.exit_code == EXIT_OK, result.message
    header, codes = read_codes(config.output)
    assert header == ["identity", "reactivation_code"]
    assert list(codes) == TRICKY  # exact, once each, in segment order
    assert {identity: {code} for identity, code in codes.items()} == held_codes(server)  # Voucherify saw the same
    with config.layout.skipped.open(newline="", encoding="utf-8") as handle:
        report = list(csv.reader(handle))
    assert report[0] == ["row", "value", "reason", "explanation"]
    first_invalid_row = 2 + len(TRICKY)
    assert [(int(r[0]), r[1], r[2]) for r in report[1:]] == [
        (first_invalid_row + i, for_people(value), reason) for i, (value, reason) in enumerate(INVALID)
    ]  # a report for people: "-1" shows as "'-1", never as a formula
    assert report[-1][3] == "appears earlier in the segment; published once (first at row 11)"
    assert result.summary["skipped"] == {
        "total": 8, "by_reason": {"empty": 2, "too_long": 1, "placeholder": 3, "duplicate": 2},
    }


def test_a_parquet_export_with_integer_identities(tmp_path: Path, sandbox) -> None:
    server = sandbox()
    segment = tmp_path / "segment.parquet"
    pq.write_table(pa.table({"objectId": pa.array([1189549, 7, None, 7, 0], pa.int64())}), segment)
    config = make_config(tmp_path, server, segment)

    result = run(config)

    header, codes = read_codes(config.output)
    assert header == ["objectId", "voucher_code"] and list(codes) == ["1189549", "7"]
    assert result.summary["skipped"]["by_reason"] == {"empty": 1, "duplicate": 1, "placeholder": 1}
    manifest = json.loads(config.layout.manifest.read_text())
    assert list(manifest["columns"]) == ["objectId", "voucher_code"]


def test_a_lone_surrogate_in_a_json_export_is_skipped_and_reported(tmp_path: Path, sandbox) -> None:
    server = sandbox()
    segment = tmp_path / "segment.jsonl"
    segment.write_text('{"identity": "ok"}\n{"identity": "bad\\ud800"}\n')
    config = make_config(tmp_path, server, segment)

    result = run(config)

    assert result.summary["skipped"]["by_reason"] == {"invalid_unicode": 1}
    assert "bad\\ud800,invalid_unicode" in config.layout.skipped.read_text()


# ---------------------------------------------------------------------- unusable input: exit 2, one line, no call
def refused(tmp_path: Path, server, segment: Path, *extra: str) -> str:
    result = CliRunner().invoke(
        main,
        ["run", "--segment", str(segment), "--campaign", "reactivation-20", "--rate-limit", "600/min",
         "--api-url", server.url, "--output", str(tmp_path / "out" / "codes.csv"), *extra],
        env=SANDBOX_ENV, catch_exceptions=False,
    )
    assert result.exit_code == 2, result.output
    assert server.sandbox.arrivals == []  # not a single API call
    assert "Traceback" not in result.output
    # log lines may come first (the segment was opened); the refusal itself is one line
    messages = [line for line in result.stderr.splitlines() if line.startswith("distributor: ")]
    assert len(messages) == 1 and result.stderr.endswith(messages[0] + "\n"), result.stderr
    return messages[0]


def test_a_binary_file_is_refused(tmp_path: Path, sandbox) -> None:
    segment = tmp_path / "segment.csv"
    segment.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    assert refused(tmp_path, sandbox(), segment).endswith("is binary, not a CSV, JSON lines or Parquet export (line 3 holds a NUL byte)")


def test_no_identity_column_names_the_columns_found(tmp_path: Path, sandbox) -> None:
    segment = tmp_path / "segment.csv"
    segment.write_text("Email,Phone\na@x,+49\n")
    assert "the columns are 'Email', 'Phone'; name one with --id-column" in refused(tmp_path, sandbox(), segment)


def test_a_malformed_row_deep_in_a_gzip_export_is_refused_naming_file_and_row(tmp_path: Path, sandbox) -> None:
    segment = tmp_path / "segment.csv.gz"
    body = "".join(f"cust-{i:06d},x\n" for i in range(50_000))
    segment.write_bytes(gzip.compress(f"identity,Name\n{body}Doe, John,y\n".encode()))
    line = refused(tmp_path, sandbox(), segment)
    assert line.startswith(f"distributor: {segment}: row 50002 has 3 fields but the header has 2")


def test_a_segment_of_only_invalid_rows_is_refused(tmp_path: Path, sandbox) -> None:
    segment = write_csv(tmp_path / "segment.csv", ["", "null", "NA"])
    line = refused(tmp_path, sandbox(), segment)
    assert "no usable identity in column 'identity' (3 rows: 2 placeholder, 1 empty)" in line

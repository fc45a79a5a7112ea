"""The files beside the output: the CleverTap CSV read back exactly by csv and pandas, the manifest, the reports."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pandas as pd
import pytest

from distributor import outputs
from distributor.journal import Failure

HOSTILE = [
    "000123", "+4915112345678", "=HYPERLINK(\"x\")", "@SUM(A1)", "-2+3", "+", "NA", "null", "  padded  ", " lead",
    "trail ", "\tTab", "a,b", 'say "hi"', '"', "line\nbreak", "cr\ronly", "crlf\r\nboth", "ü", "Ω\u0301", "😀",
    "\u2028sep", "\x1cfs", "\u00a0nbsp", "#hash", "'quote", "\\back", "x" * 1023, ";semi", "a\tb",
]


def read_with_csv(path: Path) -> list[list[str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.reader(handle))


def read_with_pandas(path: Path) -> list[list[str]]:
    frame = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8")
    return [list(frame.columns), *frame.values.tolist()]


@pytest.mark.parametrize("reader", [read_with_csv, read_with_pandas], ids=["csv", "pandas"])
def test_every_identity_round_trips_exactly(tmp_path: Path, reader) -> None:
    path = tmp_path / "codes.csv"
    pairs = [(identity, f"CODE-{i}") for i, identity in enumerate(HOSTILE)]
    assert outputs.write_codes(path, pairs, key="identity", property="reactivation_code") == len(HOSTILE)
    assert reader(path) == [["identity", "reactivation_code"]] + [list(pair) for pair in pairs]


def test_the_csv_is_standard_utf8_without_bom_with_crlf(tmp_path: Path) -> None:
    path = tmp_path / "codes.csv"
    outputs.write_codes(path, [("cust-1", "A"), ("=1+1", "B"), (" x", "C"), ("a,b", "D"), ("ü", "E")],
                        key="objectId", property="code")
    # formula-like values are not prefixed with an apostrophe; surrounding spaces are quoted so no parser trims them
    assert path.read_bytes() == 'objectId,code\r\ncust-1,A\r\n=1+1,B\r\n" x",C\r\n"a,b",D\r\nü,E\r\n'.encode()


def test_an_empty_run_writes_the_header_alone(tmp_path: Path) -> None:
    path = tmp_path / "codes.csv"
    assert outputs.write_codes(path, [], key="identity", property="code") == 0
    assert path.read_bytes() == b"identity,code\r\n"


def test_the_manifest_maps_the_key_and_the_property_as_strings(tmp_path: Path) -> None:
    path = tmp_path / "codes.manifest.json"
    outputs.write_manifest(path, key="identity", property="reactivation_code")
    assert json.loads(path.read_text(encoding="utf-8")) == {
        "columns": {
            "identity": {"ctName": "identity", "dataType": "STRING"},
            "reactivation_code": {"ctName": "reactivation_code", "dataType": "STRING"},
        }
    }
    outputs.write_manifest(path, key="objectId", property="code")
    assert list(json.loads(path.read_text())["columns"]) == ["objectId", "code"]


def test_the_skipped_report_explains_each_row_and_survives_unstorable_values(tmp_path: Path) -> None:
    path = tmp_path / "codes.skipped.csv"
    written = outputs.write_skipped(path, [
        (3, "", "empty", ""), (5, "NULL", "placeholder", ""), (7, "a", "duplicate", "first at row 2"),
        (9, "\ud800", "invalid_unicode", ""), (11, "a\x00b", "control_character", ""),
    ])
    assert written == 5
    assert read_with_csv(path) == [
        ["row", "value", "reason", "explanation"],
        ["3", "", "empty", "empty identity (or only whitespace)"],
        ["5", "NULL", "placeholder", "a placeholder CleverTap refuses as identity"],
        ["7", "a", "duplicate", "appears earlier in the segment; published once (first at row 2)"],
        ["9", "\\ud800", "invalid_unicode", "contains a lone UTF-16 surrogate, which has no UTF-8 form"],
        ["11", "a\x00b", "control_character", "contains a NUL character"],
    ]


def test_the_errors_report_keeps_identities_exact(tmp_path: Path) -> None:
    path = tmp_path / "codes.errors.csv"
    failure = Failure(" 007,\"x\"", 4, 400, "voucher_cannot_be_published", "refused", "req-1", 1)
    assert outputs.write_errors(path, [failure], key="identity") == 1
    assert read_with_csv(path)[1] == [" 007,\"x\"", "4", "400", "voucher_cannot_be_published", "refused", "req-1", "1"]


def test_a_failed_write_leaves_the_old_file_and_no_temporary_file(tmp_path: Path) -> None:
    path = tmp_path / "codes.csv"
    outputs.write_codes(path, [("a", "A")], key="identity", property="code")
    before = path.read_bytes()

    def broken():
        yield ("b", "B")
        raise RuntimeError("journal went away")

    with pytest.raises(RuntimeError):
        outputs.write_codes(path, broken(), key="identity", property="code")
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["codes.csv"]

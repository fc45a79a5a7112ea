"""Which identities CleverTap refuses, and that every other value is left exactly as it is."""

from __future__ import annotations

import sqlite3

import pytest

from distributor.segment import identities
from distributor.segment.identities import invalid_reason, storable


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("", "empty"), (" ", "empty"), ("\t\r\n", "empty"), ("\u00a0\u3000", "empty"),
        ("x" * 1024, "too_long"), ("ü" * 1024, "too_long"),
        ("null", "placeholder"), ("NULL", "placeholder"), ("Undefined", "placeholder"), ("n/A", "placeholder"),
        ("-INF", "placeholder"), ("NaN", "placeholder"), ("0", "placeholder"), ("-1", "placeholder"),
        ("XxXxXx", "placeholder"), ("None", "placeholder"), ("Empty", "placeholder"), ("-Infinity", "placeholder"),
        ("a\x00b", "control_character"),
        ("\ud800", "invalid_unicode"), ("ok\udfffok", "invalid_unicode"),
    ],
)
def test_refused_identities_and_why(value: str, reason: str) -> None:
    assert invalid_reason(value) == reason
    assert reason in identities.REASON_TEXT


@pytest.mark.parametrize(
    "value",
    ["x" * 1023, "ü" * 1023, "000123", "+4915112345678", "=1+1", "@home", "-5", "00", "0.0", " null", "null ",
     "nulls", "n/a/", " padded ", "a\tb", "line\nbreak", "\u200b", "Ω\u0301", "😀", "1", "-0", "inf-x"],
)
def test_usable_identities_are_accepted_as_they_are(value: str) -> None:
    assert invalid_reason(value) is None


def test_the_placeholders_are_compared_without_regard_to_case() -> None:
    for placeholder in identities.PLACEHOLDERS:
        for variant in (placeholder, placeholder.upper(), placeholder.title()):
            assert invalid_reason(variant) == "placeholder"


def test_storable_spells_lone_surrogates_as_escapes_and_leaves_the_rest_alone() -> None:
    assert storable("a\ud800b\udfff") == "a\\ud800b\\udfff"
    for value in ("plain", "ü😀\u0301", "a\\ud800"):
        assert storable(value) is value
    db = sqlite3.connect(":memory:")
    with pytest.raises(UnicodeEncodeError):
        db.execute("SELECT ?", ("\ud800",))
    assert db.execute("SELECT ?", (storable("\ud800"),)).fetchone() == ("\\ud800",)

"""``distributor run`` as a user meets it: exit codes, one-line messages, the summary."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import SANDBOX_ENV, write_segment

from distributor.cli import main


def invoke(*args: str, env: dict[str, str] | None = None):
    return CliRunner().invoke(main, list(args), env=env or {}, catch_exceptions=False)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--segment", "s.csv", "--rate-limit", "80/min"], "campaign is missing: give --campaign"),
        (["--segment", "s.csv", "--campaign", "c"], "rate_limit is missing: give --rate-limit"),
        (["--segment", "s.csv", "--campaign", "c", "--rate-limit", "fast"], "is not of the form N/s, N/min or N/h"),
        (["--segment", "s.csv", "--campaign", "c", "--rate-limit", "80/min"], "no Voucherify credentials: set VOUCHERIFY_APP_ID"),
    ],
)
def test_configuration_problems_exit_2_with_one_line(args: list[str], message: str) -> None:
    result = invoke("run", *args)
    assert result.exit_code == 2
    assert result.stderr.startswith("distributor: ")
    assert message in result.stderr
    assert "Traceback" not in result.output


def test_a_missing_segment_exits_2_before_any_call(tmp_path: Path, sandbox) -> None:
    server = sandbox()
    result = invoke("run", "--segment", str(tmp_path / "nope.csv"), "--campaign", "c", "--rate-limit", "80/min",
                    "--api-url", server.url, "--output", str(tmp_path / "o.csv"), env=SANDBOX_ENV)
    assert result.exit_code == 2
    assert f"distributor: segment file {tmp_path / 'nope.csv'} does not exist" in result.stderr
    assert server.sandbox.arrivals == []


def test_a_segment_with_only_a_header_exits_2(tmp_path: Path, sandbox) -> None:
    server = sandbox()
    segment = write_segment(tmp_path / "s.csv", [])
    result = invoke("run", "--segment", str(segment), "--campaign", "c", "--rate-limit", "80/min",
                    "--api-url", server.url, "--output", str(tmp_path / "o.csv"), env=SANDBOX_ENV)
    assert result.exit_code == 2
    assert "the segment has no rows" in result.stderr
    assert server.sandbox.arrivals == []


def test_member_failures_exit_1_and_name_the_errors_file(tmp_path: Path, sandbox) -> None:
    server = sandbox(refuse_customers={"b": "voucher_cannot_be_published"})
    segment = write_segment(tmp_path / "s.csv", ["a", "b", "c"])
    out = tmp_path / "o.csv"
    result = invoke("run", "--segment", str(segment), "--campaign", "reactivation-20", "--rate-limit", "600/min",
                    "--api-url", server.url, "--output", str(out), env=SANDBOX_ENV)
    assert result.exit_code == 1
    assert f"exit 1: 1 members could not get a code: see {tmp_path / 'o.errors.csv'}" in result.stdout
    summary = json.loads((tmp_path / "o.summary.json").read_text())
    assert summary["members"] == {"in_segment": 3, "published": 2, "already_held": 0, "failed": 1,
                                  "without_code": 0, "left_segment": 0, "codes_in_output": 2}

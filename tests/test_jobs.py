"""The job files in jobs/ plan and run against the embedded sandbox as they are shipped."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import PROJECT, read_codes

from distributor.cli import main
from distributor.config import JobConfig

JOBS = {
    "reactivation.toml": ("reactivation_code", "REACT-"),
    "referral.toml": ("referral_code", "REF-"),
}


def invoke(*args: str):
    return CliRunner().invoke(main, list(args), env={}, catch_exceptions=False)  # no keys: the sandbox's own


@pytest.mark.slow(seconds=4)
@pytest.mark.parametrize("name", sorted(JOBS))
def test_the_job_plans_and_runs_against_the_sandbox_as_shipped(tmp_path: Path, name: str) -> None:
    job = PROJECT / "jobs" / name
    prop, prefix = JOBS[name]
    out = tmp_path / "codes.csv"

    plan = invoke("plan", str(job), "--output", str(out))
    # the shipped pace is a real plan's (80/min); a rehearsal only needs it faster
    result = invoke("run", str(job), "--output", str(out), "--rate-limit", "60000/min")

    assert plan.exit_code == 0, plan.output
    assert "exit 0: run would publish 285 codes in about 3min 46s" in plan.stdout
    assert "at 80/min (100/min less 20 % headroom)" in plan.stdout
    assert result.exit_code == 0, result.output
    header, codes = read_codes(out)
    assert header == ["identity", prop]
    assert len(codes) == 285 and len(set(codes.values())) == 285
    assert all(code.startswith(prefix) for code in codes.values())


@pytest.mark.parametrize("name", sorted(JOBS))
def test_the_job_is_commented_and_holds_no_secret(name: str) -> None:
    text = (PROJECT / "jobs" / name).read_text()
    keys = tomllib.loads(text)
    config = JobConfig.load(PROJECT / "jobs" / name, {}, {})
    assert config.uses_sandbox and "sandbox" in keys
    assert "APP_TOKEN =" not in text.replace("VOUCHERIFY_APP_TOKEN=…", "")
    # every setting is explained: a comment on its line or in its paragraph (a marketer edits these files)
    lines = text.splitlines()
    for number, line in enumerate(lines):
        if line and not line.startswith(("#", "[")) and "=" in line:
            paragraph = []
            for above in reversed(lines[:number]):
                if not above.strip():
                    break
                paragraph.append(above)
            assert "#" in line or any(a.startswith("#") for a in paragraph), f"{name}: {line!r} is not explained"

"""``distributor verify``: the journal checked against what Voucherify holds, the mismatches seeded in the sandbox."""

from __future__ import annotations

import csv
import hashlib
import socket
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import SANDBOX_ENV, make_config, run, write_segment
from virtual import run_virtual

from distributor.cli import main
from distributor.sandbox import SandboxConfig, SandboxServer
from distributor.units import Rate


def distribute(tmp_path: Path, server: SandboxServer, count: int = 30) -> Path:
    """A finished distribution of ``count`` members; returns its output CSV."""
    segment = write_segment(tmp_path / "segment.csv", [f"cust-{i}" for i in range(count)])
    config = make_config(tmp_path, server, segment)
    assert run(config).exit_code == 0
    return config.output


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def verify(server: SandboxServer, output: Path, *args: str):
    return CliRunner().invoke(
        main,
        ["verify", "--output", str(output), "--campaign", "reactivation-20", "--api-url", server.url,
         "--rate-limit", "6000/min", *args],
        env=SANDBOX_ENV, catch_exceptions=False,
    )


def key_of(server: SandboxServer, identity: str) -> str:
    """The publication source_id the run used for ``identity``, as the sandbox holds it."""
    [publication] = [p for p in server.sandbox.publications if p.customer_source_id == identity]
    assert publication.source_id is not None
    return publication.source_id


def lookups(server: SandboxServer, since: int = 0) -> list[str]:
    return [a.source_id or "" for a in server.sandbox.arrivals[since:] if a.kind == "lookup"]


def report_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_verify_all_finds_every_difference_seeded_in_voucherify_and_leaves_the_journal_alone(
    tmp_path: Path, sandbox
) -> None:
    server = sandbox()
    output = distribute(tmp_path, server)
    journal = output.with_name("codes.journal.sqlite")
    codes = dict(row for row in csv.reader(output.open(newline="")))
    world = server.sandbox
    world.alter_publication(key_of(server, "cust-3"), code="FORGED-1")
    world.alter_publication(key_of(server, "cust-5"), customer_source_id="someone-else")
    world.delete_publication(key_of(server, "cust-9"))
    before, arrivals = digest(journal), len(world.arrivals)

    result = verify(server, output, "--all")

    assert result.exit_code == 1, result.output
    assert "full audit    30 calls" in result.output
    assert "exit 1: 3 of 30 checked members do not match Voucherify" in result.output
    rows = report_rows(output.with_name("codes.verify.csv"))
    assert [(r["identity"], r["journal_code"], r["voucherify_code"], r["why"]) for r in rows] == [
        ("cust-3", codes["cust-3"], "FORGED-1", "code_differs"),
        ("cust-5", codes["cust-5"], codes["cust-5"], "customer_differs"),
        ("cust-9", codes["cust-9"], "", "missing"),
    ]
    assert "someone-else" in rows[1]["detail"]
    assert len(lookups(server, arrivals)) == 30
    assert all(a.kind == "lookup" for a in world.arrivals[arrivals:])  # nothing published, no campaign call
    assert digest(journal) == before


@pytest.mark.slow
def test_a_seeded_sample_checks_the_same_members_at_the_budget(tmp_path: Path, sandbox) -> None:
    server = sandbox()
    output = distribute(tmp_path, server, count=40)
    server.sandbox.config.rate_limit = Rate.parse("20/s")  # the plan Voucherify enforces on the verify's calls
    start = len(server.sandbox.arrivals)

    first = verify(server, output, "--sample", "15", "--seed", "7", "--rate-limit", "20/s")
    middle = len(server.sandbox.arrivals)
    second = verify(server, output, "--sample", "15", "--seed", "7", "--rate-limit", "20/s")

    assert (first.exit_code, second.exit_code) == (0, 0), first.output
    assert "exit 0: all 15 checked members match Voucherify" in first.output
    assert "a random sample of 15 (--seed 7 checks the same members)" in first.output
    assert len(lookups(server, start)) == 30
    assert sorted(lookups(server, start)[:15]) == sorted(lookups(server, middle))
    assert len(set(lookups(server, start)[:15])) == 15
    assert [a.status for a in server.sandbox.arrivals[start:] if a.status != 200] == []  # not one 429
    assert server.sandbox.max_in_window("lookup") <= 20
    assert report_rows(output.with_name("codes.verify.csv")) == []


def test_verify_refuses_the_embedded_sandbox_and_a_missing_journal(tmp_path: Path) -> None:
    embedded = CliRunner().invoke(
        main, ["verify", "--output", str(tmp_path / "x.csv"), "--campaign", "c", "--api-url", "sandbox",
               "--rate-limit", "1/s"], env=SANDBOX_ENV, catch_exceptions=False,
    )
    assert embedded.exit_code == 2
    assert "the embedded sandbox (api_url 'sandbox') forgets everything" in embedded.output

    missing = CliRunner().invoke(
        main, ["verify", "--output", str(tmp_path / "x.csv"), "--campaign", "c", "--api-url", "http://127.0.0.1:9",
               "--rate-limit", "1/s"], env=SANDBOX_ENV, catch_exceptions=False,
    )
    assert missing.exit_code == 2
    assert "no journal at" in missing.output


def test_a_code_voucherify_holds_but_the_journal_does_not_is_reported(tmp_path: Path) -> None:
    """Every publication commits, then its answer is lost: the run (on the virtual clock: the minute of silence
    before it stops costs no real time) leaves both members sending; Voucherify holds a code for each."""
    port = free_port()  # the Voucherify the run talks to (in-process) and verify reaches (over loopback)
    segment = write_segment(tmp_path / "segment.csv", ["cust-0", "cust-1"])
    config = make_config(tmp_path, None, segment, api_url=f"http://127.0.0.1:{port}", max_attempts=1)
    stopped = run_virtual(config, SandboxConfig(lost_answer_rate=1.0, seed=1))
    assert (stopped.result.exit_code, stopped.result.reason) == (3, "unreachable")
    held = stopped.sandbox.codes_held("reactivation-20")

    with SandboxServer(stopped.sandbox, port=port) as server:  # the same Voucherify, now over loopback
        result = verify(server, config.output, "--all")

    assert result.exit_code == 1, result.output
    rows = report_rows(config.output.with_name("codes.verify.csv"))
    assert [(r["identity"], r["journal_code"], r["voucherify_code"], r["why"]) for r in rows] == [
        ("cust-0", "", *held["cust-0"], "unrecorded_publication"),
        ("cust-1", "", *held["cust-1"], "unrecorded_publication"),
    ]


def test_keys_voucherify_refuses_stop_verify_with_exit_3(tmp_path: Path, sandbox) -> None:
    server = sandbox()
    output = distribute(tmp_path, server, count=3)

    result = CliRunner().invoke(
        main,
        ["verify", "--output", str(output), "--campaign", "reactivation-20", "--api-url", server.url,
         "--rate-limit", "6000/min", "--all"],
        env={"VOUCHERIFY_APP_ID": "sandbox-app-id", "VOUCHERIFY_APP_TOKEN": "wrong-token"}, catch_exceptions=False,
    )

    assert result.exit_code == 3, result.output
    assert result.output.count("\n") <= 6 and "Traceback" not in result.output
    assert "401" in result.output or "keys" in result.output
    assert "wrong-token" not in result.output

"""``distributor export``: the CleverTap files rewritten from the journal, at any time, also mid-run."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import codes_saved, make_config, read_codes, run, start_job, wait_for, write_segment

from distributor.cli import main
from distributor.journal import Journal

REPORTS = ("codes.csv", "codes.manifest.json", "codes.errors.csv", "codes.skipped.csv", "codes.left.csv")


def delta_of(folder: Path, stem: str = "codes") -> Path:
    """The one delta file (``<stem>.new.<date>.run<N>.csv``) in ``folder``."""
    (delta,) = folder.glob(f"{stem}.new.*.run*.csv")
    return delta


def invoke(*args: str, env: dict[str, str] | None = None):
    return CliRunner().invoke(main, list(args), env=env or {}, catch_exceptions=False)


def ids(n: int) -> list[str]:
    return [f"cust-{i:05d}" for i in range(n)]


def test_export_rewrites_exactly_what_the_run_wrote(tmp_path: Path, sandbox) -> None:
    server = sandbox(refuse_customers={"cust-00003": "voucher_cannot_be_published"})
    segment = write_segment(tmp_path / "s.csv", [*ids(10), "", "null", "cust-00001"])
    config = make_config(tmp_path, server, segment, property="reactivation_code")
    run(config)
    folder = config.output.parent
    delta = delta_of(folder)
    names = (*REPORTS, delta.name)
    written = {name: (folder / name).read_bytes() for name in names}
    for name in names:
        (folder / name).unlink()
    calls = len(server.sandbox.arrivals)

    result = invoke("export", "--state", str(config.layout.journal))

    assert result.exit_code == 0, result.output
    assert {name: (folder / name).read_bytes() for name in names} == written
    assert result.stdout.splitlines() == [
        f"exported from {config.layout.journal} (run 1)",
        f"  codes     {folder / 'codes.csv'} (9 codes) + codes.manifest.json",
        f"  delta     {delta} (9 codes published after run 0, through run 1)",
        f"  left      {folder / 'codes.left.csv'} (0 members no longer in the segment)",
        f"  errors    {folder / 'codes.errors.csv'} (1 members)",
        f"  skipped   {folder / 'codes.skipped.csv'} (3 rows)",
    ]
    header, codes = read_codes(config.output)
    assert header == ["identity", "reactivation_code"] and len(codes) == 9  # the property the run used
    assert len(server.sandbox.arrivals) == calls  # not a single API call


def test_the_output_can_be_elsewhere_and_the_column_renamed(tmp_path: Path, sandbox) -> None:
    server = sandbox()
    segment = write_segment(tmp_path / "s.csv", ["1", "2", "3"], column="objectId")
    config = make_config(tmp_path, server, segment, property="reactivation_code")
    run(config)
    snapshot = tmp_path / "elsewhere" / "snapshot.csv"

    as_run = invoke("export", "--state", str(config.layout.journal), "--output", str(snapshot))
    renamed = invoke("export", "--state", str(config.layout.journal), "--output", str(snapshot),
                     "--property", "winback_code", "--json")

    assert (as_run.exit_code, renamed.exit_code) == (0, 0)
    report = json.loads(renamed.stdout)
    assert report["codes"] == 3 and report["files"]["delta"] == str(delta_of(snapshot.parent, "snapshot"))
    assert read_codes(snapshot)[0] == ["objectId", "winback_code"]  # the journal's key; the column renamed
    manifest = json.loads(snapshot.with_name("snapshot.manifest.json").read_text())
    assert list(manifest["columns"]) == ["objectId", "winback_code"]


def test_what_cannot_be_exported_exits_2(tmp_path: Path) -> None:
    odd = tmp_path / "state.db"
    empty = tmp_path / "e.journal.sqlite"
    Journal.open(empty).close()  # a journal no run has used

    no_output = invoke("export", "--state", str(odd))
    missing = invoke("export", "--output", str(tmp_path / "x.csv"))
    no_run = invoke("export", "--state", str(empty))

    assert (no_output.exit_code, missing.exit_code, no_run.exit_code) == (2, 2, 2)
    assert no_output.stderr == f"distributor: give --output: the CSV to write (the journal {odd} does not say)\n"
    assert missing.stderr == (f"distributor: no journal at {tmp_path / 'x.journal.sqlite'}: this distribution has not "
                              "run yet (or its journal is elsewhere: give --state)\n")
    assert no_run.stderr == f"distributor: journal {empty} holds no run yet: nothing to export\n"
    assert not (tmp_path / "e.csv").exists()


@pytest.mark.slow
def test_export_mid_run_writes_a_consistent_snapshot_and_leaves_the_run_alone(tmp_path: Path, sandbox) -> None:
    server = sandbox()
    segment = write_segment(tmp_path / "s.csv", ids(400))
    out = tmp_path / "out" / "codes.csv"
    journal_path = out.with_name("codes.journal.sqlite")
    process = start_job("--segment", str(segment), "--campaign", "reactivation-20", "--rate-limit", "1200/min",
                        "--api-url", server.url, "--output", str(out))
    snapshot = tmp_path / "mid" / "codes.csv"
    try:
        wait_for(lambda: codes_saved(journal_path) >= 20)
        result = invoke("export", "--state", str(journal_path), "--output", str(snapshot))
        _, mid_run = read_codes(snapshot)
        _, new_mid_run = read_codes(delta_of(snapshot.parent))
        wait_for(lambda: codes_saved(journal_path) >= len(mid_run) + 10)  # the run went on publishing
    finally:
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=30)

    assert result.exit_code == 0, result.output
    assert "a run is in progress: these files are a snapshot; the run rewrites them when it ends" in result.stdout
    assert process.returncode == 3  # stopped by the signal, not by the export
    _, final = read_codes(out)
    assert 20 <= len(mid_run) < len(final) <= 400
    assert all(final[identity] == code for identity, code in mid_run.items())  # a code never changes
    assert new_mid_run == mid_run  # the first run: every code is new


def test_help_shows_an_example() -> None:
    result = invoke("export", "--help")
    assert result.exit_code == 0
    assert "distributor export jobs/reactivation.toml" in result.stdout

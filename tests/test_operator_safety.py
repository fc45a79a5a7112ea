"""An operator's mistakes and accidents: the journal's lock and project, unusable paths, storage failures,
truthful advice, a first test batch, logs and signals, Parquet as an optional extra.

Tests run as root, and permission bits do not stop root: an unusable folder is one whose parent is a *file*, a
read-only folder is one with the immutable attribute (``chattr +i``, which stops root too; skipped where the
filesystem lacks it), and a full disk is a real file-size limit (``RLIMIT_FSIZE``) on a real run process, which
makes every write beyond it fail with ``EFBIG`` exactly as a full disk fails with ``ENOSPC``.
"""

from __future__ import annotations

import json
import os
import re
import resource
import signal
import sqlite3
import subprocess
import sys
import time
import tomllib
from contextlib import contextmanager
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import (
    PROJECT,
    SAMPLE_SEGMENT,
    SANDBOX_ENV,
    codes_saved,
    held_codes,
    read_codes,
    start_job,
    wait_for,
    write_segment,
)

from distributor.cli import main
from distributor.units import Rate

REACTIVATION = PROJECT / "jobs" / "reactivation.toml"


def ids(count: int) -> list[str]:
    return [f"cust-{n:05d}" for n in range(count)]


def invoke(*args: str, env: dict[str, str] | None = None):
    return CliRunner().invoke(main, list(args), env=env or {}, catch_exceptions=False)


KEYS_ENV = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **SANDBOX_ENV}


def run_process(*args: str, env: dict[str, str] | None = None, **options) -> subprocess.CompletedProcess[str]:
    """``python -m distributor ARGS`` in a real process, to its end (``env``: the sandbox's keys by default)."""
    return subprocess.run([sys.executable, "-m", "distributor", *args], check=False, capture_output=True, text=True,
                          timeout=120, env=KEYS_ENV if env is None else env, **options)


def loopback(server, segment: Path, output: Path, *extra: str) -> list[str]:
    return ["--segment", str(segment), "--campaign", "reactivation-20", "--api-url", server.url,
            "--rate-limit", "6000/min", "--output", str(output), "--timeout", "5s", *extra]


def summary_of(output: Path) -> dict:
    return json.loads(output.with_name(output.stem + ".summary.json").read_text())


def one_line(stderr: str) -> str:
    """The one message line of a failure (log lines may precede it), with no traceback."""
    lines = [line for line in stderr.splitlines() if line.startswith("distributor: ")]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    return lines[0]


# ------------------------------------------------------------------------------------------ 9.7 the lock
@pytest.mark.slow
def test_a_second_run_on_a_running_journal_is_refused_by_its_name_a_symlink_or_a_hard_link(
    tmp_path: Path, sandbox
) -> None:
    """One run holds the journal; a second run of the same command, one through a symlink and one through a hard link
    are all refused (exit 3) while it runs. (The same command was a test of its own in test_crash_safety, with a
    first run of its own.)"""
    server = sandbox(latency_median=0.5)
    # far more members than the test lasts (50 s of calls): the first run still holds the lock, however busy the
    # machine, when the second and the third look at it (with 100 the first once finished before the third began)
    segment = write_segment(tmp_path / "s.csv", ids(1000))
    output = tmp_path / "out" / "codes.csv"
    journal = tmp_path / "out" / "codes.journal.sqlite"
    first = start_job(*loopback(server, segment, output, "--rate-limit", "20/s"))
    try:
        wait_for(lambda: codes_saved(journal) >= 1)
        again = start_job(*loopback(server, segment, output, "--rate-limit", "20/s"))
        _, err = again.communicate(timeout=60)
        assert again.returncode == 3, err
        assert f"distributor: journal {journal} is in use by pid {first.pid}" in err

        (tmp_path / "elsewhere").mkdir()
        alias = tmp_path / "elsewhere" / "alias.sqlite"
        alias.symlink_to(journal)
        second = start_job(*loopback(server, segment, tmp_path / "elsewhere" / "codes.csv", "--state", str(alias)))
        _, err = second.communicate(timeout=60)
        assert second.returncode == 3, err
        assert f"is in use by pid {first.pid}" in one_line(err)

        hard = tmp_path / "elsewhere" / "hard.sqlite"
        os.link(journal, hard)
        third = start_job(*loopback(server, segment, tmp_path / "elsewhere" / "other.csv", "--state", str(hard)))
        _, err = third.communicate(timeout=60)
        assert third.returncode == 3, err
        assert "is in use by another process (through another name of the same file)" in one_line(err)
        assert not Path(f"{hard}-wal").exists()  # SQLite never opened the file under the second name
    finally:
        first.send_signal(signal.SIGTERM)
        first.communicate(timeout=20)
    # one run's calls only: no customer was published twice
    customers = [p.customer_source_id for p in server.sandbox.publications]
    assert len(customers) == len(set(customers))


# ------------------------------------------------------------------------------------------ 10.1 one project
def test_another_project_on_the_same_host_is_refused_and_the_token_never_recorded(tmp_path: Path, sandbox) -> None:
    server = sandbox()
    segment = write_segment(tmp_path / "s.csv", ids(5))
    output = tmp_path / "codes.csv"
    assert invoke("run", *loopback(server, segment, output), env=SANDBOX_ENV).exit_code == 0
    arrivals = len(server.sandbox.arrivals)

    other_keys = {"VOUCHERIFY_APP_ID": "another-project", "VOUCHERIFY_APP_TOKEN": "another-token"}
    result = invoke("run", *loopback(server, segment, output), env=other_keys)
    assert result.exit_code == 2
    assert "was made with the keys of project sha256:" in one_line(result.stderr)
    assert len(server.sandbox.arrivals) == arrivals
    journal_bytes = (tmp_path / "codes.journal.sqlite").read_bytes()
    assert SANDBOX_ENV["VOUCHERIFY_APP_TOKEN"].encode() not in journal_bytes
    assert SANDBOX_ENV["VOUCHERIFY_APP_ID"].encode() not in journal_bytes


def test_a_journal_from_before_the_record_adopts_the_project_once(tmp_path: Path, sandbox) -> None:
    server = sandbox()
    segment = write_segment(tmp_path / "s.csv", ids(5))
    output = tmp_path / "codes.csv"
    assert invoke("run", *loopback(server, segment, output), env=SANDBOX_ENV).exit_code == 0
    journal = tmp_path / "codes.journal.sqlite"
    with sqlite3.connect(journal) as db:  # as an older distributor left it
        db.execute("DELETE FROM meta WHERE key IN ('api_host', 'project')")

    first = invoke("run", *loopback(server, segment, output), env=SANDBOX_ENV)
    second = invoke("run", *loopback(server, segment, output), env=SANDBOX_ENV)
    assert first.exit_code == second.exit_code == 0
    assert "did not record its Voucherify project: it is now bound to http://127.0.0.1" in first.stderr
    assert "did not record" not in second.stderr
    with sqlite3.connect(journal) as db:
        assert dict(db.execute("SELECT key, value FROM meta WHERE key IN ('api_host', 'project')"))["api_host"] == (
            server.url.rstrip("/"))


@pytest.mark.slow(seconds=5)
def test_a_sandbox_journal_refuses_a_real_host_and_the_job_s_to_run_it_for_real_comment_works_when_followed_literally(
    tmp_path: Path, sandbox
) -> None:
    """The rehearsal's journal holds sandbox codes: the same job aimed at a real host is refused before any call
    (run and plan alike, nothing rewritten); the job's comment says what to do instead, and doing it works.
    (One 285-member rehearsal serves both points: they were two tests, each rehearsing the same job.)"""
    (tmp_path / "jobs").mkdir()
    (tmp_path / "sample_data").mkdir()
    (tmp_path / "sample_data" / "segment.csv").write_bytes(SAMPLE_SEGMENT.read_bytes())
    job = tmp_path / "jobs" / "reactivation.toml"
    shipped = REACTIVATION.read_text()
    job.write_text(shipped)
    assert invoke("run", str(job), "--rate-limit", "60000/min").exit_code == 0  # the rehearsal
    rehearsal_output = (job.parent / tomllib.loads(shipped)["output"]).resolve()
    sandbox_codes = read_codes(rehearsal_output)[1]

    real = sandbox()  # stands in for Voucherify: another host, real keys
    without_sandbox = shipped.split("\n[sandbox]")[0]
    with_real_host = without_sandbox.replace('api_url = "sandbox"', f'api_url = "{real.url}"')
    job.write_text(with_real_host)
    for verb in ("run", "plan"):
        refused = invoke(verb, str(job), "--rate-limit", "6000/min", env=SANDBOX_ENV)
        assert refused.exit_code == 2, refused.output
        line = one_line(refused.stderr)
        assert "was made against the embedded sandbox (--api-url sandbox)" in line
        assert real.url in line and "--output (or --state)" in line
        assert "another --output" in line  # the refusal says what to do
    assert real.sandbox.arrivals == []
    assert read_codes(rehearsal_output)[1] == sandbox_codes  # nothing rewritten

    suggested = re.search(r'point output at a new file \(e\.g\. "([^"]+)"', shipped.replace("\n# ", " "))
    assert suggested is not None
    job.write_text(re.sub(r'(?m)^output = ".*"$', f'output = "{suggested.group(1)}"', with_real_host))
    result = invoke("run", str(job), "--rate-limit", "60000/min", env=SANDBOX_ENV)
    assert result.exit_code == 0, result.output
    codes = read_codes((job.parent / suggested.group(1)).resolve())[1]
    assert len(codes) == 285 and {i: {c} for i, c in codes.items()} == held_codes(real)


@pytest.mark.slow(seconds=6)
def test_the_readme_s_demo_as_a_real_process_then_its_loopback_rehearsal(tmp_path: Path, sandbox) -> None:
    """README: the demo, then the loopback rehearsal — its command names an output of its own.

    The demo is the README's first command run as a user meets it: the console script in a real process on the
    embedded sandbox, no keys in the environment, stderr not a terminal (plain log lines, no progress bar), the
    summary on stdout. (It was a test of its own in test_cli_run, a second 285-member demo run.)"""
    demo_output = tmp_path / "demo-output" / "reactivation-codes.csv"
    job = tmp_path / "jobs" / "demo.toml"
    job.parent.mkdir()
    text = (PROJECT / "jobs" / "demo.toml").read_text().replace('"../sample_data/', f'"{PROJECT}/sample_data/')
    job.write_text(text)
    demo = run_process("run", str(job), "--rate-limit", "6000/min", env={"PATH": "/usr/bin:/bin"})
    assert demo.returncode == 0, demo.stderr
    assert "INFO segment:" in demo.stderr and "identity column 'identity' (recognised)" in demo.stderr
    assert "\x1b[" not in demo.stderr  # no terminal escapes in a log
    for line in ("published     285", "already held  0", "failed        0",
                 "skipped       9  (3 duplicate, 2 empty, 3 placeholder, 1 too_long)",
                 "exit 0: every valid member holds a code", "rate          "):
        assert line in demo.stdout
    header, codes = read_codes(demo_output)
    assert header == ["identity", "reactivation_code"] and len(codes) == 285

    server = sandbox()
    readme = (PROJECT / "README.md").read_text()
    rehearsal = next(line for line in readme.splitlines() if "distributor run jobs/demo.toml --api-url http://127.0.0.1" in line)
    args = rehearsal.split("distributor run ", 1)[1].split()
    args = [str(job) if arg == "jobs/demo.toml" else arg.replace("http://127.0.0.1:8080", server.url) for arg in args]
    args = [str(tmp_path / arg) if arg.startswith("demo-output/") else arg for arg in args]
    result = invoke("run", *args, "--rate-limit", "60000/min", env=SANDBOX_ENV)
    assert result.exit_code == 0, result.output
    assert "published     285" in result.stdout
    assert len(server.sandbox.publications) == 285


# ------------------------------------------------------------------------------------------ 10.4 paths
def test_an_output_whose_parent_is_a_file_exits_2_before_the_segment_is_read(tmp_path: Path, sandbox) -> None:
    server = sandbox()
    (tmp_path / "plain-file").write_text("not a folder")
    missing_segment = tmp_path / "not-yet-exported.csv"  # never opened: the path check comes first
    for target in ("--output", "--state"):
        output = tmp_path / "plain-file" / "codes.csv"
        args = loopback(server, missing_segment, tmp_path / "ok" / "codes.csv")
        args += [target, str(output if target == "--output" else tmp_path / "plain-file" / "j.sqlite")]
        result = invoke("run", *args, env=SANDBOX_ENV)
        assert result.exit_code == 2
        line = one_line(result.stderr)
        assert f"{tmp_path / 'plain-file'} is a file, not a folder" in line
        assert "not-yet-exported" not in line
    assert server.sandbox.arrivals == []


def test_an_output_that_would_overwrite_the_segment_exits_2(tmp_path: Path, sandbox) -> None:
    server = sandbox()
    segment = write_segment(tmp_path / "export.csv", ids(5))
    before = segment.read_bytes()
    result = invoke("run", *loopback(server, segment, tmp_path / "." / "export.csv"), env=SANDBOX_ENV)
    assert result.exit_code == 2
    assert "the run would overwrite the export" in one_line(result.stderr)
    assert segment.read_bytes() == before and server.sandbox.arrivals == []


def test_an_output_another_journal_writes_exits_2(tmp_path: Path, sandbox) -> None:
    server = sandbox()
    segment = write_segment(tmp_path / "s.csv", ids(5))
    output = tmp_path / "shared" / "codes.csv"
    first = invoke("run", *loopback(server, segment, output, "--state", str(tmp_path / "a.sqlite")), env=SANDBOX_ENV)
    assert first.exit_code == 0
    codes = read_codes(output)[1]
    arrivals = len(server.sandbox.arrivals)

    second = invoke("run", *loopback(server, segment, output, "--state", str(tmp_path / "b.sqlite")), env=SANDBOX_ENV)
    assert second.exit_code == 2
    assert f"belongs to the distribution of journal {tmp_path / 'a.sqlite'}" in one_line(second.stderr)
    assert read_codes(output)[1] == codes and len(server.sandbox.arrivals) == arrivals


def test_a_sandbox_typo_exits_2_before_the_segment_is_read(tmp_path: Path) -> None:
    job = tmp_path / "job.toml"
    job.write_text('segment = "missing.csv"\ncampaign = "c"\napi_url = "sandbox"\nrate_limit = "10/min"\n'
                   '[sandbox]\nlatency = "10ms"\nerorr_rate = 0.5\n')
    result = invoke("run", str(job))
    assert result.exit_code == 2
    assert one_line(result.stderr) == f"distributor: unknown option in [sandbox] of {job}: erorr_rate"


@pytest.mark.slow
def test_without_output_the_files_go_beside_the_job_file_not_the_working_directory(tmp_path: Path) -> None:
    job = tmp_path / "jobs" / "weekly.toml"
    job.parent.mkdir()
    job.write_text(f'segment = "{SAMPLE_SEGMENT}"\ncampaign = "reactivation-20"\napi_url = "sandbox"\n'
                   'rate_limit = "60000/min"\n')
    cwd = tmp_path / "home"
    cwd.mkdir()
    completed = run_process("run", str(job), cwd=cwd, env={"PATH": "/usr/bin:/bin"})
    assert completed.returncode == 0, completed.stderr
    assert list(cwd.iterdir()) == []
    assert (job.parent / "reactivation-20-codes.csv").exists()
    assert (job.parent / "reactivation-20-codes.journal.sqlite").exists()


# ------------------------------------------------------------------------------------------ 10.4 storage
@contextmanager
def read_only_folder(folder: Path):
    """``folder`` made read-only even for root: the immutable attribute (no entry can be created or renamed in
    it; files already open can still be written).  Skips where the filesystem or the container refuses it."""
    folder.mkdir(parents=True, exist_ok=True)
    if subprocess.run(["chattr", "+i", str(folder)], check=False, capture_output=True).returncode != 0:
        pytest.skip("chattr +i is not available here")
    try:
        yield folder
    finally:
        subprocess.run(["chattr", "-i", str(folder)], check=True)


def test_a_read_only_output_folder_exits_2_before_the_segment_is_read(tmp_path: Path, sandbox) -> None:
    server = sandbox()
    with read_only_folder(tmp_path / "out"):
        result = invoke("run", *loopback(server, tmp_path / "missing.csv", tmp_path / "out" / "codes.csv"),
                        env=SANDBOX_ENV)
    assert result.exit_code == 2
    assert f"output folder {tmp_path / 'out'} is not writable" in one_line(result.stderr)
    assert server.sandbox.arrivals == []


@pytest.mark.slow(seconds=4)
def test_a_folder_made_read_only_mid_run_stops_with_exit_3_and_records_the_end(tmp_path: Path, sandbox) -> None:
    server = sandbox(latency_median=0.1)
    members = ids(100)  # 2.5 s of calls at 40/s: the signal comes after 5 codes, the resume does the rest
    segment = write_segment(tmp_path / "s.csv", members)
    output = tmp_path / "out" / "codes.csv"
    journal = tmp_path / "out" / "codes.journal.sqlite"
    args = loopback(server, segment, output, "--rate-limit", "40/s")
    process = start_job(*args)
    wait_for(lambda: codes_saved(journal) >= 5)
    with read_only_folder(tmp_path / "out"):
        process.send_signal(signal.SIGTERM)  # the run then rewrites its files: it cannot
        _, err = process.communicate(timeout=20)
        assert process.returncode == 3, err
        assert f"cannot write the files beside {output}" in one_line(err)
        with sqlite3.connect(f"file:{journal}?mode=ro", uri=True) as db:
            ended, reason = db.execute("SELECT ended_at, reason FROM runs ORDER BY id DESC LIMIT 1").fetchone()
        assert ended is not None and reason == "storage_failure"

    resumed = run_process("run", *args)
    assert resumed.returncode == 0, resumed.stderr
    held = held_codes(server)
    assert set(held) == set(members) and {i: {c} for i, c in read_codes(output)[1].items()} == held


def _run_with_file_size_limit(args: list[str], limit_bytes: int) -> subprocess.CompletedProcess[str]:
    def limit() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write beyond the limit fails (EFBIG), like a full disk
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))

    return run_process("run", *args, preexec_fn=limit)


@pytest.mark.slow(seconds=4)
def test_a_disk_that_fills_up_mid_run_stops_resumably_with_exit_3(tmp_path: Path, sandbox) -> None:
    server = sandbox()
    members = ids(600)
    segment = write_segment(tmp_path / "s.csv", members)
    output = tmp_path / "out" / "codes.csv"
    args = loopback(server, segment, output, "--rate-limit", "600/s")

    # room for the journal, its loaded members and a few dozen publications (each writes ~36 kB of WAL), far
    # from all 600: the disk fills up mid-run, whatever the timing
    full = _run_with_file_size_limit(args, 2_000_000)
    assert full.returncode == 3, full.stderr
    assert "Traceback" not in full.stderr
    # the journal refused first (the run stops, saves what it can and reports on stdout, exit 3) or the files did
    # (one line on stderr): either way one truthful message that says how to resume
    said = full.stdout + full.stderr
    assert "cannot write" in said and "run the same command again" in said, said
    published_before = len(server.sandbox.publications)
    assert 0 < published_before < len(members)

    resumed = run_process("run", *args)
    assert resumed.returncode == 0, resumed.stderr
    held = held_codes(server)
    assert set(held) == set(members) and all(len(codes) == 1 for codes in held.values())
    assert {i: {c} for i, c in read_codes(output)[1].items()} == held


# ------------------------------------------------------------------------------------------ 10.4 the truth
@pytest.mark.parametrize(
    ("env", "campaign", "reason"),
    [({"VOUCHERIFY_APP_ID": "sandbox-app-id", "VOUCHERIFY_APP_TOKEN": "wrong"}, "reactivation-20", "unauthorized"),
     (SANDBOX_ENV, "no-such-campaign", "unknown_campaign")],
)
def test_a_fatal_stop_advises_a_fix_not_a_rerun_and_writes_no_empty_hand_off(
    tmp_path: Path, sandbox, env: dict[str, str], campaign: str, reason: str
) -> None:
    server = sandbox()
    segment = write_segment(tmp_path / "s.csv", ids(5))
    output = tmp_path / "codes.csv"
    args = loopback(server, segment, output)
    args[args.index("--campaign") + 1] = campaign
    result = invoke("run", *args, env=env)
    assert result.exit_code == 3
    summary = summary_of(output)
    assert summary["reason"] == reason
    assert "run the same command again" not in summary["next_step"] and "then run again" in summary["next_step"]
    assert summary["distribution"] == campaign and "distribution None" not in result.stdout
    assert not output.exists() and not output.with_name("codes.new.csv").exists()
    assert "output        none written: no code was ever published" in result.stdout


def test_plan_exits_3_when_voucherify_cannot_be_reached(tmp_path: Path) -> None:
    import socket

    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    segment = write_segment(tmp_path / "s.csv", ids(5))
    result = invoke("plan", "--segment", str(segment), "--campaign", "reactivation-20", "--rate-limit", "80/min",
                    "--api-url", f"http://127.0.0.1:{port}", "--output", str(tmp_path / "o.csv"), "--timeout", "1s",
                    env=SANDBOX_ENV)
    assert result.exit_code == 3
    assert "distributor: run would fail: Voucherify could not be reached" in result.stderr


@pytest.mark.parametrize("suffix", ["/v1", "/v1/", "/"])
def test_the_api_url_may_end_in_v1_or_a_slash(tmp_path: Path, sandbox, suffix: str) -> None:
    server = sandbox()
    segment = write_segment(tmp_path / "s.csv", ids(3))
    args = loopback(server, segment, tmp_path / "codes.csv")
    args[args.index("--api-url") + 1] = server.url.rstrip("/") + suffix
    result = invoke("run", *args, env=SANDBOX_ENV)
    assert result.exit_code == 0, result.output
    assert {a.path for a in server.sandbox.arrivals} >= {"/v1/publications"}


# ------------------------------------------------------------------------------------------ 10.5 --limit
def test_limit_serves_the_first_members_then_the_same_command_without_it_the_rest(tmp_path: Path, sandbox) -> None:
    server = sandbox()
    members = ids(30)
    segment = write_segment(tmp_path / "s.csv", members)
    output = tmp_path / "codes.csv"

    plan = invoke("plan", *loopback(server, segment, output, "--limit", "10"), "--json", env=SANDBOX_ENV)
    assert plan.exit_code == 0 and json.loads(plan.stdout)["to_serve"] == 10

    first = invoke("run", *loopback(server, segment, output, "--limit", "10"), env=SANDBOX_ENV)
    assert first.exit_code == 3
    assert set(read_codes(output)[1]) == set(members[:10])
    assert set(held_codes(server)) == set(members[:10])
    summary = summary_of(output)
    assert summary["reason"] == "limit" and "without --limit" in summary["next_step"]

    rest = invoke("run", *loopback(server, segment, output), env=SANDBOX_ENV)
    assert rest.exit_code == 0
    held = held_codes(server)
    assert set(held) == set(members) and all(len(codes) == 1 for codes in held.values())
    assert "already held  10" in rest.stdout


# ------------------------------------------------------------------------------------------ 10.6 logs, SIGHUP
@pytest.mark.slow
def test_verbose_logs_every_retry_with_its_reason_and_json_logs_are_one_object_per_line(
    tmp_path: Path, sandbox
) -> None:
    server = sandbox(error_rate=0.3, lost_answer_rate=0.2, strict_source_id=True, seed=3)
    segment = write_segment(tmp_path / "s.csv", ids(20))
    quiet = run_process("run", *loopback(server, segment, tmp_path / "a.csv"))
    assert quiet.returncode == 0 and "retry:" not in quiet.stderr
    verbose = run_process("run", *loopback(server, segment, tmp_path / "b.csv", "-v", "--log-format", "json"))
    assert verbose.returncode == 0, verbose.stderr
    entries = [json.loads(line) for line in verbose.stderr.splitlines()]
    retries = [e for e in entries if e["msg"].startswith("retry:")]
    assert any("server_error" in e["msg"] for e in retries) and all(e["level"] == "debug" for e in retries)
    assert all(e["event"] == "retry" and isinstance(e["row"], int) and e["reason"] for e in retries)
    assert any(e["msg"].startswith("look-up of the member at row") for e in entries)
    assert all(e["ts"].endswith("Z") and "T" in e["ts"] for e in entries)
    assert SANDBOX_ENV["VOUCHERIFY_APP_TOKEN"] not in verbose.stderr


@pytest.mark.slow
def test_verbose_logs_the_server_s_pause_and_every_throttle_change(tmp_path: Path, sandbox) -> None:
    server = sandbox(rate_limit=Rate(20, 2.0))  # the plan is half the budget the job was given: 429s
    segment = write_segment(tmp_path / "s.csv", ids(30))
    result = run_process("run", *loopback(server, segment, tmp_path / "c.csv", "--rate-limit", "40/2s", "-v"))
    assert result.returncode == 0, result.stderr
    assert "DEBUG pause: HTTP 429 asks to wait; every call waits" in result.stderr
    assert "DEBUG throttle: 40 → 20 calls per 2.1s window (a 429 answer)" in result.stderr
    assert "(recovering after a cut)" in result.stderr


@pytest.mark.slow
def test_sighup_rewrites_the_files_records_the_end_and_exits_3(tmp_path: Path, sandbox) -> None:
    server = sandbox(latency_median=0.2)
    segment = write_segment(tmp_path / "s.csv", ids(200))
    output = tmp_path / "out" / "codes.csv"
    journal = tmp_path / "out" / "codes.journal.sqlite"
    process = start_job(*loopback(server, segment, output, "--rate-limit", "50/s"))
    wait_for(lambda: codes_saved(journal) >= 10)
    process.send_signal(signal.SIGHUP)
    out, err = process.communicate(timeout=20)

    assert process.returncode == 3, err
    assert "exit 3: stopped by SIGHUP" in out and "Traceback" not in err
    with sqlite3.connect(journal) as db:
        ended, reason = db.execute("SELECT ended_at, reason FROM runs ORDER BY id DESC LIMIT 1").fetchone()
        saved = dict(db.execute("SELECT identity, code FROM members WHERE state = 'done'"))
    assert ended is not None and reason == "interrupted"
    assert read_codes(output)[1] == saved and 10 <= len(saved) < 200
    assert summary_of(output)["reason"] == "interrupted"


@pytest.mark.slow
def test_the_progress_interval_is_configurable(tmp_path: Path, sandbox) -> None:
    server = sandbox(latency_median=0.05)
    segment = write_segment(tmp_path / "s.csv", ids(60))
    started = time.monotonic()
    completed = run_process(
        "run", *loopback(server, segment, tmp_path / "c.csv", "--rate-limit", "40/s", "--progress-interval", "200ms"))
    assert completed.returncode == 0, completed.stderr
    lines = completed.stderr.count("progress: ")
    assert lines >= 3 and lines <= (time.monotonic() - started) / 0.2 + 1


# ------------------------------------------------------------------------------------------ 10.7 Parquet extra
@pytest.mark.slow
def test_a_parquet_segment_without_the_extra_exits_2_naming_it(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    segment = tmp_path / "s.parquet"
    pq.write_table(pa.table({"identity": ["a", "b"]}), segment)
    without_pyarrow = ("import sys; sys.modules['pyarrow'] = None; sys.modules['pyarrow.parquet'] = None; "
                       "from distributor.cli import main; main()")
    completed = subprocess.run(
        [sys.executable, "-c", without_pyarrow, "run", "--segment", str(segment), "--campaign", "c",
         "--rate-limit", "10/min", "--api-url", "sandbox", "--output", str(tmp_path / "o.csv")],
        check=False, capture_output=True, text=True, timeout=60, env={"PATH": "/usr/bin:/bin"},
    )
    assert completed.returncode == 2
    assert "pip install 'distributor[parquet]'" in one_line(completed.stderr)

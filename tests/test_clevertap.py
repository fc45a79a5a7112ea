"""Pushing the codes to CleverTap (issue 12): the stand-in's answers, the client, ``run --clevertap``, ``push``.

Everything runs against the real loopback stand-ins (Voucherify and CleverTap on one server); the assertions
are about what CleverTap ends up holding, what it received, what the journal holds, and the exit code and line.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from click.testing import CliRunner
from conftest import SANDBOX_ENV, read_codes, run, wait_for, write_segment

from distributor.clevertap import (
    CleverTapClient,
    CleverTapCredentials,
    describe_target,
    resolve_url,
)
from distributor.cli import main
from distributor.config import JobConfig
from distributor.errors import (
    EXIT_MEMBER_FAILURES,
    EXIT_OK,
    EXIT_STOPPED,
    ConfigError,
    JournalError,
    StopRun,
)
from distributor.journal import SCHEMA_VERSION, Journal
from distributor.sandbox import SandboxConfig, SandboxServer
from distributor.sandbox.clevertap import (
    DEMO_ACCOUNT_ID,
    DEMO_PASSCODE,
    CleverTapConfig,
    CleverTapWorld,
)

CT_ENV = {"CLEVERTAP_ACCOUNT_ID": DEMO_ACCOUNT_ID, "CLEVERTAP_PASSCODE": DEMO_PASSCODE}
HEADERS = {"X-CleverTap-Account-Id": DEMO_ACCOUNT_ID, "X-CleverTap-Passcode": DEMO_PASSCODE}
PROPERTY = "reactivation_code"


@pytest.fixture
def stand_in() -> Iterator[Any]:
    """A factory: ``stand_in(**clevertap_options)`` serves Voucherify and CleverTap on one loopback port."""
    servers: list[SandboxServer] = []

    def start(**options: Any) -> SandboxServer:
        options.setdefault("seed", 3)
        server = SandboxServer(SandboxConfig(seed=1), clevertap=CleverTapWorld(CleverTapConfig(**options))).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


def world(server: SandboxServer) -> CleverTapWorld:
    assert server.clevertap is not None
    return server.clevertap


def config_for(
    tmp_path: Path, server: SandboxServer, members: list[str], *, env: dict[str, str] | None = None, **options: Any
) -> JobConfig:
    segment = tmp_path / "segment.csv"
    if not segment.exists():
        write_segment(segment, members)
    values: dict[str, Any] = {
        "segment": segment,
        "campaign": "reactivation-20",
        "rate_limit": "6000/min",
        "output": tmp_path / "out" / "codes.csv",
        "api_url": server.url,
        "timeout": "5s",
        "property": PROPERTY,
        "clevertap": server.url,
    }
    values.update(options)
    return JobConfig.load(None, values, {**SANDBOX_ENV, **CT_ENV, **(env or {})})


def journal_codes(path: Path) -> dict[str, str]:
    with Journal.open(path, readonly=True) as journal:
        return dict(journal.codes())


def clevertap_codes(server: SandboxServer) -> dict[str, str]:
    return {key[1]: data[PROPERTY] for key, data in world(server).profiles.items() if PROPERTY in data}


def ids(count: int) -> list[str]:
    return [f"{index:06d}" for index in range(1, count + 1)]


def upload(server: SandboxServer, records: list[dict[str, Any]], headers: dict[str, str] = HEADERS) -> httpx.Response:
    return httpx.post(server.url + "/1/upload", json={"d": records}, headers=headers, timeout=5)


def profile(identity: str, code: str) -> dict[str, Any]:
    return {"identity": identity, "type": "profile", "profileData": {PROPERTY: code}}


# ---------------------------------------------------------------------- the stand-in answers as CleverTap does
def test_stand_in_upload_answers_success_partial_and_fail_with_the_record_number(stand_in) -> None:
    server = stand_in(refused_identities=frozenset({"bad"}))
    ok = upload(server, [profile("1", "A"), profile("2", "B")])
    assert ok.status_code == 200 and ok.json() == {"status": "success", "processed": 2, "unprocessed": []}

    partial = upload(server, [profile("3", "C"), profile("bad", "D"), {"type": "profile", "profileData": {}}])
    body = partial.json()
    assert partial.status_code == 200 and body["status"] == "partial" and body["processed"] == 1
    assert [(e["code"], e["error"].rsplit(":", 1)[1].strip()) for e in body["unprocessed"]] == [(523, "1"), (523, "2")]

    fail = upload(server, [profile("bad", "E")]).json()
    assert fail["status"] == "fail" and fail["processed"] == 0
    # upsert: a second upload updates the property, other properties stay
    upload(server, [{"identity": "1", "type": "profile", "profileData": {"other": "x"}}, profile("1", "Z")])
    assert world(server).holds("1") == {PROPERTY: "Z", "other": "x"}
    assert world(server).holds("bad") is None


def test_stand_in_limits_records_refuses_bad_credentials_and_caps_concurrency(stand_in) -> None:
    server = stand_in(max_records=3, max_concurrent=2, latency=0.3)
    assert upload(server, [profile(str(i), "A") for i in range(4)]).status_code == 400
    wrong = upload(server, [profile("1", "A")], headers={**HEADERS, "X-CleverTap-Passcode": "nope"})
    assert wrong.status_code == 401 and world(server).holds("1") is None

    async def many() -> list[int]:
        async with httpx.AsyncClient(base_url=server.url, headers=HEADERS, timeout=5) as client:
            statuses: list[int] = []

            async def one(i: int) -> None:
                response = await client.post("/1/upload", json={"d": [profile(str(i), "A")]})
                statuses.append(response.status_code)

            async with anyio.create_task_group() as group:
                for i in range(5):
                    group.start_soon(one, i)
            return statuses

    statuses = anyio.run(many)
    assert sorted(statuses).count(200) == 2 and statuses.count(429) == 3
    assert world(server).max_in_flight == 2


def test_stand_in_profile_and_cursor_pages(stand_in) -> None:
    server = stand_in()
    upload(server, [profile(str(i), f"C{i}") for i in range(1, 8)])
    found = httpx.get(server.url + "/1/profile.json", params={"identity": "3"}, headers=HEADERS).json()
    assert found["record"]["profileData"] == {PROPERTY: "C3"}
    assert (
        httpx.get(server.url + "/1/profile.json", params={"identity": "x"}, headers=HEADERS).json()["status"] == "fail"
    )

    async def all_pages() -> list[list[dict[str, Any]]]:
        credentials = CleverTapCredentials(DEMO_ACCOUNT_ID, DEMO_PASSCODE)
        async with CleverTapClient(server.url, credentials) as client:
            return [page async for page in client.profiles({"event_name": "App Launched"}, 3)]

    pages = anyio.run(all_pages)
    assert [len(page) for page in pages] == [3, 3, 1]
    assert sorted(r["identity"] for page in pages for r in page) == sorted(str(i) for i in range(1, 8))


# ---------------------------------------------------------------------- client
def test_regions_urls_and_the_passcode_never_shown() -> None:
    assert resolve_url("eu1") == "https://api.clevertap.com"
    assert resolve_url("IN1") == "https://in1.api.clevertap.com"
    assert resolve_url("https://ct.example.com/") == "https://ct.example.com"
    assert describe_target("us1") == "region us1 (https://us1.api.clevertap.com)"
    for bad in ("mars1", "http://ct.example.com", "ftp://x"):
        with pytest.raises(ConfigError):
            resolve_url(bad)
    credentials = CleverTapCredentials("ACC-1", "s3cr3t-passcode")
    assert "s3cr3t" not in repr(credentials) and "s3cr3t" not in str(credentials)
    client = CleverTapClient("https://api.clevertap.com", credentials)
    assert "s3cr3t" not in repr(client)
    config = JobConfig.load(
        None,
        {"segment": "s.csv", "campaign": "c", "rate_limit": "1/s", "api_url": "sandbox", "clevertap": "eu1"},
        {"CLEVERTAP_ACCOUNT_ID": "ACC-1", "CLEVERTAP_PASSCODE": "s3cr3t-passcode"},
    )
    assert config.clevertap_credentials == credentials and "s3cr3t" not in repr(config)
    with pytest.raises(ConfigError, match="CLEVERTAP_PASSCODE is not set"):
        JobConfig.load(
            None,
            {"segment": "s.csv", "campaign": "c", "rate_limit": "1/s", "api_url": "sandbox", "clevertap": "eu1"},
            {"CLEVERTAP_ACCOUNT_ID": "ACC-1"},
        )


# ---------------------------------------------------------------------- run --clevertap
@pytest.mark.slow
def test_run_pushes_each_members_code_once_with_only_identity_and_property(tmp_path: Path, stand_in) -> None:
    server = stand_in()
    members = ids(150)
    result = run(config_for(tmp_path, server, members, clevertap_batch=40))
    assert result.exit_code == EXIT_OK, result.message
    journal = journal_codes(tmp_path / "out" / "codes.journal.sqlite")
    assert clevertap_codes(server) == journal and set(journal) == set(members)
    assert all(set(data) == {PROPERTY} for data in world(server).profiles.values())  # no Email/Phone/Name
    assert world(server).counts["identifier_properties"] == 0
    assert max(world(server).writes_per_profile().values()) == 1
    pushed = result.summary["clevertap"]
    assert (pushed["pushed"], pushed["failed"], pushed["waiting"]) == (150, 0, 0)
    assert pushed["records_per_code"] == 1.0
    # a rerun has nothing to push, and makes no upload
    uploads = world(server).counts["uploads"]
    assert run(config_for(tmp_path, server, members)).exit_code == EXIT_OK
    assert world(server).counts["uploads"] == uploads


@pytest.mark.slow(seconds=6)
def test_run_delivers_everything_through_faults(tmp_path: Path, stand_in, no_backoff) -> None:
    server = stand_in(
        # latency long enough that 5 uploads always overlap the cap of 2, however busy the machine; batches of 10
        # (~35 uploads) and 15 % of each fault, and no backoff waits: with the jittered real-clock backoff the draws
        # interleaved with the timing (batches of 25 at 10 % drew no 5xx or no lost answer in about 1 run in 4, and a
        # 30 s backoff cap made it last 7-21 s); without the waits seven runs, quiet and beside two busy loops, drew
        # the same faults (22 × 429, 6 × 5xx, 3 lost answers, 15 records refused) in 7 s
        error_rate=0.15, lost_answer_rate=0.15, record_failure_rate=0.05, max_concurrent=2, latency=0.2, seed=5
    )
    members = ids(200)
    result = run(config_for(tmp_path, server, members, clevertap_batch=10, clevertap_concurrency=5))
    assert result.exit_code == EXIT_OK, result.message
    assert clevertap_codes(server) == journal_codes(tmp_path / "out" / "codes.journal.sqlite")
    counts = world(server).counts
    assert counts["fault_5xx"] and counts["lost_answer"] and counts["record_failures"] and counts["too_many_concurrent"]
    assert world(server).max_in_flight <= 2
    this_run = result.summary["clevertap"]["this_run"]
    assert this_run["retries"] > 0 and this_run["rate_limited"] > 0


def test_wrong_passcode_stops_before_any_voucherify_call_then_the_same_command_does_everything(
    tmp_path: Path, stand_in
) -> None:
    server = stand_in()
    members = ids(20)
    with pytest.raises(StopRun) as stopped:
        run(config_for(tmp_path, server, members, env={"CLEVERTAP_PASSCODE": "wrong-passcode-123"}))
    assert stopped.value.exit_code == EXIT_STOPPED
    assert server.url in str(stopped.value) and "401" in str(stopped.value)
    assert "wrong-passcode-123" not in str(stopped.value)
    assert server.sandbox.stats()["arrivals"] == 0  # not one Voucherify call
    assert journal_codes(tmp_path / "out" / "codes.journal.sqlite") == {}

    result = run(config_for(tmp_path, server, members))
    assert result.exit_code == EXIT_OK
    assert clevertap_codes(server) == journal_codes(tmp_path / "out" / "codes.journal.sqlite")


def test_cli_run_with_the_embedded_clevertap_sandbox(tmp_path: Path) -> None:
    segment = write_segment(tmp_path / "s.csv", ids(3))
    runner = CliRunner()
    result = runner.invoke(
        main,
        [
            "run",
            "--segment",
            str(segment),
            "--campaign",
            "reactivation-20",
            "--rate-limit",
            "600/min",
            "--api-url",
            "sandbox",
            "--output",
            str(tmp_path / "codes.csv"),
            "--clevertap",
            "sandbox",
        ],
        env={"CLEVERTAP_ACCOUNT_ID": "someone", "CLEVERTAP_PASSCODE": "ignored-in-sandbox"},
    )
    # the embedded stand-in uses its own account: this run works
    assert result.exit_code == EXIT_OK, result.output
    assert "clevertap     3 codes held" in result.output
    assert "upload        nothing: CleverTap holds every code (pushed by the run)" in result.output


def test_final_refusals_are_reported_with_clevertaps_code_and_make_exit_1(tmp_path: Path, stand_in) -> None:
    server = stand_in(refused_identities=frozenset({"000007", "000011"}))
    members = ids(30)
    result = run(config_for(tmp_path, server, members))
    assert result.exit_code == EXIT_MEMBER_FAILURES and result.reason == "push_failures"
    errors = (tmp_path / "out" / "codes.push-errors.csv").read_text().splitlines()
    assert errors[0] == "identity,row,code,clevertap_code,message,attempts"
    assert sorted(line.split(",")[0] for line in errors[1:]) == ["000007", "000011"]
    assert all(line.split(",")[3] == "523" for line in errors[1:])
    assert result.summary["clevertap"]["failed"] == 2
    assert set(clevertap_codes(server)) == set(members) - {"000007", "000011"}
    assert world(server).writes_per_profile()[("identity", "000001")] == 1


def test_a_run_without_clevertap_then_push_then_push_all(tmp_path: Path, stand_in) -> None:
    server = stand_in()
    members = ids(40)
    config = config_for(tmp_path, server, members, clevertap=None)
    assert run(config).exit_code == EXIT_OK
    assert world(server).counts["uploads"] == 0
    voucherify_calls = server.sandbox.stats()["arrivals"]

    runner = CliRunner()
    state = str(tmp_path / "out" / "codes.journal.sqlite")
    pushed = runner.invoke(main, ["push", "--state", state, "--clevertap", server.url], env=CT_ENV)
    assert pushed.exit_code == EXIT_OK, pushed.output
    assert "holds      40 codes; 0 refused; 0 not yet pushed" in pushed.output
    assert clevertap_codes(server) == journal_codes(Path(state))
    again = runner.invoke(main, ["push", "--state", state, "--clevertap", server.url], env=CT_ENV)
    assert again.exit_code == EXIT_OK and "this run   0 pushed" in again.output
    everything = runner.invoke(main, ["push", "--state", state, "--clevertap", server.url, "--all"], env=CT_ENV)
    assert everything.exit_code == EXIT_OK and "this run   40 pushed" in everything.output
    assert set(world(server).writes_per_profile().values()) == {2}
    assert server.sandbox.stats()["arrivals"] == voucherify_calls  # push never calls Voucherify


def test_cli_run_with_a_wrong_passcode_exits_3_in_one_line_naming_the_target(tmp_path: Path, stand_in) -> None:
    server = stand_in()
    segment = write_segment(tmp_path / "s.csv", ids(3))
    result = CliRunner().invoke(
        main,
        [
            "run",
            "--segment",
            str(segment),
            "--campaign",
            "reactivation-20",
            "--rate-limit",
            "600/min",
            "--api-url",
            server.url,
            "--output",
            str(tmp_path / "codes.csv"),
            "--clevertap",
            server.url,
        ],
        env={**SANDBOX_ENV, **CT_ENV, "CLEVERTAP_PASSCODE": "wrong-passcode-789"},
    )
    assert result.exit_code == EXIT_STOPPED
    last = result.output.splitlines()[-1]
    assert last.startswith("distributor: CleverTap refused account") and server.url in last
    assert "wrong-passcode-789" not in result.output
    assert server.sandbox.stats()["arrivals"] == 0


def test_push_with_a_wrong_passcode_exits_3_and_shows_no_passcode(tmp_path: Path, stand_in) -> None:
    server = stand_in()
    assert run(config_for(tmp_path, server, ids(5), clevertap=None)).exit_code == EXIT_OK
    result = CliRunner().invoke(
        main,
        ["push", "--state", str(tmp_path / "out" / "codes.journal.sqlite"), "--clevertap", server.url],
        env={**CT_ENV, "CLEVERTAP_PASSCODE": "wrong-passcode-456"},
    )
    assert result.exit_code == EXIT_STOPPED
    assert result.output.count("\n") == 1 and "wrong-passcode-456" not in result.output
    assert result.output.startswith("distributor: CleverTap refused account")


# ---------------------------------------------------------------------- crashes and the journal
@pytest.mark.slow(seconds=4)
def test_kill_9_mid_push_then_rerun_leaves_clevertap_holding_exactly_each_code(tmp_path: Path, stand_in) -> None:
    server = stand_in(latency=0.15)
    members = ids(300)
    segment = write_segment(tmp_path / "s.csv", members)
    journal = tmp_path / "out" / "codes.journal.sqlite"
    args = [
        "--segment",
        str(segment),
        "--campaign",
        "reactivation-20",
        "--rate-limit",
        "300/s",
        "--api-url",
        server.url,
        "--output",
        str(tmp_path / "out" / "codes.csv"),
        "--property",
        PROPERTY,
        "--clevertap",
        server.url,
        "--clevertap-batch",
        "10",
        "--clevertap-concurrency",
        "2",
    ]
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **SANDBOX_ENV, **CT_ENV}

    def pushed() -> int:
        try:
            with Journal.open(journal, readonly=True) as opened:
                return opened.push_counts()["pushed"]
        except (JournalError, sqlite3.Error):  # not created yet, or being created
            return 0

    process = subprocess.Popen(
        [sys.executable, "-m", "distributor", "run", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    wait_for(lambda: pushed() >= 40)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=10)
    assert 40 <= pushed() < 300

    final = subprocess.run(
        [sys.executable, "-m", "distributor", "run", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert final.returncode == EXIT_OK, final.stderr
    assert clevertap_codes(server) == journal_codes(journal) and len(clevertap_codes(server)) == 300
    writes = world(server).writes_per_profile()
    assert sum(writes.values()) / len(writes) <= 1.1  # only what the killed run had in flight went twice
    # the passcode is in no file the runs left
    for path in (tmp_path / "out").iterdir():
        assert DEMO_PASSCODE.encode() not in path.read_bytes(), path
    assert DEMO_PASSCODE not in final.stdout + final.stderr


def test_an_older_journal_is_migrated_not_reset(tmp_path: Path) -> None:
    path = tmp_path / "old.journal.sqlite"
    with Journal.open(path) as journal:
        run_id = journal.start_run("s.csv")
        journal.load(run_id, [(1, 1, "000001")])
    raw = sqlite3.connect(path)
    raw.execute("DROP TABLE pushes")
    raw.execute("DROP TABLE code_expiry")
    raw.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION - 1),))  # before h7
    raw.commit()
    raw.close()
    with Journal.open(path) as journal:
        assert journal.meta("schema_version") == str(SCHEMA_VERSION)
        assert journal.member("000001") is not None
        assert journal.push_counts() == {"pushed": 0, "failed": 0, "waiting": 0}


def test_summary_json_holds_the_push_counts(tmp_path: Path, stand_in) -> None:
    server = stand_in()
    result = run(config_for(tmp_path, server, ids(12)))
    summary = json.loads((tmp_path / "out" / "codes.summary.json").read_text())
    assert summary["clevertap"]["pushed"] == 12 and result.exit_code == EXIT_OK
    header, codes = read_codes(tmp_path / "out" / "codes.csv")
    assert header == ["identity", PROPERTY] and codes == clevertap_codes(server)


def test_status_and_progress_show_the_push_counts(tmp_path: Path, stand_in) -> None:
    from distributor.cli import render_status
    from distributor.progress import describe
    from distributor.status import read_status

    server = stand_in(refused_identities=frozenset({"000002"}))
    result = run(config_for(tmp_path, server, ids(6)))
    report = read_status(tmp_path / "out" / "codes.journal.sqlite")
    assert report.clevertap == {"pushed": 5, "failed": 1, "waiting": 0}
    assert "  clevertap     5 codes pushed, 1 refused, 0 not yet pushed" in render_status(report).splitlines()
    assert describe(result.stats).endswith("; CleverTap: 5 pushed, 1 refused")


def test_expiry_property_pushes_a_clevertap_date_and_writes_a_date_column(tmp_path: Path) -> None:
    from distributor.sandbox import Campaign, default_campaigns

    expiring = Campaign(
        id="camp_expiring",
        name="expiring-10",
        expiration_date="2027-01-31T23:59:59.000Z",
        discount={"type": "PERCENT", "percent_off": 10},
    )
    world_ = CleverTapWorld(CleverTapConfig(seed=1))
    voucherify = SandboxConfig(seed=1, campaigns=[*default_campaigns(), expiring])
    with SandboxServer(voucherify, clevertap=world_) as server:
        assert (
            run(
                config_for(tmp_path, server, ids(4), campaign="expiring-10", expiry_property="code_valid_until")
            ).exit_code
            == EXIT_OK
        )
        # a campaign without expiry: the property is left out of the upload
        other = tmp_path / "other"
        other.mkdir()
        assert run(config_for(other, server, ["x-1"], expiry_property="code_valid_until")).exit_code == EXIT_OK
    assert world_.holds("000001")["code_valid_until"] == "$D_1801439999"  # 2027-01-31T23:59:59Z
    assert set(world_.holds("x-1") or {}) == {PROPERTY}
    lines = (tmp_path / "out" / "codes.csv").read_text().splitlines()
    assert lines[0] == f"identity,{PROPERTY},code_valid_until"
    assert all(line.endswith(",31/01/2027 23:59:59") for line in lines[1:]) and len(lines) == 5
    manifest = json.loads((tmp_path / "out" / "codes.manifest.json").read_text())
    assert manifest["columns"]["code_valid_until"] == {
        "ctName": "code_valid_until",
        "dataType": "Date",
        "dateFormat": "dd/MM/yyyy HH:mm:ss",
    }


# ---------------------------------------------------------------------- the audience from CleverTap's profiles API
def test_query_relative_dates_become_clevertap_day_numbers(tmp_path: Path) -> None:
    from datetime import date

    from distributor.audience import read_query

    path = tmp_path / "q.json"
    path.write_text(
        json.dumps(
            {
                "event_name": "Charged",
                "from": "yesterday",
                "to": "today",
                "common_profile_properties": {"x": ["7 days ago", "Yesterday "]},
                "keep": "now",
            }
        )
    )
    assert read_query(path, today=date(2026, 3, 1)) == {
        "event_name": "Charged",
        "from": 20260228,
        "to": 20260301,
        "common_profile_properties": {"x": [20260222, 20260228]},
        "keep": "now",
    }
    path.write_text("{oops")
    with pytest.raises(ConfigError, match=r"q\.json is not valid JSON: line 1 column 2"):
        read_query(path)


@pytest.mark.slow
def test_run_reads_the_audience_from_clevertap_then_next_day_publishes_only_newcomers(
    tmp_path: Path, stand_in, no_backoff
) -> None:
    server = stand_in(query_error_rate=0.3, seed=4)
    for identity in ("000123", "+4915112345", "null", "Anna.B"):
        world(server).profiles[("identity", identity)] = {"Name": "someone"}
    query = tmp_path / "charged-yesterday.json"
    query.write_text(json.dumps({"event_name": "Charged", "from": "yesterday", "to": "yesterday"}))
    args = [
        "run",
        "--clevertap-query",
        str(query),
        "--campaign",
        "reactivation-20",
        "--rate-limit",
        "600/min",
        "--api-url",
        server.url,
        "--output",
        str(tmp_path / "out" / "codes.csv"),
        "--property",
        PROPERTY,
        "--clevertap",
        server.url,
    ]
    first = CliRunner().invoke(main, args, env={**SANDBOX_ENV, **CT_ENV})
    assert first.exit_code == EXIT_OK, first.output
    _, codes = read_codes(tmp_path / "out" / "codes.csv")
    assert set(codes) == {"000123", "+4915112345", "Anna.B"}  # exact; the placeholder is skipped and reported
    assert "null" in (tmp_path / "out" / "codes.skipped.csv").read_text()
    assert {identity: world(server).holds(identity)[PROPERTY] for identity in codes} == codes
    assert world(server).holds("000123")["Name"] == "someone"  # the push only added the code

    world(server).profiles[("identity", "newcomer")] = {}
    second = CliRunner().invoke(main, args, env={**SANDBOX_ENV, **CT_ENV})
    assert second.exit_code == EXIT_OK, second.output
    assert "published     1" in second.output
    assert server.sandbox.stats()["publications"] == 4
    assert world(server).counts["query_faults"] > 0  # 429s and 503s while paging were retried


def test_paging_many_profiles_with_a_small_batch(tmp_path: Path, stand_in, monkeypatch: pytest.MonkeyPatch) -> None:
    from distributor import audience

    monkeypatch.setattr(audience, "BATCH_SIZE", 7)
    server = stand_in()
    for index in range(50):
        world(server).profiles[("identity", f"p{index}")] = {}
    query = tmp_path / "q.json"
    query.write_text("{}")
    config = config_for(tmp_path, server, [], segment=None, clevertap_query=query)
    audience.fetch_audience(config)
    lines = config.layout.audience().read_text().splitlines()
    assert sorted(json.loads(line)["identity"] for line in lines) == sorted(f"p{index}" for index in range(50))
    assert config.segment == (config.layout.audience(),) and config.layout.audience().name.startswith("codes.audience-")


def test_status_and_push_take_a_job_file_whose_audience_comes_from_clevertap(tmp_path: Path, stand_in) -> None:
    server = stand_in()
    world(server).profiles[("identity", "q-1")] = {}
    (tmp_path / "q.json").write_text("{}")
    job = tmp_path / "job.toml"
    job.write_text(
        f'clevertap_query = "q.json"\ncampaign = "reactivation-20"\nrate_limit = "600/min"\n'
        f'api_url = "{server.url}"\nclevertap = "{server.url}"\noutput = "out/codes.csv"\n'
    )
    runner = CliRunner()
    assert runner.invoke(main, ["run", str(job)], env={**SANDBOX_ENV, **CT_ENV}).exit_code == EXIT_OK
    status = runner.invoke(main, ["status", str(job)])
    assert status.exit_code == EXIT_OK and "1 codes pushed" in status.output, status.output
    pushed = runner.invoke(main, ["push", str(job)], env=CT_ENV)
    assert pushed.exit_code == EXIT_OK and "holds      1 codes" in pushed.output, pushed.output


@pytest.mark.slow
def test_sigterm_pushes_what_was_published_before_exiting_3(tmp_path: Path, stand_in) -> None:
    server = stand_in()
    members = ids(400)
    segment = write_segment(tmp_path / "s.csv", members)
    journal = tmp_path / "out" / "codes.journal.sqlite"
    args = [
        "--segment",
        str(segment),
        "--campaign",
        "reactivation-20",
        "--rate-limit",
        "40/s",
        "--api-url",
        server.url,
        "--output",
        str(tmp_path / "out" / "codes.csv"),
        "--property",
        PROPERTY,
        "--clevertap",
        server.url,
    ]
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **SANDBOX_ENV, **CT_ENV}
    process = subprocess.Popen(
        [sys.executable, "-m", "distributor", "run", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )

    def pushed() -> int:
        try:
            with Journal.open(journal, readonly=True) as opened:
                return opened.push_counts()["pushed"]
        except (JournalError, sqlite3.Error):
            return 0

    wait_for(lambda: pushed() >= 30)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=30)
    assert process.returncode == EXIT_STOPPED, err
    held = journal_codes(journal)
    assert 30 <= len(held) < 400
    assert clevertap_codes(server) == held  # everything published before the stop reached CleverTap
    summary = json.loads((tmp_path / "out" / "codes.summary.json").read_text())
    assert summary["clevertap"]["waiting"] == 0 and summary["reason"] == "interrupted"


def test_a_passcode_revoked_mid_push_stops_with_exit_3_then_push_finishes(tmp_path: Path, stand_in) -> None:
    from dataclasses import replace

    server = stand_in(revoked_after_uploads=2)
    members = ids(60)
    result = run(config_for(tmp_path, server, members, clevertap_batch=10, clevertap_concurrency=1))
    assert result.exit_code == EXIT_STOPPED and result.reason == "push_incomplete"
    assert "CleverTap refused the credentials while pushing" in result.message
    pushed = result.summary["clevertap"]
    assert pushed["pushed"] == 20 and pushed["waiting"] == 40 and pushed["failed"] == 0

    world(server).config = replace(world(server).config, revoked_after_uploads=None)  # a new passcode
    state = str(tmp_path / "out" / "codes.journal.sqlite")
    finished = CliRunner().invoke(main, ["push", "--state", state, "--clevertap", server.url], env=CT_ENV)
    assert finished.exit_code == EXIT_OK, finished.output
    assert clevertap_codes(server) == journal_codes(Path(state)) and len(clevertap_codes(server)) == 60


@pytest.mark.slow
def test_distributor_sandbox_serves_clevertap_on_the_same_port() -> None:
    from distributor.sandbox.process import SandboxProcess

    with SandboxProcess("--clevertap-record-failure-rate", "0") as process:
        answer = httpx.post(process.url + "/1/upload", json={"d": [profile("s-1", "CODE")]}, headers=HEADERS, timeout=5)
        found = httpx.get(process.url + "/1/profile.json", params={"identity": "s-1"}, headers=HEADERS, timeout=5)
        wrong = httpx.post(process.url + "/1/upload", json={"d": []}, headers={}, timeout=5)
    assert answer.json() == {"status": "success", "processed": 1, "unprocessed": []}
    assert found.json()["record"]["profileData"] == {PROPERTY: "CODE"}
    assert wrong.status_code == 401


@pytest.mark.slow
def test_codes_reach_clevertap_while_the_run_is_still_publishing(tmp_path: Path, stand_in) -> None:
    server = stand_in()
    result = run(config_for(tmp_path, server, ids(200), rate_limit="50/s"))  # about 4 s of publishing
    assert result.exit_code == EXIT_OK
    with sqlite3.connect(tmp_path / "out" / "codes.journal.sqlite") as db:
        last_published = db.execute("SELECT max(updated_at) FROM members WHERE state = 'done'").fetchone()[0]
    first_pushed = min(write.at for write in world(server).writes)
    assert last_published - first_pushed > 1.0  # pushed at least a second before publishing ended
    assert world(server).counts["uploads"] >= 2  # flushed during the run, not once at the end


# ---------------------------------------------------------------------- rehearsal codes stay in rehearsal
def test_a_stand_in_voucherifys_codes_never_reach_a_real_clevertap(tmp_path: Path, stand_in) -> None:
    """A rehearsal publishes codes that do not exist: pushing them to real profiles would show customers fake
    codes.  run refuses before any call, and push refuses a stand-in journal, both exit 2 in one line."""
    segment = write_segment(tmp_path / "s.csv", ids(5))
    output = tmp_path / "out" / "codes.csv"
    runner = CliRunner()
    refused = runner.invoke(main, ["run", "--segment", str(segment), "--campaign", "reactivation-20",
                                   "--rate-limit", "600/min", "--api-url", "sandbox", "--output", str(output),
                                   "--clevertap", "eu1"], env=CT_ENV)
    assert refused.exit_code == 2, refused.output
    assert "is a stand-in Voucherify, whose codes do not exist" in refused.stderr
    assert not output.exists() and not output.with_name("codes.journal.sqlite").exists()

    server = stand_in()  # a loopback rehearsal: its journal is bound to 127.0.0.1
    assert run(config_for(tmp_path, server, ids(5), clevertap=None)).exit_code == EXIT_OK
    state = str(tmp_path / "out" / "codes.journal.sqlite")
    pushed = runner.invoke(main, ["push", "--state", state, "--clevertap", "eu1"], env=CT_ENV)
    assert pushed.exit_code == 2, pushed.output
    assert "was made against a stand-in Voucherify" in pushed.stderr
    assert world(server).counts["uploads"] == 0


# ---------------------------------------------------------------------- verify --clevertap
@pytest.mark.slow
def test_verify_clevertap_reads_each_profile_back_and_reports_what_differs(tmp_path: Path, stand_in) -> None:
    """Issue 14: where codes are pushed, verify also proves each sampled profile holds its code.  Differences are
    made through the stand-ins (another upload overwrites one code, one profile disappears), never in the journal."""
    # slow answers: verify's many look-ups in flight would pile up on CleverTap's cap without a limit of their own
    server = stand_in(max_concurrent=3, latency=0.2)
    members = ids(12)
    assert run(config_for(tmp_path, server, members, clevertap_concurrency=3)).exit_code == EXIT_OK
    args = ["verify", "--output", str(tmp_path / "out" / "codes.csv"), "--campaign", "reactivation-20",
            "--api-url", server.url, "--rate-limit", "6000/min", "--clevertap", server.url, "--all"]
    runner = CliRunner()

    refused_before = world(server).counts["too_many_concurrent"]
    clean = runner.invoke(main, args, env={**SANDBOX_ENV, **CT_ENV})
    assert clean.exit_code == 0, clean.output
    assert "checked 12: 12 match, 0 mismatch" in clean.output
    # profile reads stay under the account's concurrency cap: CleverTap never had to refuse one
    assert world(server).counts["too_many_concurrent"] == refused_before

    overwritten = upload(server, [{"identity": "000003", "type": "profile", "profileData": {PROPERTY: "NOT-IT"}}])
    assert overwritten.status_code == 200
    del world(server).profiles[("identity", "000007")]
    journal = journal_codes(tmp_path / "out" / "codes.journal.sqlite")

    found = runner.invoke(main, args, env={**SANDBOX_ENV, **CT_ENV})

    assert found.exit_code == 1, found.output
    with (tmp_path / "out" / "codes.verify.csv").open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["identity"], r["journal_code"], r["why"]) for r in rows] == [
        ("000003", journal["000003"], "clevertap_differs"),
        ("000007", journal["000007"], "not_in_clevertap"),
    ]
    assert "'NOT-IT'" in rows[0]["detail"]


# ---------------------------------------------------------------------- plan with CleverTap
def test_plan_proves_the_clevertap_account_and_counts_a_query_audience(tmp_path: Path, stand_in) -> None:
    """plan makes the run's cheap CleverTap check (a wrong passcode is exit 3 before any run) and, for a query job,
    counts the audience CleverTap returns today — without a Voucherify publication."""
    server = stand_in()
    for identity in ("q-1", "q-2", "q-3"):
        world(server).profiles[("identity", identity)] = {}
    (tmp_path / "q.json").write_text("{}")
    job = tmp_path / "job.toml"
    job.write_text(
        f'clevertap_query = "q.json"\ncampaign = "reactivation-20"\nrate_limit = "600/min"\n'
        f'api_url = "{server.url}"\nclevertap = "{server.url}"\noutput = "out/codes.csv"\n'
    )
    runner = CliRunner()

    planned = runner.invoke(main, ["plan", str(job)], env={**SANDBOX_ENV, **CT_ENV})
    refused = runner.invoke(main, ["plan", str(job)], env={**SANDBOX_ENV, **CT_ENV, "CLEVERTAP_PASSCODE": "pass-ZX-9931"})

    assert planned.exit_code == EXIT_OK, planned.output
    assert "run would publish 3 codes" in planned.output
    assert refused.exit_code == EXIT_STOPPED, refused.output
    assert "CleverTap refused account" in refused.output and "pass-ZX-9931" not in refused.output
    assert server.sandbox.stats()["publications"] == 0

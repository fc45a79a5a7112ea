"""Group commits (issue 13.3): fewer commits per publication, the journal's guarantees unchanged.

* every call is committed in the journal before the server receives it (checked from the server's side, with the
  journal opened read-only by the test);
* an answer is committed a fraction of a second after it arrived, not at the end of the run;
* a kill -9 after answers arrived but before their group commit loses no code: the next run gets each member the
  very code the server published for it, and the server publishes nothing twice;
* a SIGTERM commits every answer waiting before the files and the summary are written;
* calls that come fast share commits.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

import pytest
from conftest import codes_saved, held_codes, make_config, read_codes, run, start_job, wait_for, write_segment
from misbehaving import Exchange, MisbehavingServer, Seen, forward
from virtual import VIRTUAL_URL, run_virtual

from distributor.errors import EXIT_OK, EXIT_STOPPED
from distributor.journal import Journal
from distributor.sandbox import SandboxConfig


def ids(n: int) -> list[str]:
    return [f"g-{i:04d}" for i in range(n)]


def job_args(tmp_path: Path, url: str, segment: Path, rate: str, *extra: str) -> list[str]:
    return ["--segment", str(segment), "--campaign", "reactivation-20", "--api-url", url, "--rate-limit", rate,
            "--output", str(tmp_path / "out" / "codes.csv"), "--timeout", "5s", *extra]


@contextmanager
def read_only(journal: Path) -> Iterator[sqlite3.Connection]:
    """The journal as another process sees it while a run writes: committed rows only."""
    connection = sqlite3.connect(f"file:{journal}?mode=ro", uri=True, timeout=10.0)
    try:
        yield connection
    finally:
        connection.close()


def is_publication(seen: Seen) -> bool:
    return seen.method == "POST" and seen.path.startswith("/v1/publications")


# ---------------------------------------------------------------------------------------------- logged before sent
def test_every_call_is_in_the_journal_committed_when_the_server_receives_it(tmp_path: Path, sandbox) -> None:
    upstream = sandbox()
    members = ids(120)
    segment = write_segment(tmp_path / "s.csv", members)
    journal = tmp_path / "out" / "codes.journal.sqlite"
    problems: list[str] = []
    received: dict[str, int] = {}
    lock = threading.Lock()
    relay = forward()

    def check_then_forward(exchange: Exchange) -> None:
        seen = exchange.seen
        with read_only(journal) as db, lock:
            if is_publication(seen):
                body = seen.json()
                identity, source_id = body["customer"]["source_id"], body["source_id"]
                received[identity] = received.get(identity, 0) + 1
                row = db.execute(
                    """SELECT m.state, m.source_id, (SELECT count(*) FROM calls c
                                                     WHERE c.member_id = m.id AND c.kind = 'publish')
                       FROM members m WHERE m.identity = ?""",
                    (identity,),
                ).fetchone()
                if row is None or row[0] != "sending" or row[1] != source_id or row[2] < received[identity]:
                    problems.append(f"{identity}: the journal held {row} when publication {received[identity]} came")
            elif seen.path.startswith("/v1/campaigns"):
                (logged,) = db.execute("SELECT count(*) FROM calls WHERE kind = 'campaign'").fetchone()
                if logged == 0:
                    problems.append("the campaign call came before its row was committed")
        relay(exchange)

    with MisbehavingServer(upstream=upstream.url) as server:
        server.when(lambda seen: True, check_then_forward)
        config = make_config(tmp_path, server, segment, rate_limit="60000/min", concurrency=16)
        result = run(config)

    assert result.exit_code == EXIT_OK, result.message
    assert problems == []
    assert sum(received.values()) == len(members)
    _, codes = read_codes(tmp_path / "out" / "codes.csv")
    assert {identity: {code} for identity, code in codes.items()} == held_codes(upstream)


def test_a_code_waits_a_fraction_of_a_second_for_its_commit_not_for_the_end_of_the_run(
    tmp_path: Path, sandbox
) -> None:
    upstream = sandbox()
    members = ids(4)
    segment = write_segment(tmp_path / "s.csv", members)
    journal = tmp_path / "out" / "codes.journal.sqlite"
    held_when_next_came: list[str | None] = []
    relay = forward()

    def check_previous_then_forward(exchange: Exchange) -> None:
        index = members.index(exchange.seen.json()["customer"]["source_id"])
        if index > 0:  # a second after the previous answer (60/min): its code is committed by now
            with read_only(journal) as db:
                row = db.execute("SELECT code FROM members WHERE identity = ?", (members[index - 1],)).fetchone()
            held_when_next_came.append(row[0])
        relay(exchange)

    with MisbehavingServer(upstream=upstream.url) as server:
        server.when(is_publication, check_previous_then_forward)
        result = run(make_config(tmp_path, server, segment, rate_limit="60/min", concurrency=1))

    assert result.exit_code == EXIT_OK, result.message
    held = held_codes(upstream)
    assert held_when_next_came == [next(iter(held[identity])) for identity in members[:-1]]


# ---------------------------------------------------------------------------------------------- kill -9 in the window
@pytest.mark.slow
def test_kill_9_between_answers_and_their_group_commit_then_the_rerun_gets_the_same_codes(
    tmp_path: Path, sandbox
) -> None:
    upstream = sandbox()
    members = ids(8)
    victim = members[4]
    segment = write_segment(tmp_path / "s.csv", members)
    journal = tmp_path / "out" / "codes.journal.sqlite"
    job: list[int] = []  # the pid of the run to kill
    relay = forward()
    relayed = threading.Event()

    def kill_then_forward(exchange: Exchange) -> None:
        # One call at a time: this request proves the answers before it reached the run (its slot was freed).
        # The run dies now, within milliseconds of them, long before their group commit (ANSWERS_INTERVAL).
        if job:
            os.kill(job.pop(), signal.SIGKILL)
        try:
            relay(exchange)  # Voucherify commits this one too; its answer goes nowhere
        finally:
            relayed.set()  # writing the answer to the dead run may fail; Voucherify has it by then

    with MisbehavingServer(upstream=upstream.url) as server:
        server.when(lambda seen: is_publication(seen) and victim in seen.text, kill_then_forward)
        args = job_args(tmp_path, server.url, segment, "60000/min", "--concurrency", "1")
        first = start_job(*args)
        job.append(first.pid)
        first.communicate(timeout=60)
        assert first.returncode == -signal.SIGKILL
        # the run is dead before the victim's request is relayed: wait for Voucherify to have it
        assert relayed.wait(timeout=30)

        answered = {identity for identity, codes in held_codes(upstream).items() if codes}
        assert answered == set(members[:5])  # the four answered and the victim's, committed by Voucherify
        with read_only(journal) as db:
            states = dict(db.execute("SELECT identity, state FROM members").fetchall())
            keys = dict(db.execute("SELECT identity, source_id FROM members").fetchall())
        # the window was hit: the answer just before the kill had arrived, and was not committed
        assert states[members[3]] == "sending"
        assert all(keys[identity] is not None for identity in answered)  # each call logged, with its key
        assert all(states[identity] == "pending" for identity in members[5:])

        rerun = start_job(*args)
        _out, err = rerun.communicate(timeout=60)
        assert rerun.returncode == EXIT_OK, err

    held = held_codes(upstream)
    assert set(held) == set(members) and all(len(codes) == 1 for codes in held.values())
    assert len(upstream.sandbox.publications) == len(members)  # nobody was published twice
    _, codes = read_codes(tmp_path / "out" / "codes.csv")
    assert {identity: {code} for identity, code in codes.items()} == held
    with Journal.open(journal, readonly=True) as state:
        assert dict(state.codes()) == codes


# ---------------------------------------------------------------------------------------------- a stop commits all
@pytest.mark.slow
def test_sigterm_commits_every_answer_waiting_and_the_summary_counts_what_the_journal_holds(
    tmp_path: Path, sandbox
) -> None:
    upstream = sandbox(latency_median=0.05)
    members = ids(3000)
    segment = write_segment(tmp_path / "s.csv", members)
    journal = tmp_path / "out" / "codes.journal.sqlite"
    process = start_job(*job_args(tmp_path, upstream.url, segment, "30000/min", "--concurrency", "32"))
    wait_for(lambda: codes_saved(journal) >= 200)
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=30)

    assert process.returncode == EXIT_STOPPED, err
    assert "exit 3: stopped by SIGTERM" in out
    summary = json.loads((tmp_path / "out" / "codes.summary.json").read_text())
    with Journal.open(journal, readonly=True) as state:
        counts = state.state_counts()
        saved = dict(state.codes())
    assert counts["sending"] == 0  # every answer that arrived was committed
    assert summary["members"]["published"] == counts["done"] == len(saved) < len(members)
    assert summary["members"]["without_code"] == counts["pending"]
    _, codes = read_codes(tmp_path / "out" / "codes.csv")
    assert codes == saved
    held = held_codes(upstream)
    assert all(held[identity] == {code} for identity, code in saved.items())
    assert len(upstream.sandbox.publications) == len(saved)  # no code published without being saved


# ---------------------------------------------------------------------------------------------- fewer commits
def counting_transactions(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Count the journal's committed transactions (the real ones run; this only counts them)."""
    count = [0]
    original: Callable[[Journal], AbstractContextManager[None]] = Journal._transaction

    @contextmanager
    def counted(self: Journal) -> Iterator[None]:
        with original(self):
            yield
        count[0] += 1

    monkeypatch.setattr(Journal, "_transaction", counted)
    return count


def test_calls_that_come_fast_share_commits(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    members = ids(600)
    segment = write_segment(tmp_path / "s.csv", members)
    config = make_config(tmp_path, None, segment, api_url=VIRTUAL_URL, rate_limit="60000/min", concurrency=16)
    transactions = counting_transactions(monkeypatch)
    virtual = run_virtual(config, SandboxConfig(seed=1, latency_median=0.02))

    result = virtual.result
    assert result.exit_code == EXIT_OK and result.stats.published == len(members)
    calls = result.summary["calls"]["total"]
    # three commits per publication before issue 13.3; now a share of one
    assert transactions[0] < 0.5 * calls
    with Journal.open(config.layout.journal, readonly=True) as state:
        assert state.state_counts()["done"] == len(members)

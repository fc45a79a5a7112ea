"""The journal's own work on a publication's path, in isolation (issue 13.3): commits, SQL statements (a trigger's
statements counted apiece), WAL pages and CPU time per publication.

    .venv/bin/python benchmarks/journal_writes.py                 # 20,000 publications per scenario
    .venv/bin/python benchmarks/journal_writes.py --members 5000

Scenarios, each on a fresh journal of ``--members`` members:

* **one by one** — what each publication cost before issue 13.3: the call logged and its member marked
  ``sending`` (a commit), its outcome (a commit), its code (a commit);
* **grouped** — what a run does now: the calls that become ready together logged in one commit (``--group``
  of them), their answers (outcome and code) committed together, ``--answers`` at a time;
* **a run's recorder** — the same through :class:`~distributor.run.recording.Recorder`, ``--workers`` tasks
  each logging a call, awaiting its commit, then recording its answer (the HTTP exchange left out): the grouping
  as a run meets it, and its own cost;
* each again **without the kept-count triggers** (schema 7), to tell their share.

Statements are those the journal issues (``executemany`` counted once per row); ``trig`` counts the trigger steps
they set off (each trigger fired, and each statement it runs).

CPU time is ``time.process_time()`` of the writes alone, without the statement tracing (a second pass counts).
"""

from __future__ import annotations

import argparse
import sqlite3
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from distributor.journal import Journal

Scenario = Callable[[Journal, int, list[int]], None]


def one_by_one(journal: Journal, run_id: int, members: list[int]) -> None:
    for member_id in members:
        call_id = journal.log_call(run_id, "publish", member_id, source_id=f"key-{member_id}")
        journal.record_call_outcome(call_id, outcome="ok", status=200, request_id=None)
        journal.complete(member_id, run_id, code=f"CODE-{member_id}", publication_id=f"pub_{member_id}")


def grouped(group: int, answers: int) -> Scenario:
    def scenario(journal: Journal, run_id: int, members: list[int]) -> None:
        from distributor.journal.batch import Batch, CallOutcome, NewCall, SavedCode

        waiting = Batch()
        for start in range(0, len(members), group):
            chunk = members[start : start + group]
            now = time.time()
            ids = journal.write_batch(
                Batch(calls=[NewCall(run_id, "publish", member_id, now, f"key-{member_id}") for member_id in chunk])
            )
            for call_id, member_id in zip(ids, chunk, strict=True):
                waiting.outcomes.append(CallOutcome(call_id, "ok", 200, None))
                waiting.codes.append(SavedCode(member_id, run_id, f"CODE-{member_id}", f"pub_{member_id}", None))
                if waiting.answers >= answers:
                    journal.write_batch(waiting)
                    waiting = Batch()
        journal.write_batch(waiting)

    return scenario


def through_the_recorder(workers: int) -> Scenario:
    """What a run does, its group commits included: ``workers`` tasks, each logging a call (awaiting its commit),
    then — the HTTP exchange left out — recording its outcome and saving its code."""

    def scenario(journal: Journal, run_id: int, members: list[int]) -> None:
        import anyio
        import anyio.lowlevel

        from distributor.journal.batch import CallOutcome, NewCall, SavedCode
        from distributor.run.recording import Recorder
        from distributor.run.stats import RunStats
        from distributor.run.stopping import Stopping

        async def main() -> None:
            recorder = Recorder(journal, RunStats(budget_per_second=1e6), Stopping())
            queue = iter(members)

            async def worker() -> None:
                for member_id in queue:
                    call = NewCall(run_id, "publish", member_id, time.time(), f"key-{member_id}")
                    call_id = await recorder.log_call(call)
                    await anyio.lowlevel.checkpoint()  # the exchange
                    recorder.record_outcome(CallOutcome(call_id, "ok", 200, None))
                    recorder.save_code(SavedCode(member_id, run_id, f"CODE-{member_id}", f"pub_{member_id}"))

            async with anyio.create_task_group() as group:
                group.start_soon(recorder.settle_regularly)
                async with anyio.create_task_group() as work:
                    for _ in range(workers):
                        work.start_soon(worker)
                recorder.settle()
                group.cancel_scope.cancel()

        anyio.run(main, backend="asyncio")

    return scenario


def fresh_journal(folder: Path, members: int, *, triggers: bool) -> tuple[Journal, int, list[int]]:
    journal = Journal.open(folder / "bench.journal.sqlite")
    run_id = journal.start_run("bench")
    for start in range(0, members, 10_000):
        journal.load(run_id, [(seq, seq, f"customer-{seq:08d}") for seq in range(start, min(members, start + 10_000))])
    if not triggers:
        for (name,) in journal._db.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'").fetchall():
            journal._db.execute(f"DROP TRIGGER {name}")
    ids = [row[0] for row in journal._db.execute("SELECT id FROM members ORDER BY id")]
    journal._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    journal._db.execute("PRAGMA wal_autocheckpoint = 0")  # the WAL's growth is what the writes cost
    return journal, run_id, ids


def measure(scenario: Scenario, members: int, *, triggers: bool) -> dict[str, float]:
    figures: dict[str, float] = {}
    for traced in (False, True):
        with tempfile.TemporaryDirectory(prefix="journal-writes-") as folder:
            journal, run_id, ids = fresh_journal(Path(folder), members, triggers=triggers)
            statements: list[str] = []
            if traced:
                journal._db.set_trace_callback(statements.append)
            cpu, wall = time.process_time(), time.perf_counter()
            scenario(journal, run_id, ids)
            cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
            journal._db.set_trace_callback(None)
            page = journal._db.execute("PRAGMA page_size").fetchone()[0]
            wal = Path(str(journal.path) + "-wal").stat().st_size
            journal.close()
        if traced:
            figures["commits"] = sum(text == "COMMIT" for text in statements) / members
            # the trace repeats a statement's text for each trigger it fires and each of the trigger's steps
            issued = [text for previous, text in zip(["", *statements[:-1]], statements, strict=True) if text != previous]
            figures["statements"] = sum(text not in ("COMMIT", "BEGIN IMMEDIATE") for text in issued) / members
            figures["trigger_steps"] = (len(statements) - len(issued)) / members
            figures["wal_pages"] = wal / (page + 24) / members
        else:
            figures["cpu_us"] = 1e6 * cpu / members
            figures["wall_us"] = 1e6 * wall / members
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--members", type=int, default=20_000)
    parser.add_argument("--group", type=int, default=8, help="calls logged per commit (grouped)")
    parser.add_argument("--answers", type=int, default=256, help="answers committed together (grouped)")
    parser.add_argument("--workers", type=int, default=32, help="calls in flight (the recorder)")
    options = parser.parse_args()
    scenarios: dict[str, Scenario] = {"one by one": one_by_one}
    if hasattr(Journal, "write_batch"):
        scenarios[f"grouped ({options.group} calls, {options.answers} answers)"] = grouped(
            options.group, options.answers
        )
        scenarios["grouped (1 call, 256 answers)"] = grouped(1, 256)
        scenarios[f"a run's recorder, {options.workers} in flight"] = through_the_recorder(options.workers)
    print(f"{options.members:,} publications per scenario, sqlite {sqlite3.sqlite_version}")
    print(f"{'scenario':<40} {'triggers':>8} {'commits':>8} {'stmts':>6} {'trig':>5} {'WAL pg':>7} {'CPU µs':>7} {'wall µs':>8}")
    for name, scenario in scenarios.items():
        for triggers in (True, False):
            got = measure(scenario, options.members, triggers=triggers)
            print(
                f"{name:<40} {'yes' if triggers else 'no':>8} {got['commits']:8.3f} {got['statements']:6.2f} {got['trigger_steps']:5.2f} "
                f"{got['wal_pages']:7.3f} {got['cpu_us']:7.1f} {got['wall_us']:8.1f}"
            )


if __name__ == "__main__":
    main()

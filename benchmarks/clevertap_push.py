"""How soon a published code reaches CleverTap, and how many records the push sends per member.

    .venv/bin/python benchmarks/clevertap_push.py            # 3,000 members per scenario (about 2 minutes)
    .venv/bin/python benchmarks/clevertap_push.py --quick    # 600 members

A real ``run --clevertap`` against the loopback stand-ins (Voucherify and CleverTap on one server, in a thread of
this process).  For each member: the seconds from the moment its code was saved in the journal (Voucherify's
answer) to the moment the CleverTap stand-in applied the record holding it.  Scenarios:

* **clean** — no faults; CleverTap latency 80 ms.
* **faults** — CleverTap answers 5 % of uploads 503, loses 5 % of answers after applying them, refuses 2 % of
  records with a transient error, and caps concurrency at 3 (the job asks for 5: 429s); batches of 20 records.
"""

from __future__ import annotations

import argparse
import csv
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from distributor.config import JobConfig
from distributor.engine import run_distribution
from distributor.sandbox import (
    DEMO_APP_ID,
    DEMO_APP_TOKEN,
    SandboxConfig,
    SandboxServer,
)
from distributor.sandbox.clevertap import (
    DEMO_ACCOUNT_ID,
    DEMO_PASSCODE,
    CleverTapConfig,
    CleverTapWorld,
)
from distributor.units import Rate

ENV = {
    "VOUCHERIFY_APP_ID": DEMO_APP_ID,
    "VOUCHERIFY_APP_TOKEN": DEMO_APP_TOKEN,
    "CLEVERTAP_ACCOUNT_ID": DEMO_ACCOUNT_ID,
    "CLEVERTAP_PASSCODE": DEMO_PASSCODE,
}
SCENARIOS: dict[str, dict[str, Any]] = {
    "clean": {"latency": 0.08},
    "faults": {
        "latency": 0.08,
        "error_rate": 0.05,
        "lost_answer_rate": 0.05,
        "record_failure_rate": 0.02,
        "max_concurrent": 3,
    },
}
#: The job's options per scenario: under faults, small batches, so that many uploads meet them.
JOB_OPTIONS: dict[str, dict[str, Any]] = {"clean": {}, "faults": {"clevertap_batch": 20}}


def segment(folder: Path, size: int) -> Path:
    path = folder / "segment.csv"
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["identity", "Email"])
        writer.writerows([f"customer-{i:08d}", f"c{i}@example.com"] for i in range(size))
    return path


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def scenario(name: str, members: int, rate: str) -> dict[str, Any]:
    folder = Path(tempfile.mkdtemp(prefix="bench-clevertap-"))
    world = CleverTapWorld(CleverTapConfig(seed=11, **SCENARIOS[name]))
    with SandboxServer(
        SandboxConfig(rate_limit=Rate.parse(rate), latency_median=0.05, seed=11), clevertap=world
    ) as server:
        config = JobConfig.load(
            None,
            {
                "segment": segment(folder, members),
                "campaign": "reactivation-20",
                "api_url": server.url,
                "rate_limit": rate,
                "output": folder / "codes.csv",
                "clevertap": server.url,
                **JOB_OPTIONS[name],
            },
            ENV,
        )
        started = time.perf_counter()
        result = run_distribution(config)
        elapsed = time.perf_counter() - started
    with sqlite3.connect(folder / "codes.journal.sqlite") as db:
        saved = dict(db.execute("SELECT identity, updated_at FROM members WHERE state = 'done'").fetchall())
    first_write: dict[str, float] = {}
    for write in world.writes:
        first_write.setdefault(write.key[1], write.at)
    delays = [first_write[identity] - at for identity, at in saved.items() if identity in first_write]
    pushed = result.summary["clevertap"]
    return {
        "scenario": name,
        "members": members,
        "exit": result.exit_code,
        "elapsed": elapsed,
        "held": len(world.profiles),
        "median": statistics.median(delays),
        "p99": percentile(delays, 0.99),
        "max": max(delays),
        "records_per_member": len(world.writes) / max(1, len(world.profiles)),
        "sent_per_member": pushed["this_run"]["records_sent"] / max(1, pushed["pushed"]),
        "uploads": pushed["this_run"]["requests"],
        "retries": pushed["this_run"]["retries"],
        "rate_limited": pushed["this_run"]["rate_limited"],
        "max_in_flight": world.max_in_flight,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="600 members per scenario instead of 3,000")
    parser.add_argument("--rate", default="6000/min", help="Voucherify budget (default 6000/min)")
    options = parser.parse_args()
    members = 600 if options.quick else 3000
    print(
        f"{'scenario':8} {'members':>7} {'exit':>4} {'run s':>6} {'held':>5} {'median s':>8} {'p99 s':>6} "
        f"{'max s':>6} {'applied/member':>14} {'sent/member':>11} {'uploads':>7} {'retries':>7} {'429':>4} {'in flight':>9}"
    )
    for name in SCENARIOS:
        r = scenario(name, members, options.rate)
        print(
            f"{r['scenario']:8} {r['members']:>7} {r['exit']:>4} {r['elapsed']:>6.1f} {r['held']:>5} "
            f"{r['median']:>8.2f} {r['p99']:>6.2f} {r['max']:>6.2f} {r['records_per_member']:>14.3f} "
            f"{r['sent_per_member']:>11.3f} {r['uploads']:>7} {r['retries']:>7} {r['rate_limited']:>4} {r['max_in_flight']:>9}"
        )


if __name__ == "__main__":
    main()

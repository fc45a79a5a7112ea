"""How fast, and in how much memory, a huge segment export is read and loaded into the journal, how fast a rerun
given the same export gets going, and how fast ``status`` answers on the journal that makes.

Generates a synthetic CleverTap profile export (gzip CSV, the Export-center columns) in a temporary folder —
never inside the repository — then measures, each in a fresh subprocess so that its peak RSS is its own:

* ``read``   — ``open_segment(...).batches(size)`` alone, for a few batch sizes: rows/s and peak RSS;
* ``floor``  — the floor of issue 13: a streaming reader (``gzip`` + ``csv.reader``, first column) and
  ``executemany`` into a narrow table with a UNIQUE identity, one transaction per batch, on the same file;
* ``load``   — what a run does before its first call, through the project's own code: ``load_segment`` (reading,
  validation, ``Journal.load``, the skipped rows, the fingerprint) then a run's counts
  (``state_counts``, ``held_before``): rows/s, peak RSS, journal size and bytes per member;
* ``resume`` — a second run given the same export, on that journal: ``load_segment`` recognises it and takes the
  loaded segment over, then the same counts: seconds to the point the first call would be sent;
* ``status`` — ``distributor status``'s ``read_status`` on that journal.

Usage::

    .venv/bin/python benchmarks/segment_read.py                       # 10,000,000 rows (several minutes)
    .venv/bin/python benchmarks/segment_read.py --rows 1000000        # a quicker look
    .venv/bin/python benchmarks/segment_read.py --file /tmp/x.csv.gz  # reuse an export made earlier (--keep)

Figures are printed as a table; nothing is written beside the repository.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import io
import json
import random
import resource
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

#: The Export-center profile export's leading columns (../shared/reference/clevertap.md), then a few properties.
COLUMNS = [
    "identity", "all_identities", "clevertapId", "clevertapIds", "device", "subscriptionGroups",
    "MSG-email", "MSG-push", "Email", "Phone", "Name", "Last Visit",
]
#: Publishing rate of an Organization plan, to compare loading time with publishing time.
PUBLISH_PER_MINUTE = 2000


# ====================================================================== the synthetic export
def generate(path: Path, rows: int, seed: int = 7) -> None:
    """A gzip CSV export of ``rows`` profiles: ~1 % repeated identities, ~0.5 % anonymous (empty identity),
    a few placeholders and too-long values, leading zeros and ``+`` phone numbers, quoted JSON lists."""
    rng = random.Random(seed)
    first_names = ["Vera", "Sven", "Zoë", "Wim", "Ana", "Jörg", "Li", "Omar", "Sara", "Ines"]
    last_names = ["Silva", "Rossi", "Novák", "de Vries", "O'Brien", "Müller", "Chen", "Haddad"]
    with gzip.open(path, "wt", encoding="utf-8", newline="", compresslevel=1) as handle:
        writer = csv.writer(handle, lineterminator="\r\n")
        writer.writerow(COLUMNS)
        for n in range(rows):
            roll = rng.random()
            if roll < 0.01 and n:
                identity = f"cust-{rng.randrange(n):09d}"  # a repeat of an earlier member
            elif roll < 0.015:
                identity = ""  # an anonymous profile
            elif roll < 0.016:
                identity = rng.choice(["null", "NA", "undefined", "-1", "x" * 1100])
            elif roll < 0.05:
                identity = f"+49151{n:08d}"
            elif roll < 0.08:
                identity = f"{n:012d}"
            else:
                identity = f"cust-{n:09d}"
            email = f"user{n}@example.com"
            name = f"{rng.choice(first_names)} {rng.choice(last_names)}"
            writer.writerow([
                identity,
                json.dumps([identity, email]) if identity else "[]",
                f"__{n:032x}",
                json.dumps([f"__{n:032x}"]),
                rng.choice(["Android", "iOS", "Web"]),
                "[]",
                "true",
                rng.choice(["true", "false"]),
                email,
                f"+4915{rng.randrange(10**9):09d}",
                name,
                f"2026-10-{rng.randrange(1, 29):02d}",
            ])


# ====================================================================== measurements (each in its own process)
def cpu_seconds() -> float:
    """CPU time this process has used so far (user + system, all threads): differences of it measure the work
    alone, without the interpreter's start and the imports."""
    return time.process_time()


def peak_rss_mib() -> float:
    """This process's peak resident set size, in MiB (ru_maxrss is KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def measure_read(path: Path, size: int) -> dict[str, float]:
    from distributor.segment import open_segment

    started, cpu = time.perf_counter(), cpu_seconds()
    rows = 0
    for batch in open_segment(path).rows(size):
        rows += len(batch.identities)
    seconds = time.perf_counter() - started
    return {"rows": rows, "seconds": seconds, "rows_per_s": rows / seconds, "peak_rss_mib": peak_rss_mib(),
            "cpu_seconds": cpu_seconds() - cpu}


def measure_floor(path: Path, size: int, journal_path: Path) -> dict[str, float]:
    """A streaming reader plus ``executemany`` into a narrow table with a UNIQUE identity: what any loader of
    this file into SQLite costs at least."""
    db = sqlite3.connect(journal_path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("CREATE TABLE members (id INTEGER PRIMARY KEY, identity TEXT NOT NULL UNIQUE)")
    started, cpu = time.perf_counter(), cpu_seconds()
    rows = 0
    with gzip.open(path, "rb") as raw:
        reader = csv.reader(io.TextIOWrapper(raw, encoding="utf-8", newline=""))
        next(reader)
        batch: list[tuple[str]] = []
        for record in reader:
            rows += 1
            batch.append((record[0],))
            if len(batch) >= size:
                _floor_batch(db, batch)
                batch = []
        _floor_batch(db, batch)
    seconds, cpu = time.perf_counter() - started, cpu_seconds() - cpu
    members = db.execute("SELECT count(*) FROM members").fetchone()[0]
    db.close()
    return {"rows": rows, "seconds": seconds, "rows_per_s": rows / seconds, "members": members,
            "cpu_seconds": cpu, "peak_rss_mib": peak_rss_mib(), "journal_mib": _size_mib(journal_path)}


def _floor_batch(db: sqlite3.Connection, batch: list[tuple[str]]) -> None:
    db.execute("BEGIN")
    db.executemany("INSERT OR IGNORE INTO members (identity) VALUES (?)", batch)
    db.execute("COMMIT")


def measure_load(path: Path, size: int, journal_path: Path) -> dict[str, float]:
    """A run's load, through the project's code: ``load_segment`` then the counts a run asks for."""
    from distributor.journal import Journal
    from distributor.segment import open_segment
    from distributor.segment.loading import load_segment

    with Journal.open(journal_path) as journal:
        run_id = journal.start_run(str(path))
        started, cpu = time.perf_counter(), cpu_seconds()
        loaded = load_segment(journal, run_id, open_segment(path), batch_size=size)
        read = time.perf_counter() - started
        counts = journal.state_counts(run_id)
        held = journal.held_before(run_id)
        seconds, cpu = time.perf_counter() - started, cpu_seconds() - cpu
    assert loaded is not None
    size_mib = _size_mib(journal_path)
    return {
        "rows": loaded.rows, "seconds": seconds, "load_seconds": read, "counts_seconds": seconds - read,
        "rows_per_s": loaded.rows / seconds, "members": loaded.members, "pending": counts["pending"], "held": held,
        "duplicates": loaded.skipped["duplicate"], "peak_rss_mib": peak_rss_mib(), "journal_mib": size_mib,
        "cpu_seconds": cpu,
        "bytes_per_member": size_mib * 2**20 / max(1, loaded.members), "tables": _table_sizes(journal_path),
    }


def measure_resume(path: Path, size: int, journal_path: Path) -> dict[str, float]:
    """A second run given the same export: what it does before its first call, journal side."""
    from distributor.journal import Journal
    from distributor.segment import open_segment
    from distributor.segment.loading import load_segment

    started = time.perf_counter()
    with Journal.open(journal_path, lock=True) as journal:
        run_id = journal.start_run(str(path))
        loaded = load_segment(journal, run_id, open_segment(path), batch_size=size)
        counts = journal.state_counts(run_id)
        journal.held_before(run_id)
        journal.work(run_id, after_seq=0, limit=256)  # the first batch of work
        seconds = time.perf_counter() - started
        taken_over = journal.runs()[-1].segment_run is not None
    assert loaded is not None
    return {"seconds": seconds, "members": loaded.members, "pending": counts["pending"], "taken_over": taken_over,
            "peak_rss_mib": peak_rss_mib()}


def measure_status(journal_path: Path) -> dict[str, float]:
    from distributor.status import read_status

    started = time.perf_counter()
    status = read_status(journal_path)
    return {"seconds": time.perf_counter() - started, "members": sum(status.members.values())}


def _table_sizes(journal_path: Path) -> dict[str, float]:
    """MiB per table and index (SQLite's dbstat, when compiled in)."""
    db = sqlite3.connect(journal_path)
    try:
        rows = db.execute("SELECT name, sum(pgsize) FROM dbstat GROUP BY name ORDER BY 2 DESC").fetchall()
    except sqlite3.OperationalError:
        return {}
    finally:
        db.close()
    return {name: size / 2**20 for name, size in rows if size > 2**20}


def _size_mib(path: Path) -> float:
    files = [path, path.with_name(path.name + "-wal")]
    return sum(f.stat().st_size for f in files if f.exists()) / 2**20


# ====================================================================== the driver
def child(argv: list[str]) -> None:
    kind, path, size = argv[0], Path(argv[1]), int(argv[2])
    if kind == "read":
        result = measure_read(path, size)
    elif kind == "status":
        result = measure_status(Path(argv[3]))
    else:
        measure = {"floor": measure_floor, "load": measure_load, "resume": measure_resume}[kind]
        result = measure(path, size, Path(argv[3]))
    print(json.dumps(result))


def run_child(*args: str) -> dict:
    done = subprocess.run(
        [sys.executable, __file__, "--child", *args], check=True, capture_output=True, text=True
    )
    return json.loads(done.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=10_000_000, help="rows of the synthetic export")
    parser.add_argument("--file", type=Path, help="an export made earlier (skips generating)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder and say where")
    parser.add_argument("--read-sizes", default="20000", help="batch sizes to read with (comma-separated)")
    parser.add_argument("--load-size", type=int, default=20_000, help="batch size of the load (a run's)")
    parser.add_argument("--only", default="read,floor,load,resume,status", help="which measurements")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="segment-bench-"))
    try:
        path = args.file
        if path is None:
            path = work / "profiles-export.csv.gz"
            started = time.perf_counter()
            generate(path, args.rows)
            print(f"generated {args.rows:,} rows in {time.perf_counter() - started:.1f}s: "
                  f"{path} ({path.stat().st_size / 2**20:.0f} MiB gzip)", flush=True)
        only = set(args.only.split(","))
        size = str(args.load_size)
        for batch in [int(s) for s in args.read_sizes.split(",")] if "read" in only else []:
            r = run_child("read", str(path), str(batch))
            print(f"read    batch {batch:>7,}: {r['rows']:,} rows in {r['seconds']:.1f}s = {r['rows_per_s']:,.0f} rows/s, "
                  f"CPU {r['cpu_seconds']:.1f}s, peak RSS {r['peak_rss_mib']:.0f} MiB", flush=True)
        floor = None
        if "floor" in only:
            floor = run_child("floor", str(path), size, str(work / "floor.sqlite"))
            print(f"floor   batch {args.load_size:>7,}: {floor['rows']:,} rows in {floor['seconds']:.1f}s = "
                  f"{floor['rows_per_s']:,.0f} rows/s, CPU {floor['cpu_seconds']:.1f}s, {floor['members']:,} distinct, peak RSS "
                  f"{floor['peak_rss_mib']:.0f} MiB, table {floor['journal_mib']:.0f} MiB", flush=True)
        journal = work / "journal.sqlite"
        if "load" in only:
            r = run_child("load", str(path), size, str(journal))
            ratio = (f" = {r['seconds'] / floor['seconds']:.2f}x the floor, CPU {r['cpu_seconds'] / floor['cpu_seconds']:.2f}x"
                     if floor else "")
            print(f"load    batch {args.load_size:>7,}: {r['rows']:,} rows in {r['seconds']:.1f}s{ratio} "
                  f"({r['rows_per_s']:,.0f} rows/s, CPU {r['cpu_seconds']:.1f}s; counts after it {r['counts_seconds']:.3f}s), "
                  f"{r['members']:,} members, {r['duplicates']:,} duplicates, peak RSS {r['peak_rss_mib']:.0f} MiB, "
                  f"journal {r['journal_mib']:.0f} MiB = {r['bytes_per_member']:.0f} bytes/member", flush=True)
            print("        journal by table/index (MiB): "
                  + ", ".join(f"{name} {mib:.0f}" for name, mib in r["tables"].items()), flush=True)
            hours = r["members"] / PUBLISH_PER_MINUTE / 60
            print(f"        publishing {r['members']:,} members at {PUBLISH_PER_MINUTE:,}/min takes {hours:.1f} h; "
                  f"loading first delays the first call by {r['seconds']:.0f}s "
                  f"({100 * r['seconds'] / (hours * 3600):.2f} % of the run)", flush=True)
        if "resume" in only and journal.exists():
            r = run_child("resume", str(path), size, str(journal))
            print(f"resume  same export: first call after {r['seconds']:.2f}s "
                  f"({'taken over' if r['taken_over'] else 'READ AGAIN'}; {r['pending']:,} to publish), "
                  f"peak RSS {r['peak_rss_mib']:.0f} MiB", flush=True)
        if "status" in only and journal.exists():
            r = run_child("status", str(path), size, str(journal))
            print(f"status  on {r['members']:,} members: {r['seconds']:.3f}s", flush=True)
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2:])
    else:
        main()

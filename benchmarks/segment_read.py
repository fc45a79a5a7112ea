"""How fast, and in how much memory, a huge segment export is read and loaded into the journal.

Generates a synthetic CleverTap profile export (gzip CSV, the Export-center columns) in a temporary folder —
never inside the repository — then measures, each in a fresh subprocess so that its peak RSS is its own:

* ``read``   — ``open_segment(...).batches(size)`` alone, for a few batch sizes: rows/s and peak RSS;
* ``load``   — what ``Distribution._load`` does: validation + ``Journal.load`` (dedup through the journal's UNIQUE
  column) + ``Journal.record_skipped``: rows/s, peak RSS, journal size;
* ``bulk``   — a prototype of a faster ``Journal.load`` (one look-up of the batch's known identities, then one
  ``executemany`` upsert; see :func:`bulk_load`), on the same rows, to compare.

Usage::

    .venv/bin/python benchmarks/segment_read.py                       # 10,000,000 rows (several minutes)
    .venv/bin/python benchmarks/segment_read.py --rows 200000         # a quick look
    .venv/bin/python benchmarks/segment_read.py --file /tmp/x.csv.gz  # reuse an export made earlier (--keep)

Figures are printed as a table; nothing is written beside the repository.
"""

from __future__ import annotations

import argparse
import csv
import gzip
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
def peak_rss_mib() -> float:
    """This process's peak resident set size, in MiB (ru_maxrss is KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def measure_read(path: Path, size: int) -> dict[str, float]:
    from distributor.segment import open_segment

    started = time.perf_counter()
    rows = 0
    for batch in open_segment(path).batches(size):
        rows += len(batch)
    seconds = time.perf_counter() - started
    return {"rows": rows, "seconds": seconds, "rows_per_s": rows / seconds, "peak_rss_mib": peak_rss_mib()}


def _validated_batches(path: Path, size: int):
    """``(rows, valid, skipped)`` per batch, exactly as a run builds them before ``Journal.load``."""
    from distributor.segment import open_segment
    from distributor.segment.loading import validated_batches

    return validated_batches(open_segment(path), size)


def open_journal(journal_path: Path, cache_mib: int):
    """The journal as ``Journal.open`` makes it; ``cache_mib`` > 0 sets SQLite's page cache (default: 2 MiB)."""
    from distributor.journal import Journal

    journal = Journal.open(journal_path)
    if cache_mib:
        journal._db.execute(f"PRAGMA cache_size = -{cache_mib * 1024}")
    return journal


def measure_load(path: Path, size: int, journal_path: Path, cache_mib: int) -> dict[str, float]:
    """What a run does before its first call: validation, ``Journal.load``, the skipped-rows report."""
    return _measure(path, size, journal_path, cache_mib, lambda journal, run_id, valid: journal.load(run_id, valid).duplicates)


def measure_bulk(path: Path, size: int, journal_path: Path, cache_mib: int) -> dict[str, float]:
    """The proposed ``Journal.load``: same schema, same results, two statements per batch instead of per row."""
    # the prototype works on the journal's own connection and schema
    return _measure(path, size, journal_path, cache_mib, lambda journal, run_id, valid: bulk_load(journal._db, run_id, valid)[1])


def _measure(path: Path, size: int, journal_path: Path, cache_mib: int, load) -> dict[str, float]:
    """Load ``path`` with ``load(journal, run_id, valid) -> duplicates``, timing the loader apart from the rest."""
    from distributor.segment import identities

    journal = open_journal(journal_path, cache_mib)
    run_id = journal.start_run(str(path))
    rows = duplicates = 0
    in_load = 0.0
    started = time.perf_counter()
    for count, valid, skipped in _validated_batches(path, size):
        rows += count
        before = time.perf_counter()
        found = load(journal, run_id, valid)
        in_load += time.perf_counter() - before
        duplicates += len(found)
        skipped += [(r, v, identities.DUPLICATE, f"first at row {f}") for r, v, f in found]
        journal.record_skipped(run_id, skipped)
    seconds = time.perf_counter() - started
    members = sum(journal.state_counts(run_id).values())
    journal.close()
    return {
        "rows": rows, "seconds": seconds, "rows_per_s": rows / seconds, "journal_load_seconds": in_load,
        "members": members, "duplicates": duplicates, "peak_rss_mib": peak_rss_mib(),
        "journal_mib": _size_mib(journal_path),
    }


def bulk_load(db: sqlite3.Connection, run_id: int, rows: list[tuple[int, int, str]]) -> tuple[int, list[tuple[int, str, int]]]:
    """One batch, with ``Journal.load``'s results: ``(added, duplicates as (row, identity, first_row))``.

    Two statements per batch instead of one or two per row: one look-up of the batch's identities that are already
    members (the batch passed as one JSON array; CROSS JOIN makes SQLite walk the array and probe the UNIQUE
    index, not the other way round), then one ``executemany`` upsert of each identity's first row.  A duplicate is
    a row whose identity was seen earlier in this run: in an earlier batch (the look-up says so) or earlier in
    this batch (a dict says so).
    """
    now = time.time()
    db.execute("BEGIN IMMEDIATE")
    known = {
        identity: (seen_run, seen_row)
        for identity, seen_run, seen_row in db.execute(
            """SELECT m.identity, m.seen_run, m.seen_row
               FROM json_each(?) AS j CROSS JOIN members AS m ON m.identity = j.value""",
            (json.dumps([identity for _, _, identity in rows]),),
        )
    }
    added = 0
    first_rows: list[tuple[str, int, int, int, int, float]] = []
    duplicates: list[tuple[int, str, int]] = []
    for seq, row, identity in rows:
        seen_run, seen_row = known.get(identity, (None, 0))
        if seen_run == run_id:
            duplicates.append((row, identity, seen_row))
            continue
        added += seen_run is None
        known[identity] = (run_id, row)
        first_rows.append((identity, run_id, run_id, seq, row, now))
    db.executemany(
        """INSERT INTO members (identity, first_run, seen_run, seen_seq, seen_row, updated_at) VALUES (?, ?, ?, ?, ?, ?)
           ON CONFLICT (identity) DO UPDATE
           SET seen_run = excluded.seen_run, seen_seq = excluded.seen_seq, seen_row = excluded.seen_row
           WHERE members.seen_run <> excluded.seen_run""",
        first_rows,
    )
    db.execute("COMMIT")
    return added, duplicates


def _size_mib(path: Path) -> float:
    files = [path, path.with_name(path.name + "-wal")]
    return sum(f.stat().st_size for f in files if f.exists()) / 2**20


# ====================================================================== the driver
def child(argv: list[str]) -> None:
    kind, path, size = argv[0], Path(argv[1]), int(argv[2])
    if kind == "read":
        result = measure_read(path, size)
    else:
        journal, cache_mib = Path(argv[3]), int(argv[4])
        result = (measure_load if kind == "load" else measure_bulk)(path, size, journal, cache_mib)
    print(json.dumps(result))


def run_child(*args: str) -> dict[str, float]:
    done = subprocess.run(
        [sys.executable, __file__, "--child", *args], check=True, capture_output=True, text=True
    )
    return json.loads(done.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=10_000_000, help="rows of the synthetic export")
    parser.add_argument("--file", type=Path, help="an export made earlier (skips generating)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder and say where")
    parser.add_argument("--read-sizes", default="5000,20000,100000", help="batch sizes to read with")
    parser.add_argument("--load-size", type=int, default=20_000, help="batch size of the load (the engine's)")
    parser.add_argument("--only", default="read,load,bulk", help="which measurements: read, load, bulk")
    parser.add_argument("--cache-mib", type=int, default=0, help="SQLite page cache of the journal while loading")
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
        for size in [int(s) for s in args.read_sizes.split(",")] if "read" in only else []:
            r = run_child("read", str(path), str(size))
            print(f"read   batch {size:>7,}: {r['rows']:,} rows in {r['seconds']:.1f}s = {r['rows_per_s']:,.0f} rows/s, "
                  f"peak RSS {r['peak_rss_mib']:.0f} MiB", flush=True)
        for kind in [k for k in ("load", "bulk") if k in only]:
            journal = work / f"{kind}.journal.sqlite"
            r = run_child(kind, str(path), str(args.load_size), str(journal), str(args.cache_mib))
            label = ("load  " if kind == "load" else "bulk* ") + (f"cache {args.cache_mib} MiB" if args.cache_mib else "")
            print(f"{label} batch {args.load_size:>7,}: {r['rows']:,} rows in {r['seconds']:.1f}s = "
                  f"{r['rows_per_s']:,.0f} rows/s (Journal.load {r['journal_load_seconds']:.1f}s), "
                  f"{r['members']:,} members, {r['duplicates']:,} duplicates, peak RSS {r['peak_rss_mib']:.0f} MiB, "
                  f"journal {r['journal_mib']:.0f} MiB", flush=True)
            if kind == "load":
                hours = r["members"] / PUBLISH_PER_MINUTE / 60
                print(f"       publishing {r['members']:,} members at {PUBLISH_PER_MINUTE:,}/min takes {hours:.1f} h; "
                      f"loading first delays the first call by {r['seconds']:.0f}s "
                      f"({100 * r['seconds'] / (hours * 3600):.2f} % of the run)", flush=True)
        print("* bulk: the proposed set-based Journal.load (see bulk_load)")
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

"""The options every command that works on a distribution shares, and how a command that only reads or rewrites
a distribution's files finds them."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from ..config import DEFAULT_API_URL, DEFAULT_PROPERTY
from ..errors import EXIT_UNUSABLE_INPUT
from ..files import DistributionFiles, find_files
from .edge import Failure


def job_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """The options shared by every command that works on a distribution (run, plan, status, export)."""
    options = [
        click.argument("job_file", nargs=-1, type=click.Path(path_type=Path, dir_okay=False), callback=_one_job_file),
        click.option(
            "--segment",
            multiple=True,
            type=click.Path(path_type=Path),
            callback=lambda _ctx, _param, value: value or None,
            help="Segment export: CSV, CSV.gz, JSON lines or Parquet. Repeat it, or give a folder or a quoted glob "
            "('exports/part-*.csv.gz'), to read several parts as one segment.",
        ),
        click.option(
            "--id-column", help="Column holding the identity (default: recognise identity, Identity, objectId…)."
        ),
        click.option("--campaign", help="Voucherify campaign: its name or camp_… id."),
        click.option(
            "--distribution",
            help="Name of this distribution (default: the campaign's id). A new name may give customers new codes.",
        ),
        click.option(
            "--api-url", help=f"Voucherify API host (default {DEFAULT_API_URL}); 'sandbox' runs the embedded stand-in."
        ),
        click.option(
            "--rate-limit", help="Budget this job may spend: N/s, N/min or N/h (e.g. 80/min on a 100/min plan)."
        ),
        click.option("--headroom", type=float, help="Fraction of --rate-limit left unused for the shop, e.g. 0.2."),
        click.option(
            "--output",
            type=click.Path(path_type=Path, dir_okay=False),
            help="CleverTap CSV to write (header identity,<property>).",
        ),
        click.option(
            "--property", "property_name", help=f"Profile property that receives the code (default {DEFAULT_PROPERTY})."
        ),
        click.option(
            "--state",
            type=click.Path(path_type=Path, dir_okay=False),
            help="Journal file (default: <output>.journal.sqlite beside the output).",
        ),
        click.option(
            "--concurrency", type=int, help="Calls in flight at once (default: adapted to the measured latency)."
        ),
        click.option("--timeout", help="Deadline of one whole call, answer included (default 30s)."),
        click.option(
            "--max-pause", help="Longest pause a 429 may ask for; longer stops the run, exit 3 (default 15min)."
        ),
        click.option(
            "--max-attempts",
            type=int,
            help="Attempts per member in one run on transient failures (default 8); a member is failed only by a "
            "refusal.",
        ),
        click.option(
            "--limit",
            type=click.IntRange(min=1),
            help="Publish to at most N members (in segment order), then stop: a first test batch.",
        ),
        click.option(
            "-v",
            "--verbose",
            is_flag=True,
            default=None,
            help="Log every retry, look-up, pause and throttle change, with its reason.",
        ),
        click.option(
            "--log-format",
            type=click.Choice(["text", "json"]),
            help="text (default), or json: one JSON object per line for log shippers.",
        ),
        click.option(
            "--progress-interval", help="Time between progress lines when stderr is not a terminal (default 30s)."
        ),
        click.option(
            "--deliver-to",
            type=click.Choice(["members", "leavers"]),
            help="Who gets a code: every member of the segment (default), or each member who left it since the "
            "previous complete run.",
        ),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def clevertap_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """h7-clevertap: where and how the codes are pushed to CleverTap (run and push)."""
    options = [
        click.option(
            "--clevertap",
            help="Push the codes to CleverTap: a region (eu1, in1, sg1, us1, aps3, mec1), a URL, or 'sandbox'. "
            "Keys: CLEVERTAP_ACCOUNT_ID, CLEVERTAP_PASSCODE.",
        ),
        click.option(
            "--clevertap-batch", type=int, help="Records per CleverTap upload (default 1000, CleverTap's limit)."
        ),
        click.option(
            "--clevertap-concurrency",
            type=int,
            help="CleverTap uploads in flight at once (default 5; CleverTap allows 15).",
        ),
        click.option(
            "--clevertap-query",
            type=click.Path(path_type=Path, dir_okay=False),
            help="Instead of --segment: read the members from CleverTap's profiles API with this query (JSON; "
            '"yesterday", "7 days ago" allowed).',
        ),
        click.option(
            "--expiry-property",
            help="Profile property that also receives each code's expiration date (a CSV column and a CleverTap date).",
        ),
    ]
    for option in reversed(options):
        command = option(command)
    return command


#: Names and first bytes of segment exports: given where a job file is expected, they get a hint, not a TOML error.
_DATA_SUFFIXES = {".csv", ".tsv", ".tab", ".gz", ".jsonl", ".ndjson", ".json", ".parquet"}
_DATA_MAGIC = (b"\x1f\x8b", b"PAR1", b"{")


def _one_job_file(_ctx: click.Context, _param: click.Parameter, given: tuple[Path, ...]) -> Path | None:
    """JOB_FILE: at most one, and a TOML file.  A segment export given in its place (``run segment.csv``, or a
    shell glob expanded into several arguments) is refused with a hint to use --segment."""
    exports = [path for path in given if _looks_like_export(path)]
    if exports:
        parts = " ".join(f"--segment {path}" for path in exports[:3]) + (" …" if len(exports) > 3 else "")
        several = " (quote a glob, 'part-*.csv.gz', so that distributor expands it)" if len(exports) > 1 else ""
        what = "looks like a segment export" if len(exports) == 1 else "look like segment exports"
        shown = ", ".join(str(path) for path in exports[:3]) + (
            f" and {len(exports) - 3} more" if len(exports) > 3 else ""
        )
        raise Failure(f"{shown} {what}, not a job file: use {parts}{several}", EXIT_UNUSABLE_INPUT)
    if len(given) > 1:
        raise Failure(
            f"one job file at most, but {len(given)} were given: {', '.join(str(p) for p in given)}",
            EXIT_UNUSABLE_INPUT,
        )
    return given[0] if given else None


def _looks_like_export(path: Path) -> bool:
    """A data file by its name (``.csv``, ``.gz``, ``.parquet``, …) or by its first bytes (gzip, Parquet, JSON)."""
    if path.suffix.lower() == ".toml":
        return False
    if path.suffix.lower() in _DATA_SUFFIXES:
        return True
    try:
        with path.open("rb") as handle:
            head = handle.read(4).lstrip()
    except OSError:
        return False
    return head.startswith(_DATA_MAGIC)


# ---------------------------------------------------------------------- reading a distribution's files
def files_of(job_file: Path | None, options: dict[str, Any]) -> DistributionFiles:
    """The files (and CleverTap settings) of the distribution a command that publishes nothing works on."""
    return find_files(job_file, options, os.environ)

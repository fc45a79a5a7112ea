"""The commands that read a distribution's journal and never publish: ``status``, ``export`` (also ``--calls``)
and ``verify`` (which calls Voucherify only to look publications up).  They are registered on :func:`main`."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from ..errors import EXIT_STOPPED, EXIT_UNUSABLE_INPUT, DistributorError
from ..status import DEFAULT_ERRORS
from .commands import main
from .edge import Failure, load_config, setup_logging
from .options import clevertap_options, files_of, job_options
from .render import delta_line, render_audit_cost, render_status


@main.command()
@job_options
@click.option(
    "--errors",
    "error_count",
    type=click.IntRange(min=0),
    default=DEFAULT_ERRORS,
    show_default=True,
    help="How many of the latest member errors to show.",
)
@click.option(
    "--window", default="5min", show_default=True, help="Period the recent rate and the ETA are measured over."
)
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON (for monitoring).")
def status(job_file: Path | None, error_count: int, window: str, as_json: bool, **options: Any) -> None:
    """Show where a distribution stands, from its journal, without disturbing a run in progress.

    Give the JOB_FILE (or the same options as run), or just --state (the journal) or --output.  No keys are needed
    and no API call is made; the journal is only read, never locked.  Shows whether a run is in progress, the
    members by state, the recent rate and the ETA, the latest errors (with Voucherify's request_id) and the
    earlier runs.

    \b
    Exit codes: 0 the status was shown; 2 there is no journal to read.

    \b
    Examples:
        distributor status jobs/reactivation.toml
        distributor status --state out/reactivation.journal.sqlite --errors 20
        watch -n 30 distributor status jobs/reactivation.toml
    """
    from ..files import find_journal
    from ..status import read_status
    from ..units import parse_duration

    try:
        seconds = parse_duration(window)
    except DistributorError as error:
        raise Failure(f"--window: {error}", error.exit_code) from None
    journal_path = find_journal(job_file, options)
    report = read_status(journal_path, errors=error_count, window=max(1.0, seconds))
    click.echo(json.dumps(report.to_dict(), indent=2, default=str) if as_json else render_status(report))


@main.command()
@job_options
@click.option("--json", "as_json", is_flag=True, help="Print the files written and their counts as JSON.")
@click.option(
    "--calls",
    "calls_only",
    is_flag=True,
    help="Write only <name>.calls.csv: every API call the journal logged (when, member, endpoint, outcome, HTTP "
    "status, request id).",
)
def export(job_file: Path | None, as_json: bool, calls_only: bool, **options: Any) -> None:
    """Rewrite the CleverTap CSV and the reports from the journal, at any time — also while a run is going.

    Give the JOB_FILE (or the same options as run), or --state / --output.  No keys are needed and no API call is
    made.  Writes, beside the output: the codes CSV and its manifest, the latest run's delta
    <name>.new.<date>.run<N>.csv (the codes that run published: the daily upload), <name>.left.csv (members who
    left the segment; they keep their codes), the errors and the skipped-rows reports.  The key column and the
    property are the ones the runs used (the journal remembers them); --property renames the column.  Every file
    is written to a temporary name and renamed, so CleverTap never picks up half a file, and a run's own final
    write waits for an export going on (and vice versa), so the files always hold the newest snapshot.

    \b
    Exit codes: 0 the files were written; 2 there is no journal to export, or no --output to write to.

    \b
    Examples:
        distributor export jobs/reactivation.toml
        distributor export --state out/reactivation.journal.sqlite --output /tmp/snapshot.csv
        distributor export jobs/reactivation.toml --calls
    """
    if calls_only:
        _export_calls(job_file, options, as_json)
        return
    from ..export import export_journal
    from ..journal import Journal
    from ..status import no_journal, run_in_progress

    config = files_of(job_file, options)
    if not config.layout.journal.exists():
        raise Failure(no_journal(config.layout.journal), EXIT_UNUSABLE_INPUT)
    try:
        with Journal.open(config.layout.journal, readonly=True) as journal:
            holder = run_in_progress(journal)
            exported = export_journal(config, journal, property_name=options.get("property_name"))
    except OSError as error:
        raise Failure(
            f"cannot write the files beside {config.output}: {error.strerror or error}", EXIT_UNUSABLE_INPUT
        ) from None
    if as_json:
        click.echo(
            json.dumps(
                {
                    "journal": str(config.layout.journal),
                    "run_id": exported.run_id,
                    "run_in_progress": holder,
                    "codes": exported.codes,
                    "new_codes": exported.new_codes,
                    "delta_run": exported.delta_run,
                    "delta_since_run": exported.delta_since_run,
                    "left": exported.left,
                    "errors": exported.errors,
                    "skipped": exported.skipped,
                    "files": {name: str(path) for name, path in exported.files.items()},
                },
                indent=2,
            )
        )
        return
    files = exported.files
    click.echo(
        f"exported from {config.layout.journal} (run {exported.run_id}"
        + (f", in progress: {holder})" if holder else ")")
    )
    click.echo(f"  codes     {files['codes']} ({exported.codes} codes) + {files['manifest'].name}")
    click.echo(delta_line(exported))
    click.echo(f"  left      {files['left']} ({exported.left} members no longer in the segment)")
    click.echo(f"  errors    {files['errors']} ({exported.errors} members)")
    click.echo(f"  skipped   {files['skipped']} ({exported.skipped} rows)")
    if holder:
        click.echo("a run is in progress: these files are a snapshot; the run rewrites them when it ends")


def _export_calls(job_file: Path | None, options: dict[str, Any], as_json: bool) -> None:
    """``export --calls``: the journal's record of every API call, as CSV."""
    from ..export import export_calls
    from ..journal import Journal
    from ..status import no_journal

    config = files_of(job_file, options)
    if not config.layout.journal.exists():
        raise Failure(no_journal(config.layout.journal), EXIT_UNUSABLE_INPUT)
    try:
        with Journal.open(config.layout.journal, readonly=True) as journal:
            path, count = export_calls(config, journal)
    except OSError as error:
        raise Failure(f"cannot write {config.output.parent}: {error.strerror or error}", EXIT_UNUSABLE_INPUT) from None
    if as_json:
        click.echo(json.dumps({"journal": str(config.layout.journal), "calls": count, "file": str(path)}, indent=2))
    else:
        click.echo(f"exported {count:,} calls from {config.layout.journal} to {path}")


@main.command(name="verify")
@job_options
@clevertap_options
@click.option(
    "--sample",
    type=click.IntRange(min=1),
    default=None,
    help="Check a random sample of N published members (default 100).",
)
@click.option("--all", "check_all", is_flag=True, help="Check every member the journal says was published.")
@click.option(
    "--seed",
    type=int,
    help="Seed of the random sample (default: a new one, printed, so the same sample can be checked again).",
)
@click.option(
    "--report",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Mismatch report to write (default <output>.verify.csv).",
)
def verify_command(
    job_file: Path | None, sample: int | None, check_all: bool, seed: int | None, report: Path | None, **options: Any
) -> None:
    """Check the journal against Voucherify: does each member hold the code the journal says?

    Takes the same JOB_FILE and options as run (the segment is not read).  For each member checked it looks the
    publication up by its key (GET /v1/publications?source_id=…) and compares code, customer and campaign.  The
    calls go through the same throttle and budget as a run; what a full audit would cost is shown first.  The
    journal is only read, never changed.  With --clevertap it also reads each matching member's CleverTap profile,
    which must hold the same code in the run's property (keys: CLEVERTAP_ACCOUNT_ID, CLEVERTAP_PASSCODE).

    \b
    Exit codes: 0 every member checked matches; 1 some do not (see the report: identity, journal code,
    Voucherify code, why); 2 unusable configuration or no journal; 3 stopped (bad keys, Voucherify unreachable,
    a run in progress, or members left unchecked).

    \b
    Examples:
        distributor verify jobs/reactivation.toml                 # 100 random members
        distributor verify jobs/reactivation.toml --sample 500 --seed 7
        distributor verify jobs/reactivation.toml --all --rate-limit 20/min
        distributor verify jobs/reactivation.toml --clevertap eu1  # and the codes in the CleverTap profiles
    """
    import random

    from ..verify import DEFAULT_SAMPLE, verify

    if check_all and sample is not None:
        raise Failure("give --sample N or --all, not both", EXIT_UNUSABLE_INPUT)
    config = load_config(job_file, options, reads_segment=False)
    setup_logging(config)
    seed = random.SystemRandom().randrange(1, 1_000_000) if seed is None and not check_all else seed
    try:
        audit = verify(
            config,
            sample=None if check_all else (sample or DEFAULT_SAMPLE),
            seed=seed,
            report=report,
            on_cost=lambda cost: click.echo(render_audit_cost(cost)),
        )
    except KeyboardInterrupt:
        raise Failure("verify interrupted; the journal was not changed", EXIT_STOPPED) from None
    click.echo(
        f"checked {audit.matched + len(audit.mismatches):,}: {audit.matched:,} match, "
        f"{len(audit.mismatches):,} mismatch, {len(audit.unchecked):,} unchecked; {audit.calls:,} calls"
    )
    click.echo(f"  report        {audit.report}")
    click.echo(f"exit {audit.exit_code}: {audit.message}")
    sys.exit(audit.exit_code)

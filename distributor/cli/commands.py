"""The ``distributor`` commands: each builds its configuration, calls one function of the core, and renders the
outcome (:mod:`.render`).  A :class:`~distributor.errors.DistributorError` leaves through :mod:`.edge`."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from .._version import __version__
from ..errors import EXIT_STOPPED, EXIT_UNUSABLE_INPUT, DistributorError
from ..status import DEFAULT_ERRORS
from .edge import DistributorGroup, Failure, load_config, setup_logging
from .options import (
    clevertap_options,
    files_config,
    job_options,
    journal_path_of,
    with_unused_segment,
)
from .render import delta_line, render_audit_cost, render_plan, render_status, render_summary


@click.group(cls=DistributorGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(__version__, prog_name="distributor")
def main() -> None:
    """Hand out one Voucherify code to every member of a CleverTap segment, exactly once, within the API budget.

    \b
    Example (the embedded sandbox; no keys, no network):
        distributor run jobs/demo.toml
    """


@main.command()
@job_options
@clevertap_options
@click.option("--retry-failed", is_flag=True, default=None, help="Try again the members that failed in earlier runs.")
def run(job_file: Path | None, **options: Any) -> None:
    """Publish one code per segment member and write the CleverTap CSV.

    Options come from JOB_FILE (TOML) and the flags; a flag beats the file.  Keys come from the environment:
    VOUCHERIFY_APP_ID and VOUCHERIFY_APP_TOKEN.  Running the same command again resumes; nobody gets two codes.

    \b
    Exit codes: 0 every valid member holds a code; 1 some members failed (see the errors CSV);
    2 unusable input, configuration or paths (nothing was called); 3 stopped early: interrupted, --limit
    reached, storage failure, doomed call (the summary's next_step says what to do).

    \b
    Examples:
        distributor run jobs/demo.toml
        distributor run jobs/reactivation.toml --segment exports/lapsed-2026-11-26.csv.gz
        distributor run --segment lapsed.csv --campaign reactivation-20 --rate-limit 80/min \\
            --output out/reactivation.csv --property reactivation_code
    """
    from ..progress import LogProgress, TerminalProgress
    from ..run import run_distribution

    config = load_config(job_file, options)
    if sys.stderr.isatty() and config.log_format == "text":
        reporter: Any = TerminalProgress(sys.stderr)
        setup_logging(config, reporter.console)
    else:
        reporter = LogProgress(config.progress_interval)
        setup_logging(config)
    try:
        if config.clevertap_query is not None:  # h7-clevertap: the segment from CleverTap's profiles API
            from ..audience import fetch_audience

            config = fetch_audience(config)
        result = run_distribution(config, reporter=reporter, handle_signals=True)
    except KeyboardInterrupt:
        raise Failure("interrupted before publishing started; nothing was published", EXIT_STOPPED) from None
    assert result.report is not None  # a Distribution always gives its typed summary
    click.echo(render_summary(result.report))
    sys.exit(result.exit_code)


@main.command()
@job_options
@clevertap_options
@click.option("--all", "push_all", is_flag=True, help="Push every code again, also those CleverTap already confirmed.")
def push(job_file: Path | None, push_all: bool, **options: Any) -> None:
    """Push the journal's codes to CleverTap profiles, without a single Voucherify call.

    Takes the same JOB_FILE and options as run, or just --state/--output and --clevertap.  Pushes the codes
    CleverTap does not hold yet (a run made without --clevertap, or after a push failure); --all pushes every
    code again.  Keys: CLEVERTAP_ACCOUNT_ID and CLEVERTAP_PASSCODE.

    \b
    Exit codes: 0 CleverTap holds every code; 1 some codes were refused (see <name>.push-errors.csv);
    2 unusable configuration or no journal; 3 stopped early (bad credentials or region, CleverTap unreachable).

    \b
    Examples:
        distributor push jobs/reactivation.toml --clevertap eu1
        distributor push --state out/reactivation.journal.sqlite --clevertap in1
    """
    from ..push import run_push

    config = files_config(job_file, options, need_output=True)
    setup_logging(config)
    outcome = run_push(config, resend_all=push_all, property_name=options.get("property_name"))
    exit_code, _, message = outcome.verdict(0, "completed", "CleverTap holds every code")
    counts = outcome.counts
    click.echo(f"pushed to CleverTap from {config.layout.journal}")
    click.echo(
        f"  this run   {outcome.stats.pushed} pushed, {outcome.stats.failed} refused, "
        f"{outcome.stats.requests} uploads, {outcome.stats.retries} retries"
    )
    click.echo(f"  holds      {counts['pushed']} codes; {counts['failed']} refused; {counts['waiting']} not yet pushed")
    if counts["failed"]:
        click.echo(f"  errors     {outcome.errors_file}")
    click.echo(f"exit {exit_code}: {message}")
    sys.exit(exit_code)


@main.command()
@click.option("--port", type=int, default=8080, show_default=True, help="Port on 127.0.0.1 (0: any free port).")
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option("--rate-limit", help="The plan it enforces: N/s, N/min or N/h (default: unlimited).")
@click.option("--latency", default="0ms", show_default=True, help="Median latency of each answer.")
@click.option("--latency-p99", help="99th-percentile latency (a lognormal tail).")
@click.option("--error-rate", type=float, default=0.0, show_default=True, help="Share of publications answered 5xx.")
@click.option(
    "--lost-answer-rate", type=float, default=0.0, show_default=True, help="Share committed, then the connection drops."
)
@click.option("--strict-source-id", is_flag=True, help="Answer 400 duplicate_source_id to any reused source_id.")
@click.option("--background-rate", help="Calls of other clients (the shop) on the same quota, e.g. 20/min.")
@click.option("--background-since", help="How long the shop had been calling when the sandbox started, e.g. 1min.")
@click.option("--cycle-quota", type=int, help="API calls allowed in the billing cycle.")
@click.option(
    "--campaigns",
    type=click.Path(path_type=Path, dir_okay=False),
    help="TOML file of [[campaign]] tables (default: the demo campaigns).",
)
@click.option("--seed", type=int, help="Seed for latencies, faults and codes (reproducible runs).")
@click.option(
    "--arrivals",
    type=click.Path(path_type=Path, dir_okay=False),
    help="On exit, write every request received as JSON lines here.",
)
@click.option(
    "--clevertap-latency", default="0ms", show_default=True, help="CleverTap stand-in: mean latency of each answer."
)
@click.option(
    "--clevertap-error-rate",
    type=float,
    default=0.0,
    show_default=True,
    help="CleverTap stand-in: share of uploads answered 503.",
)
@click.option(
    "--clevertap-lost-answer-rate",
    type=float,
    default=0.0,
    show_default=True,
    help="CleverTap stand-in: share applied, then the connection drops.",
)
@click.option(
    "--clevertap-record-failure-rate",
    type=float,
    default=0.0,
    show_default=True,
    help="CleverTap stand-in: share of records refused with a transient error.",
)
def sandbox(port: int, host: str, arrivals: Path | None, **options: Any) -> None:
    """Serve the Voucherify stand-in on loopback, for rehearsals and tests.

    It accepts the keys VOUCHERIFY_APP_ID=sandbox-app-id VOUCHERIFY_APP_TOKEN=sandbox-app-token and runs
    until Ctrl-C.

    \b
    Example (two terminals):
        distributor sandbox --port 8080 --rate-limit 100/min --latency 150ms --latency-p99 1s --error-rate 0.03
        VOUCHERIFY_APP_ID=sandbox-app-id VOUCHERIFY_APP_TOKEN=sandbox-app-token \\
            distributor run jobs/demo.toml --api-url http://127.0.0.1:8080 --rate-limit 100/min \\
            --output demo-output/loopback/reactivation-codes.csv

    A journal belongs to one host: a rehearsal on loopback needs its own --output (or --state).
    """
    from ..sandbox import serve
    from ..sandbox.clevertap import CleverTapConfig, CleverTapWorld
    from ..sandbox.embedded import sandbox_config

    clevertap_options = {
        key.removeprefix("clevertap_"): options.pop(key) for key in list(options) if key.startswith("clevertap_")
    }
    config = sandbox_config(options, where="the options")
    clevertap = CleverTapWorld(CleverTapConfig.parse({**clevertap_options, "seed": options.get("seed")}))

    def ready(server: Any) -> None:
        limit = options.get("rate_limit") or "unlimited"
        click.echo(f"Voucherify sandbox on {server.url} (rate limit {limit}); Ctrl-C to stop", err=True)
        click.echo(f"  VOUCHERIFY_APP_ID={config.app_id} VOUCHERIFY_APP_TOKEN={config.app_token}", err=True)
        click.echo(
            f"  CleverTap stand-in on the same port (--clevertap {server.url}): "
            f"CLEVERTAP_ACCOUNT_ID={clevertap.config.account_id} CLEVERTAP_PASSCODE={clevertap.config.passcode}",
            err=True,
        )

    try:
        state = serve(config, host, port, on_ready=ready, arrivals_path=arrivals, clevertap=clevertap)
    except OSError as error:
        raise Failure(f"cannot listen on {host}:{port}: {error.strerror or error}", 2) from None
    stats = state.stats()
    click.echo(
        f"served {stats['arrivals']} requests: {stats['ok']} ok, {stats['rate_limited']} rate-limited, "
        f"{stats['fault_5xx']} 5xx, {stats['lost_answer']} answers lost; {stats['publications']} publications",
        err=True,
    )
    click.echo(
        f"CleverTap stand-in: {clevertap.counts['uploads']} uploads, {clevertap.counts['records']} records; "
        f"holds {len(clevertap.profiles)} profiles",
        err=True,
    )


@main.command()
@job_options
@click.option(
    "--retry-failed",
    is_flag=True,
    default=None,
    help="Plan as run --retry-failed would: include the members that failed before.",
)
@click.option(
    "--cycle-quota",
    type=click.IntRange(min=1),
    help="API calls your Voucherify plan allows per billing cycle (Business 100,000; Organization 300,000).",
)
@click.option(
    "--cycle-used",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Calls already spent in the current billing cycle (the shop's included).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the plan as JSON.")
def plan(job_file: Path | None, cycle_quota: int | None, cycle_used: int, as_json: bool, **options: Any) -> None:
    """Check a distribution before spending quota: what run would do, what it would cost, what would stop it.

    Takes the same JOB_FILE and options as run.  Reads the segment and the journal (never writes either) and makes
    one API call, GET /v1/campaigns/{id}, which also proves the keys and the region: the campaign must exist, be
    active and unexpired, and a STATIC campaign must hold enough codes for the members still to serve.

    \b
    Exit codes: 0 run would work (warnings are printed); 2 unusable input or configuration, as run;
    3 run would certainly fail (Voucherify unreachable, bad keys, unknown, inactive or expired campaign, STATIC
    pool too small, quota already spent, or a run of this distribution is in progress).

    \b
    Examples:
        distributor plan jobs/reactivation.toml --segment exports/lapsed-2026-11-26.csv.gz --cycle-quota 100000
        distributor plan jobs/referral.toml --json
        distributor plan jobs/reactivation.toml && distributor run jobs/reactivation.toml
    """
    from ..planning import make_plan

    config = load_config(job_file, options)
    setup_logging(config)
    result = make_plan(config, cycle_quota=cycle_quota, cycle_used=cycle_used)
    click.echo(json.dumps(result.to_dict(), indent=2, default=str) if as_json else render_plan(result))
    if result.problems:
        click.echo(f"distributor: run would fail: {result.problems[0].message}", err=True)
    sys.exit(result.exit_code)


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
    from ..status import read_status
    from ..units import parse_duration

    try:
        seconds = parse_duration(window)
    except DistributorError as error:
        raise Failure(f"--window: {error}", error.exit_code) from None
    journal_path = journal_path_of(job_file, options)
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

    config = files_config(job_file, options, need_output=True)
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

    config = files_config(job_file, options, need_output=True)
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
    journal is only read, never changed.

    \b
    Exit codes: 0 every member checked matches; 1 some do not (see the report: identity, journal code,
    Voucherify code, why); 2 unusable configuration or no journal; 3 stopped (bad keys, Voucherify unreachable,
    a run in progress, or members left unchecked).

    \b
    Examples:
        distributor verify jobs/reactivation.toml                 # 100 random members
        distributor verify jobs/reactivation.toml --sample 500 --seed 7
        distributor verify jobs/reactivation.toml --all --rate-limit 20/min
    """
    import random

    from ..verify import DEFAULT_SAMPLE, verify

    if check_all and sample is not None:
        raise Failure("give --sample N or --all, not both", EXIT_UNUSABLE_INPUT)
    config = load_config(job_file, with_unused_segment(job_file, options))
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

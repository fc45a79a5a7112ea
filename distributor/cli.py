"""The ``distributor`` command: a thin click skin over the library.

Each command builds its configuration, calls one function of the core, and renders the outcome.  Foreseeable
problems arrive as :class:`distributor.errors.DistributorError` and leave as one line on stderr with the exit code
the README documents; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from ._version import __version__
from .config import DEFAULT_API_URL, DEFAULT_PROPERTY, JobConfig
from .errors import EXIT_STOPPED, EXIT_UNUSABLE_INPUT, DistributorError
from .status import DEFAULT_ERRORS
from .units import format_duration

if TYPE_CHECKING:
    from .export import Exported
    from .planning import Plan
    from .status import Status

log = logging.getLogger("distributor")


class Failure(click.ClickException):
    """A foreseeable problem, shown as ``distributor: <message>`` with its documented exit code."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code  # type: ignore[misc]  # click declares it per class; ours is per failure

    def show(self, file: Any = None) -> None:
        click.echo(f"distributor: {self.format_message()}", err=True)


def _job_options(command: Callable[..., Any]) -> Callable[..., Any]:
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
        click.option("--id-column", help="Column holding the identity (default: recognise identity, Identity, objectId…)."),
        click.option("--campaign", help="Voucherify campaign: its name or camp_… id."),
        click.option("--distribution", help="Name of this distribution (default: the campaign's id). A new name may give customers new codes."),
        click.option("--api-url", help=f"Voucherify API host (default {DEFAULT_API_URL}); 'sandbox' runs the embedded stand-in."),
        click.option("--rate-limit", help="Budget this job may spend: N/s, N/min or N/h (e.g. 80/min on a 100/min plan)."),
        click.option("--headroom", type=float, help="Fraction of --rate-limit left unused for the shop, e.g. 0.2."),
        click.option("--output", type=click.Path(path_type=Path, dir_okay=False), help="CleverTap CSV to write (header identity,<property>)."),
        click.option("--property", "property_name", help=f"Profile property that receives the code (default {DEFAULT_PROPERTY})."),
        click.option("--state", type=click.Path(path_type=Path, dir_okay=False), help="Journal file (default: <output>.journal.sqlite beside the output)."),
        click.option("--concurrency", type=int, help="Calls in flight at once (default: adapted to the measured latency)."),
        click.option("--timeout", help="Deadline of one whole call, answer included (default 30s)."),
        click.option("--max-pause", help="Longest pause a 429 may ask for; longer stops the run, exit 3 (default 15min)."),
        click.option("--max-attempts", type=int, help="Attempts per member in one run on transient failures (default 8); a member is failed only by a refusal."),
        click.option("--limit", type=click.IntRange(min=1), help="Publish to at most N members (in segment order), then stop: a first test batch."),
        click.option("-v", "--verbose", is_flag=True, default=None, help="Log every retry, look-up, pause and throttle change, with its reason."),
        click.option("--log-format", type=click.Choice(["text", "json"]), help="text (default), or json: one JSON object per line for log shippers."),
        click.option("--progress-interval", help="Time between progress lines when stderr is not a terminal (default 30s)."),
        click.option("--deliver-to", type=click.Choice(["members", "leavers"]), help="Who gets a code: every member of the segment (default), or each member who left it since the previous complete run."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _clevertap_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """h7-clevertap: where and how the codes are pushed to CleverTap (run and push)."""
    options = [
        click.option("--clevertap", help="Push the codes to CleverTap: a region (eu1, in1, sg1, us1, aps3, mec1), a URL, or 'sandbox'. Keys: CLEVERTAP_ACCOUNT_ID, CLEVERTAP_PASSCODE."),
        click.option("--clevertap-batch", type=int, help="Records per CleverTap upload (default 1000, CleverTap's limit)."),
        click.option("--clevertap-concurrency", type=int, help="CleverTap uploads in flight at once (default 5; CleverTap allows 15)."),
        click.option("--clevertap-query", type=click.Path(path_type=Path, dir_okay=False), help="Instead of --segment: read the members from CleverTap's profiles API with this query (JSON; \"yesterday\", \"7 days ago\" allowed)."),
        click.option("--expiry-property", help="Profile property that also receives each code's expiration date (a CSV column and a CleverTap date)."),
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
        shown = ", ".join(str(path) for path in exports[:3]) + (f" and {len(exports) - 3} more" if len(exports) > 3 else "")
        raise Failure(f"{shown} {what}, not a job file: use {parts}{several}", EXIT_UNUSABLE_INPUT)
    if len(given) > 1:
        raise Failure(
            f"one job file at most, but {len(given)} were given: {', '.join(str(p) for p in given)}", EXIT_UNUSABLE_INPUT
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


def _load_config(job_file: Path | None, options: dict[str, Any]) -> JobConfig:
    try:
        return JobConfig.load(job_file, options, os.environ)
    except DistributorError as error:
        raise Failure(str(error), error.exit_code) from None


def _setup_logging(config: JobConfig, console: Any = None) -> None:
    from .logs import setup_logging

    setup_logging(config.verbose, config.log_format, console)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(__version__, prog_name="distributor")
def main() -> None:
    """Hand out one Voucherify code to every member of a CleverTap segment, exactly once, within the API budget.

    \b
    Example (the embedded sandbox; no keys, no network):
        distributor run jobs/demo.toml
    """


@main.command()
@_job_options
@_clevertap_options
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
    from .engine import run_distribution
    from .progress import LogProgress, TerminalProgress

    config = _load_config(job_file, options)
    if sys.stderr.isatty() and config.log_format == "text":
        reporter: Any = TerminalProgress(sys.stderr)
        _setup_logging(config, reporter.console)
    else:
        reporter = LogProgress(config.progress_interval)
        _setup_logging(config)
    try:
        if config.clevertap_query is not None:  # h7-clevertap: the segment from CleverTap's profiles API
            from .clevertap.audience import fetch_audience

            config = fetch_audience(config)
        result = run_distribution(config, reporter=reporter, handle_signals=True)
    except DistributorError as error:
        raise Failure(str(error), error.exit_code) from None
    except KeyboardInterrupt:
        raise Failure("interrupted before publishing started; nothing was published", EXIT_STOPPED) from None
    click.echo(render_summary(result.summary))
    sys.exit(result.exit_code)


@main.command()
@_job_options
@_clevertap_options
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
    from .push import run_push

    config = _files_config(job_file, options, need_output=True)
    _setup_logging(config)
    try:
        outcome = run_push(config, resend_all=push_all, property_name=options.get("property_name"))
    except DistributorError as error:
        raise Failure(str(error), error.exit_code) from None
    exit_code, _, message = outcome.verdict(0, "completed", "CleverTap holds every code")
    counts = outcome.counts
    click.echo(f"pushed to CleverTap from {config.journal_path}")
    click.echo(f"  this run   {outcome.stats.pushed} pushed, {outcome.stats.failed} refused, "
               f"{outcome.stats.requests} uploads, {outcome.stats.retries} retries")
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
@click.option("--lost-answer-rate", type=float, default=0.0, show_default=True, help="Share committed, then the connection drops.")
@click.option("--strict-source-id", is_flag=True, help="Answer 400 duplicate_source_id to any reused source_id.")
@click.option("--background-rate", help="Calls of other clients (the shop) on the same quota, e.g. 20/min.")
@click.option("--background-since", help="How long the shop had been calling when the sandbox started, e.g. 1min.")
@click.option("--cycle-quota", type=int, help="API calls allowed in the billing cycle.")
@click.option("--campaigns", type=click.Path(path_type=Path, dir_okay=False), help="TOML file of [[campaign]] tables (default: the demo campaigns).")
@click.option("--seed", type=int, help="Seed for latencies, faults and codes (reproducible runs).")
@click.option("--arrivals", type=click.Path(path_type=Path, dir_okay=False), help="On exit, write every request received as JSON lines here.")
@click.option("--clevertap-latency", default="0ms", show_default=True, help="CleverTap stand-in: mean latency of each answer.")
@click.option("--clevertap-error-rate", type=float, default=0.0, show_default=True, help="CleverTap stand-in: share of uploads answered 503.")
@click.option("--clevertap-lost-answer-rate", type=float, default=0.0, show_default=True, help="CleverTap stand-in: share applied, then the connection drops.")
@click.option("--clevertap-record-failure-rate", type=float, default=0.0, show_default=True, help="CleverTap stand-in: share of records refused with a transient error.")
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
    from .sandbox import CleverTapConfig, CleverTapWorld, sandbox_config, serve

    clevertap_options = {key.removeprefix("clevertap_"): options.pop(key) for key in list(options) if key.startswith("clevertap_")}
    try:
        config = sandbox_config(options, where="the options")
        clevertap = CleverTapWorld(CleverTapConfig.parse({**clevertap_options, "seed": options.get("seed")}))
    except DistributorError as error:
        raise Failure(str(error), error.exit_code) from None

    def ready(server: Any) -> None:
        limit = options.get("rate_limit") or "unlimited"
        click.echo(f"Voucherify sandbox on {server.url} (rate limit {limit}); Ctrl-C to stop", err=True)
        click.echo(f"  VOUCHERIFY_APP_ID={config.app_id} VOUCHERIFY_APP_TOKEN={config.app_token}", err=True)
        click.echo(f"  CleverTap stand-in on the same port (--clevertap {server.url}): "
                   f"CLEVERTAP_ACCOUNT_ID={clevertap.config.account_id} CLEVERTAP_PASSCODE={clevertap.config.passcode}", err=True)

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
    click.echo(f"CleverTap stand-in: {clevertap.counts['uploads']} uploads, {clevertap.counts['records']} records; "
               f"holds {len(clevertap.profiles)} profiles", err=True)


@main.command()
@_job_options
@click.option("--retry-failed", is_flag=True, default=None, help="Plan as run --retry-failed would: include the members that failed before.")
@click.option("--cycle-quota", type=click.IntRange(min=1), help="API calls your Voucherify plan allows per billing cycle (Business 100,000; Organization 300,000).")
@click.option("--cycle-used", type=click.IntRange(min=0), default=0, show_default=True, help="Calls already spent in the current billing cycle (the shop's included).")
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
    from .planning import make_plan

    config = _load_config(job_file, options)
    _setup_logging(config)
    try:
        result = make_plan(config, cycle_quota=cycle_quota, cycle_used=cycle_used)
    except DistributorError as error:
        raise Failure(str(error), error.exit_code) from None
    click.echo(json.dumps(result.to_dict(), indent=2, default=str) if as_json else render_plan(result))
    if result.problems:
        click.echo(f"distributor: run would fail: {result.problems[0].message}", err=True)
    sys.exit(result.exit_code)


@main.command()
@_job_options
@click.option("--errors", "error_count", type=click.IntRange(min=0), default=DEFAULT_ERRORS, show_default=True, help="How many of the latest member errors to show.")
@click.option("--window", default="5min", show_default=True, help="Period the recent rate and the ETA are measured over.")
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
    from .status import read_status
    from .units import parse_duration

    try:
        seconds = parse_duration(window)
    except DistributorError as error:
        raise Failure(f"--window: {error}", error.exit_code) from None
    journal_path = _journal_path(job_file, options)
    try:
        report = read_status(journal_path, errors=error_count, window=max(1.0, seconds))
    except DistributorError as error:
        raise Failure(str(error), error.exit_code) from None
    click.echo(json.dumps(report.to_dict(), indent=2, default=str) if as_json else render_status(report))


@main.command()
@_job_options
@click.option("--json", "as_json", is_flag=True, help="Print the files written and their counts as JSON.")
@click.option("--calls", "calls_only", is_flag=True, help="Write only <name>.calls.csv: every API call the journal logged (when, member, endpoint, outcome, HTTP status, request id).")
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
    from .export import export_journal
    from .journal import Journal
    from .status import no_journal, run_in_progress

    config = _files_config(job_file, options, need_output=True)
    if not config.journal_path.exists():
        raise Failure(no_journal(config.journal_path), EXIT_UNUSABLE_INPUT)
    try:
        with Journal.open(config.journal_path, readonly=True) as journal:
            holder = run_in_progress(journal)
            exported = export_journal(config, journal, property_name=options.get("property_name"))
    except DistributorError as error:
        raise Failure(str(error), error.exit_code) from None
    except OSError as error:
        raise Failure(f"cannot write the files beside {config.output}: {error.strerror or error}", EXIT_UNUSABLE_INPUT) from None
    if as_json:
        click.echo(json.dumps({
            "journal": str(config.journal_path), "run_id": exported.run_id, "run_in_progress": holder,
            "codes": exported.codes, "new_codes": exported.new_codes, "delta_run": exported.delta_run,
            "delta_since_run": exported.delta_since_run, "left": exported.left,
            "errors": exported.errors, "skipped": exported.skipped,
            "files": {name: str(path) for name, path in exported.files.items()},
        }, indent=2))
        return
    files = exported.files
    click.echo(f"exported from {config.journal_path} (run {exported.run_id}"
               + (f", in progress: {holder})" if holder else ")"))
    click.echo(f"  codes     {files['codes']} ({exported.codes} codes) + {files['manifest'].name}")
    click.echo(_delta_line(exported))
    click.echo(f"  left      {files['left']} ({exported.left} members no longer in the segment)")
    click.echo(f"  errors    {files['errors']} ({exported.errors} members)")
    click.echo(f"  skipped   {files['skipped']} ({exported.skipped} rows)")
    if holder:
        click.echo("a run is in progress: these files are a snapshot; the run rewrites them when it ends")


def _export_calls(job_file: Path | None, options: dict[str, Any], as_json: bool) -> None:
    """``export --calls``: the journal's record of every API call, as CSV."""
    from .export import export_calls
    from .journal import Journal
    from .status import no_journal

    config = _files_config(job_file, options, need_output=True)
    if not config.journal_path.exists():
        raise Failure(no_journal(config.journal_path), EXIT_UNUSABLE_INPUT)
    try:
        with Journal.open(config.journal_path, readonly=True) as journal:
            path, count = export_calls(config, journal)
    except DistributorError as error:
        raise Failure(str(error), error.exit_code) from None
    except OSError as error:
        raise Failure(f"cannot write {config.output.parent}: {error.strerror or error}", EXIT_UNUSABLE_INPUT) from None
    if as_json:
        click.echo(json.dumps({"journal": str(config.journal_path), "calls": count, "file": str(path)}, indent=2))
    else:
        click.echo(f"exported {count:,} calls from {config.journal_path} to {path}")


@main.command(name="verify")
@_job_options
@click.option("--sample", type=click.IntRange(min=1), default=None, help="Check a random sample of N published members (default 100).")
@click.option("--all", "check_all", is_flag=True, help="Check every member the journal says was published.")
@click.option("--seed", type=int, help="Seed of the random sample (default: a new one, printed, so the same sample can be checked again).")
@click.option("--report", type=click.Path(path_type=Path, dir_okay=False), help="Mismatch report to write (default <output>.verify.csv).")
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

    from .verify import DEFAULT_SAMPLE, verify

    if check_all and sample is not None:
        raise Failure("give --sample N or --all, not both", EXIT_UNUSABLE_INPUT)
    config = _load_config(job_file, _with_unused_segment(job_file, options))
    _setup_logging(config)
    seed = random.SystemRandom().randrange(1, 1_000_000) if seed is None and not check_all else seed
    try:
        audit = verify(
            config, sample=None if check_all else (sample or DEFAULT_SAMPLE), seed=seed, report=report,
            on_cost=lambda cost: click.echo(render_audit_cost(cost)),
        )
    except DistributorError as error:
        raise Failure(str(error), error.exit_code) from None
    except KeyboardInterrupt:
        raise Failure("verify interrupted; the journal was not changed", EXIT_STOPPED) from None
    click.echo(f"checked {audit.matched + len(audit.mismatches):,}: {audit.matched:,} match, "
               f"{len(audit.mismatches):,} mismatch, {len(audit.unchecked):,} unchecked; {audit.calls:,} calls")
    click.echo(f"  report        {audit.report}")
    click.echo(f"exit {audit.exit_code}: {audit.message}")
    sys.exit(audit.exit_code)


def _with_unused_segment(job_file: Path | None, options: dict[str, Any]) -> dict[str, Any]:
    """verify reads no segment: a placeholder stands in when neither the flags nor the job file name one."""
    if options.get("segment") is None and "segment" not in _job_file_keys(job_file):
        return {**options, "segment": "unused.csv"}
    return options


def render_audit_cost(cost: Any) -> str:
    """verify's figures before the first call: the journal, what a full audit costs, what this check costs."""
    chosen = (f"a random sample of {cost.checked:,} (--seed {cost.seed} checks the same members)"
              if cost.sample is not None else f"all {cost.checked:,}")
    return "\n".join([
        f"verify distribution {cost.distribution} · campaign {cost.campaign} · journal {cost.journal}",
        (f"  journal       {cost.holding_code:,} members hold a code, {cost.sent_without_code:,} were sent a "
         "publication without one"),
        f"  full audit    {cost.full_audit_calls:,} calls, about {format_duration(cost.full_audit_seconds)} at {cost.budget}",
        f"  this check    {chosen}: {cost.checked:,} calls, about {format_duration(cost.seconds)}",
    ])
def _delta_line(exported: Exported) -> str:
    if "delta" not in exported.files:
        return f"  delta     none: run {exported.delta_run} published no code"
    return (f"  delta     {exported.files['delta']} ({exported.new_codes} codes published after run "
            f"{exported.delta_since_run}, through run {exported.delta_run})")


# ---------------------------------------------------------------------- reading a distribution's files
_LOCATING = ("output", "state", "campaign", "distribution")


def _journal_path(job_file: Path | None, options: dict[str, Any]) -> Path:
    """The journal of the distribution the options name: --state as given, else found like run finds it."""
    if options.get("state") is not None and job_file is None:
        return Path(options["state"])
    return _files_config(job_file, options, need_output=False).journal_path


def _files_config(job_file: Path | None, options: dict[str, Any], *, need_output: bool) -> JobConfig:
    """The configuration of a distribution whose files are only read or rewritten (status, export).

    These commands read no segment and call no API, so the segment, the rate and the keys may be missing: the
    options only have to say where the files are (a JOB_FILE, --output, --state, or the --campaign /
    --distribution the default output is named after).
    """
    given = {key: value for key, value in options.items() if value is not None}
    present = set(given) | _job_file_keys(job_file)
    if not present & set(_LOCATING) and job_file is None:
        raise Failure("which distribution? give its JOB_FILE, --output or --state", EXIT_UNUSABLE_INPUT)
    placeholders: dict[str, Any] = {}
    for key, value in (("segment", "unused.csv"), ("rate_limit", "1/s"), ("campaign", "unused")):
        if key == "segment" and "clevertap_query" in present:  # h7-clevertap: the audience stands for the segment
            continue
        if key not in present:
            placeholders[key] = value
    if "output" not in present and "campaign" not in present and "distribution" not in present:
        state = Path(given["state"]) if "state" in given else None
        if state is not None and state.name.endswith(".journal.sqlite"):
            placeholders["output"] = state.with_name(state.name.removesuffix(".journal.sqlite") + ".csv")
        elif need_output:
            raise Failure(f"give --output: the CSV to write (the journal {state} does not say)", EXIT_UNUSABLE_INPUT)
        else:
            placeholders["output"] = Path("unused.csv")
    # no API call is made: the embedded sandbox's "keys" stand in, so none are needed
    return _load_config(job_file, {**placeholders, **given, "api_url": "sandbox"})


def _job_file_keys(job_file: Path | None) -> set[str]:
    """The option names a job file sets (``set()`` when it cannot be read: loading it then says why)."""
    if job_file is None:
        return set()
    import tomllib

    try:
        raw = tomllib.loads(job_file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return set()
    names = {key.replace("-", "_") for key in raw}
    return {"property_name" if name == "property" else name for name in names}


# ---------------------------------------------------------------------- rendering
def render_plan(plan: Plan) -> str:
    """The plan as a short report: the segment, the journal, the campaign, the cost, then findings and verdict."""
    invalid = sum(plan.invalid.values())
    reasons = ", ".join(f"{count} {reason}" for reason, count in sorted(plan.invalid.items()))
    lines = [
        f"plan for distribution {plan.distribution} · campaign {plan.campaign}",
        f"  segment         {plan.segment_description}",
        f"  rows            {plan.rows:,}: {plan.members:,} members, {invalid:,} invalid"
        + (f" ({reasons})" if reasons else "") + f", {plan.duplicates:,} duplicates",
        f"  journal         {plan.journal}" + ("" if plan.journal_exists else " (none yet: the first run)"),
        f"  already served  {plan.already_served:,}",
        f"  failed before   {plan.failed_before:,}" + (" (retried: --retry-failed)" if plan.retry_failed and plan.failed_before else ""),
        f"  to serve        {plan.to_serve:,}  ({plan.new:,} new, {plan.unfinished:,} left unfinished by an earlier run"
        + (f", {plan.failed_before:,} failed before" if plan.retry_failed and plan.failed_before else "") + ")",
        f"  left segment    {plan.left_segment:,}",
    ]
    if plan.deliver_to == "leavers":
        baseline = f"run {plan.watch_baseline}'s segment" if plan.watch_baseline else "none yet (this run records it)"
        lines.append(f"  leavers         {plan.leaving:,} left the watch list ({baseline}), {plan.owed_before:,} "
                     "recorded earlier still without a code")
    campaign = plan.campaign_checked
    if campaign is not None:
        traits = [t for t in (campaign.campaign_type, campaign.type) if t]
        traits.append("active" if campaign.active is not False else "INACTIVE")
        if campaign.join_once:
            traits.append("join-once")
        if campaign.type == "STATIC" and campaign.vouchers_count is not None:
            traits.append(f"{campaign.vouchers_count:,} codes")
        traits.append(f"expires {campaign.expiration_date}" if campaign.expiration_date else "no expiry")
        lines.append(f"  campaign        {campaign.name} ({campaign.id}): {', '.join(traits)}; keys accepted")
    else:
        lines.append("  campaign        not checked")
    if plan.to_serve:
        share = f"{100 * plan.retry_share:.1f} % retries and look-ups" + (
            " as in this journal's history" if plan.retry_share_source == "journal" else " assumed")
        lines.append(f"  calls           about {plan.calls_expected:,} (at least {plan.calls_minimum:,}; {share})")
        finish = ""
        if plan.seconds_at_budget >= 3600:
            from datetime import datetime, timedelta, timezone

            end = datetime.now(timezone.utc) + timedelta(seconds=plan.seconds_at_budget)
            finish = f", until about {end:%Y-%m-%d %H:%M} UTC if started now"
        pace = f"{plan.budget} ({plan.rate_limit} less {100 * plan.headroom:g} % headroom)" if plan.headroom else plan.budget
        lines.append(f"  time            about {format_duration(plan.seconds_at_budget)} at {pace}{finish}")
        if plan.cycle_quota is not None:
            lines.append(f"  quota           {plan.calls_expected:,} of the {plan.cycle_left:,} calls left in the billing cycle")
    for finding in plan.problems + plan.warnings + plan.notes:
        lines.append(f"{finding.level}: {finding.message}")
    if plan.problems:
        lines.append(f"exit 3: run would fail: {plan.problems[0].message}")
    elif plan.to_serve:
        lines.append(f"exit 0: run would publish {plan.to_serve:,} codes in about {format_duration(plan.seconds_at_budget)}")
    elif plan.deliver_to == "leavers":
        lines.append("exit 0: run would publish nothing" + ("" if plan.watch_baseline else ": it records the baseline"))
    else:
        lines.append("exit 0: run would publish nothing: every valid member already holds a code")
    return "\n".join(lines)


def render_status(report: Status) -> str:
    """The status as a short report: the run, the members by state, the pace, the latest errors, earlier runs."""
    lines = [
        f"distribution {report.distribution or '-'} · campaign {report.campaign or '-'} · journal {report.journal}"
    ]
    run = report.run
    if run is None:
        lines.append("no run yet")
        return "\n".join(lines)
    if report.state == "running":
        lines.append(f"run {run.id}: in progress ({report.holder}); started {run.started_at}")
    elif report.state == "died":
        lines.append(
            f"run {run.id}: died: started {run.started_at} and never recorded its end (killed, crashed or rebooted); "
            "run the same command again to resume"
        )
    else:
        lines.append(f"run {run.id}: {report.state} {run.ended_at}: exit {run.exit_code} {run.reason or ''}".rstrip())
        if run.message:
            lines.append(f"  {run.message}")
    members = report.members
    total = sum(members.values())
    done_share = f" ({100 * members['done'] / total:.1f} %)" if total else ""
    lines += [
        f"  segment       {run.segment or '-'}: {total:,} members",
        f"  done          {members['done']:,}{done_share}",
        f"  in flight     {members['sending']:,}"
        + ("" if report.state == "running" or not members["sending"] else " (sent before the run ended: resent with the same source_id on resume)"),
        f"  pending       {members['pending']:,}",
        f"  failed        {members['failed']:,}",
        f"  left segment  {report.left_segment:,}",
    ]
    if report.leavers is not None:
        leavers = report.leavers
        lines.append(f"  leavers       {leavers['owed']:,} owed a code: {leavers['done']:,} done, "
                     f"{leavers['without_code']:,} without code, {leavers['failed']:,} failed; "
                     f"watching {leavers['watched']:,} members")
    if report.clevertap is not None:  # h7-clevertap
        pushes = report.clevertap
        lines.append(f"  clevertap     {pushes['pushed']:,} codes pushed, {pushes['failed']:,} refused, "
                     f"{pushes['waiting']:,} not yet pushed")
    calls = report.calls
    kinds = ", ".join(f"{count:,} {kind}" for kind, count in sorted(calls.items()))
    lines.append(f"  calls         {sum(calls.values()):,} this run" + (f": {kinds}" if kinds else "")
                 + (f"; last at {report.last_call_at}" if report.last_call_at else ""))
    span = format_duration(report.rate_span_seconds)
    if report.calls_per_minute is not None or report.codes_per_minute is not None:
        when = f"the last {span}" if report.state == "running" else f"the last {span} before the last call"
        lines.append(f"  rate          {report.calls_per_minute or 0:.1f} calls/min, {report.codes_per_minute or 0:.1f} codes/min over {when}")
    if report.state == "running":
        eta = format_duration(report.eta_seconds) if report.eta_seconds is not None else "unknown (no code saved lately)"
        lines.append(f"  ETA           {eta} for {report.remaining:,} members")
    elif report.remaining:
        lines.append(f"  remaining     {report.remaining:,} members without a code: run the same command again to resume")
    if report.errors:
        lines.append(f"latest errors ({len(report.errors)} of {report.failed_total:,} failed members)")
        for error in report.errors:
            status = " ".join(str(part) for part in (error.status, error.key) if part)
            request = f"; request {error.request_id}" if error.request_id else ""
            lines.append(f"  {error.identity} (row {error.row}): {status or 'no answer'}: {error.message or ''}"
                         f"{request}; {error.attempts} attempts; {error.at}")
    if report.previous_runs:
        lines.append("earlier runs")
        for earlier in report.previous_runs:
            end = earlier.ended_at or "never recorded its end"
            outcome = f"exit {earlier.exit_code} {earlier.reason or ''}".rstrip() if earlier.exit_code is not None else "died"
            lines.append(f"  run {earlier.id}  {earlier.started_at} → {end}  {outcome}")
    return "\n".join(lines)


def render_summary(summary: dict[str, Any]) -> str:
    """The short human summary printed at the end of a run."""
    members, calls, rate, skipped = summary["members"], summary["calls"], summary["rate"], summary["skipped"]
    reasons = ", ".join(f"{count} {reason}" for reason, count in sorted(skipped["by_reason"].items()))
    per_code = f"{calls['per_code']:.3f} per code" if calls.get("per_code") else "no code published"
    achieved = rate.get("achieved_per_minute")
    rate_line = (
        f"{achieved:.1f}/min of a {rate['budget']} budget ({100 * rate['utilisation']:.1f} %)"
        if achieved and rate.get("utilisation")
        else f"budget {rate['budget']}"
    )
    lines = [
        f"distribution {summary['distribution']} · campaign {summary['campaign']}",
        *_leavers_summary(summary.get("leavers")),
        f"  published     {members['published']}",
        f"  already held  {members['already_held']}",
        f"  failed        {members['failed']}",
        f"  skipped       {skipped['total']}" + (f"  ({reasons})" if reasons else ""),
        f"  elapsed       {format_duration(summary['elapsed_seconds'])}",
        f"  rate          {rate_line}",
        f"  calls         {calls['total']}: {per_code}, {calls['retries']} retries, "
        f"{calls['rate_limited_429']} × 429, {calls['by_kind'].get('lookup', 0)} look-ups",
        f"  output        {summary['files']['codes']} ({members['codes_in_output']} codes)"
        if "codes" in summary["files"] else "  output        none written: no code was ever published",
    ]
    if members["failed"]:
        lines.append(f"  errors        {summary['files']['errors']}")
    if skipped["total"]:
        unlisted = f" ({skipped['not_listed']:,} not listed)" if skipped.get("not_listed") else ""
        lines.append(f"  skipped rows  {summary['files']['skipped']}{unlisted}")
    update = summary.get("segment_update") or {}
    if update.get("left"):
        lines.append(f"  left segment  {update['left']} (not touched; see {summary['files'].get('left')})")
    lines.append(_upload_line(summary))
    pushed = summary.get("clevertap")  # h7-clevertap
    if pushed:
        lines.append(f"  clevertap     {pushed['pushed']} codes held, {pushed['failed']} refused, {pushed['waiting']} not yet pushed"
                     + (f" (see {pushed['errors_file']})" if pushed["failed"] else ""))
    if summary.get("resume_at"):
        lines.append(f"  resume after  {summary['resume_at']}")
    lines.append(f"exit {summary['exit_code']}: {summary['message']}")
    return "\n".join(lines)


def _leavers_summary(leavers: dict[str, Any] | None) -> list[str]:
    """deliver_to=leavers: the lines saying what was watched and who left."""
    if leavers is None:
        return []
    compared = leavers["compared_with_run"]
    return [
        f"  watched       {leavers['watched']} members"
        + (f"; {leavers['found_this_run']} left since run {compared}" if compared else " (the baseline)"),
        (f"  leavers       {leavers['owed_total']} owed a code: {leavers['served_total']} hold one, "
         f"{leavers['without_code']} without code, {leavers['failed']} failed"),
    ]
def _upload_line(summary: dict[str, Any]) -> str:
    """Which file to hand to CleverTap, with which manifest: this run's delta, which no later run rewrites."""
    upload = summary.get("upload") or {}
    pushed = summary.get("clevertap") or {}  # h7-clevertap: the run pushed the codes itself
    if pushed and not pushed.get("waiting") and not pushed.get("failed"):
        return "  upload        nothing: CleverTap holds every code (pushed by the run)"
    if not upload.get("codes"):
        return "  upload        nothing new (no code published since the last delta file)"
    return f"  upload        {upload['codes']} ({upload['count']} codes) with {upload['manifest']}"


if __name__ == "__main__":  # pragma: no cover
    main()

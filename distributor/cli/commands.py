"""The ``distributor`` commands: each builds its configuration, calls one function of the core, and renders the
outcome (:mod:`.render`).  A :class:`~distributor.errors.DistributorError` leaves through :mod:`.edge`."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from .._version import __version__
from ..errors import EXIT_STOPPED
from .edge import DistributorGroup, Failure, load_config, setup_logging
from .options import clevertap_options, files_of, job_options
from .render import render_plan, render_summary


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

    config = files_of(job_file, options)
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
    from ..sandbox import CleverTapConfig, CleverTapWorld, sandbox_config, serve

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
    active and unexpired, and a STATIC campaign must hold enough codes for the members still to serve.  With
    --clevertap it also proves the CleverTap account and region with one cheap call; with --clevertap-query it
    first reads today's audience from CleverTap, as run would.

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
    if config.clevertap_query is not None:  # the audience a run would read: CleverTap's answer today
        from ..audience import fetch_audience

        config = fetch_audience(config)
    result = make_plan(config, cycle_quota=cycle_quota, cycle_used=cycle_used)
    click.echo(json.dumps(result.to_dict(), indent=2, default=str) if as_json else render_plan(result))
    if result.problems:
        click.echo(f"distributor: run would fail: {result.problems[0].message}", err=True)
    sys.exit(result.exit_code)

"""The ``distributor`` command: a thin click skin over the library.

Each command builds its configuration, calls one function of the core, and renders the outcome.  Foreseeable
problems arrive as :class:`distributor.errors.DistributorError` and leave as one line on stderr with the exit code
the README documents; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from . import __version__
from .config import DEFAULT_API_URL, DEFAULT_PROPERTY, JobConfig
from .errors import EXIT_STOPPED, DistributorError
from .units import format_duration

log = logging.getLogger("distributor")


class Failure(click.ClickException):
    """A foreseeable problem, shown as ``distributor: <message>`` with its documented exit code."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code

    def show(self, file: Any = None) -> None:
        click.echo(f"distributor: {self.format_message()}", err=True)


def _job_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """The options shared by every command that works on a distribution (run, plan, status, export)."""
    options = [
        click.argument("job_file", required=False, type=click.Path(path_type=Path, dir_okay=False)),
        click.option("--segment", type=click.Path(path_type=Path), help="Segment export: CSV, CSV.gz, JSON lines or Parquet."),
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
        click.option("--timeout", help="Seconds to wait for one answer (default 30s)."),
        click.option("--max-attempts", type=int, help="Attempts per member before it is recorded as failed (default 8)."),
        click.option("-v", "--verbose", is_flag=True, default=None, help="Log every decision, not just progress."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _load_config(job_file: Path | None, options: dict[str, Any]) -> JobConfig:
    try:
        return JobConfig.load(job_file, options, os.environ)
    except DistributorError as error:
        raise Failure(str(error), error.exit_code) from None


def _setup_logging(verbose: bool, console: Any = None) -> None:
    level = logging.DEBUG if verbose else logging.INFO
    root = logging.getLogger("distributor")
    root.handlers.clear()
    if console is not None:
        from rich.logging import RichHandler

        handler: logging.Handler = RichHandler(console=console, show_path=False, markup=False)
        handler.setFormatter(logging.Formatter("%(message)s"))
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%Y-%m-%d %H:%M:%S"))
    root.addHandler(handler)
    root.setLevel(level)
    root.propagate = False
    # httpx logs one INFO line per request: far too much at thousands of calls
    logging.getLogger("httpx").setLevel(logging.WARNING)


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
@click.option("--retry-failed", is_flag=True, default=None, help="Try again the members that failed in earlier runs.")
def run(job_file: Path | None, **options: Any) -> None:
    """Publish one code per segment member and write the CleverTap CSV.

    Options come from JOB_FILE (TOML) and the flags; a flag beats the file.  Keys come from the environment:
    VOUCHERIFY_APP_ID and VOUCHERIFY_APP_TOKEN.  Running the same command again resumes; nobody gets two codes.

    \b
    Exit codes: 0 every valid member holds a code; 1 some members failed (see the errors CSV);
    2 unusable input or configuration (nothing was called); 3 stopped early (run again to resume).

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
    if sys.stderr.isatty():
        reporter: Any = TerminalProgress(sys.stderr)
        _setup_logging(config.verbose, reporter.console)
    else:
        reporter = LogProgress()
        _setup_logging(config.verbose)
    try:
        result = run_distribution(config, reporter=reporter, handle_signals=True)
    except DistributorError as error:
        raise Failure(str(error), error.exit_code) from None
    except KeyboardInterrupt:
        raise Failure("interrupted before publishing started; nothing was published", EXIT_STOPPED) from None
    click.echo(render_summary(result.summary))
    sys.exit(result.exit_code)


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
@click.option("--cycle-quota", type=int, help="API calls allowed in the billing cycle.")
@click.option("--campaigns", type=click.Path(path_type=Path, dir_okay=False), help="TOML file of [[campaign]] tables (default: the demo campaigns).")
@click.option("--seed", type=int, help="Seed for latencies, faults and codes (reproducible runs).")
@click.option("--arrivals", type=click.Path(path_type=Path, dir_okay=False), help="On exit, write every request received as JSON lines here.")
def sandbox(port: int, host: str, arrivals: Path | None, **options: Any) -> None:
    """Serve the Voucherify stand-in on loopback, for rehearsals and tests.

    It accepts the keys VOUCHERIFY_APP_ID=sandbox-app-id VOUCHERIFY_APP_TOKEN=sandbox-app-token and runs
    until Ctrl-C.

    \b
    Example (two terminals):
        distributor sandbox --port 8080 --rate-limit 100/min --latency 150ms --latency-p99 1s --error-rate 0.03
        VOUCHERIFY_APP_ID=sandbox-app-id VOUCHERIFY_APP_TOKEN=sandbox-app-token \\
            distributor run jobs/demo.toml --api-url http://127.0.0.1:8080 --rate-limit 100/min
    """
    from .sandbox import serve
    from .sandbox.embedded import sandbox_config

    try:
        config = sandbox_config(options, where="the options")
    except DistributorError as error:
        raise Failure(str(error), error.exit_code) from None

    def ready(server: Any) -> None:
        limit = options.get("rate_limit") or "unlimited"
        click.echo(f"Voucherify sandbox on {server.url} (rate limit {limit}); Ctrl-C to stop", err=True)
        click.echo(f"  VOUCHERIFY_APP_ID={config.app_id} VOUCHERIFY_APP_TOKEN={config.app_token}", err=True)

    try:
        state = serve(config, host, port, on_ready=ready, arrivals_path=arrivals)
    except OSError as error:
        raise Failure(f"cannot listen on {host}:{port}: {error.strerror or error}", 2) from None
    stats = state.stats()
    click.echo(
        f"served {stats['arrivals']} requests: {stats['ok']} ok, {stats['rate_limited']} rate-limited, "
        f"{stats['fault_5xx']} 5xx, {stats['lost_answer']} answers lost; {stats['publications']} publications",
        err=True,
    )


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
        f"  published     {members['published']}",
        f"  already held  {members['already_held']}",
        f"  failed        {members['failed']}",
        f"  skipped       {skipped['total']}" + (f"  ({reasons})" if reasons else ""),
        f"  elapsed       {format_duration(summary['elapsed_seconds'])}",
        f"  rate          {rate_line}",
        f"  calls         {calls['total']}: {per_code}, {calls['retries']} retries, "
        f"{calls['rate_limited_429']} × 429, {calls['by_kind'].get('lookup', 0)} look-ups",
        f"  output        {summary['files']['codes']} ({members['codes_in_output']} codes)",
    ]
    if members["failed"]:
        lines.append(f"  errors        {summary['files']['errors']}")
    if skipped["total"]:
        lines.append(f"  skipped rows  {summary['files']['skipped']}")
    if summary.get("resume_at"):
        lines.append(f"  resume after  {summary['resume_at']}")
    lines.append(f"exit {summary['exit_code']}: {summary['message']}")
    return "\n".join(lines)


if __name__ == "__main__":  # pragma: no cover
    main()

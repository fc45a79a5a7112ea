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

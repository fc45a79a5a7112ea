"""The edge of the command line: a foreseeable problem (:class:`~distributor.errors.DistributorError`) leaves as
one line on stderr, ``distributor: <message>``, with the exit code the README documents; anything else is a bug and
keeps its traceback.

:class:`DistributorGroup` is the one place that turns a :class:`DistributorError` raised by any command into that
line, so that no command repeats ``except DistributorError``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import click

from ..config import JobConfig
from ..errors import DistributorError
from ..files import DistributionFiles


class Failure(click.ClickException):
    """A foreseeable problem, shown as ``distributor: <message>`` with its documented exit code."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code  # type: ignore[misc]  # click declares it per class; ours is per failure

    def show(self, file: Any = None) -> None:
        click.echo(f"distributor: {self.format_message()}", err=True)


class DistributorGroup(click.Group):
    """The ``distributor`` group: every :class:`DistributorError` a command raises becomes a :class:`Failure`."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except DistributorError as error:
            raise Failure(str(error), error.exit_code) from None


def load_config(job_file: Path | None, options: dict[str, Any], *, reads_segment: bool = True) -> JobConfig:
    """The job's configuration: JOB_FILE, the flags and the environment; its ``[sandbox]`` tables read as the
    stand-ins will read them, so that a wrong value there is refused before the segment is read."""
    from ..sandbox import check_tables

    config = JobConfig.load(job_file, options, os.environ, reads_segment=reads_segment)
    check_tables(config)
    return config


def setup_logging(config: JobConfig | DistributionFiles, console: Any = None) -> None:
    """Logging as the job asks (-v, --log-format); ``console``: the live progress display's, when there is one."""
    from ..logs import setup_logging as configure

    configure(config.verbose, config.log_format, console)

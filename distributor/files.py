"""Finding a distribution's files without a run's configuration, for the commands that only read or rewrite
them (``status``, ``export``, ``push``): they read no segment and call no Voucherify, so only where the files
are — a job file, ``--output``, ``--state``, or the campaign or distribution the default output is named after —
and the columns and CleverTap settings of the hand-off are read, and checked as a run checks them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from . import checks
from .config import DEFAULT_PROPERTY, known_options
from .credentials import CleverTapCredentials
from .errors import ConfigError
from .jobfile import check_sandbox_names, merged, refuse_unknown
from .layout import Layout
from .naming import default_output_name
from .units import parse_duration


class HandOffSettings(Protocol):
    """What the files need of a distribution's settings (a run's :class:`~distributor.config.JobConfig`, or the
    :class:`DistributionFiles` that ``export`` reads): where they go and the upload's columns."""

    @property
    def layout(self) -> Layout: ...

    @property
    def property_name(self) -> str: ...

    @property
    def expiry_property(self) -> str | None: ...


@dataclass(frozen=True)
class DistributionFiles:
    """Where a distribution's files are, the columns of its upload, and where and how its codes are pushed to
    CleverTap (the options of a run that ``export`` and ``push`` share, by the same names)."""

    layout: Layout
    property_name: str = DEFAULT_PROPERTY
    expiry_property: str | None = None
    clevertap: str | None = None
    clevertap_batch: int = 1000
    clevertap_concurrency: int = 5
    clevertap_credentials: CleverTapCredentials | None = field(default=None, repr=True)
    timeout: float = 30.0
    verbose: bool = False
    log_format: str = "text"
    #: The job file's ``[sandbox]`` table: its ``clevertap`` table sets the CleverTap stand-in (``--clevertap
    #: sandbox``).
    sandbox: Mapping[str, Any] = field(default_factory=dict)

    @property
    def output(self) -> Path:
        return self.layout.output


def find_files(job_file: Path | None, overrides: Mapping[str, Any], env: Mapping[str, str]) -> DistributionFiles:
    """The files of the distribution that the job file and the flags name (:class:`ConfigError` when they name
    none, or cannot be read, or a value is one a run would refuse)."""
    values = _checked(job_file, overrides)
    layout = _layout(values, job_file)
    if layout is None:
        state = _path(values, "state")
        raise ConfigError(f"give --output: the CSV to write (the journal {state} does not say)")
    checks.check_files(layout)
    clevertap = values.get("clevertap")
    return DistributionFiles(
        layout=layout,
        property_name=values.get("property_name", DEFAULT_PROPERTY),
        expiry_property=values.get("expiry_property"),
        clevertap=clevertap,
        clevertap_batch=values.get("clevertap_batch", 1000),
        clevertap_concurrency=values.get("clevertap_concurrency", 5),
        clevertap_credentials=CleverTapCredentials.from_env(env) if clevertap is not None else None,
        timeout=values.get("timeout", 30.0),
        verbose=bool(values.get("verbose", False)),
        log_format=values.get("log_format", "text"),
        sandbox=values.get("sandbox", {}),
    )


def find_journal(job_file: Path | None, overrides: Mapping[str, Any]) -> Path:
    """The journal of the distribution that the job file and the flags name: ``--state`` as given, else found as a
    run finds it."""
    if job_file is None and overrides.get("state") is not None:
        return Path(overrides["state"])
    values = _checked(job_file, overrides)
    layout = _layout(values, job_file)
    if layout is None:  # a journal whose name does not say where the output is: status needs only the journal
        return _path(values, "state")
    checks.check_files(layout)
    return layout.journal


def _checked(job_file: Path | None, overrides: Mapping[str, Any]) -> dict[str, Any]:
    """The job file and the flags, merged; refused as a run would refuse them, for the options read here."""
    if job_file is None and not {"output", "state", "campaign", "distribution"} & _given(overrides):
        raise ConfigError("which distribution? give its JOB_FILE, --output or --state")
    values = merged(job_file, overrides)
    refuse_unknown(set(values), known_options(), f" in {job_file}" if job_file else "")
    check_sandbox_names(values.get("sandbox", {}), job_file)
    if "campaign" in values:
        values["campaign"] = checks.campaign_given(values["campaign"])
    checks.check_distribution(values.get("distribution"))
    property_name = values.get("property_name", DEFAULT_PROPERTY)
    checks.check_property(property_name)
    checks.check_clevertap(values.get("clevertap"))
    checks.check_expiry_property(values.get("expiry_property"), property_name)
    checks.check_uploads(values.get("clevertap_batch", 1000), values.get("clevertap_concurrency", 5))
    if "timeout" in values:
        try:
            values["timeout"] = parse_duration(values["timeout"])
        except ConfigError as error:
            raise ConfigError(f"timeout: {error}") from None
        checks.check_timeout(values["timeout"])
    checks.check_log_format(values.get("log_format", "text"))
    return values


def _layout(values: Mapping[str, Any], job_file: Path | None) -> Layout | None:
    """The files' layout: after the output given, else the default output (named after the distribution or the
    campaign, beside the job file), else the journal's name; ``None`` when only a journal of another name is known."""
    state = _path(values, "state") if values.get("state") not in (None, "") else None
    if values.get("output") not in (None, ""):
        return Layout(Path(values["output"]), state)
    name = values.get("distribution") or values.get("campaign")
    if name:
        folder = job_file.resolve().parent if job_file is not None else Path()
        return Layout(folder / default_output_name(str(name)), state)
    if state is not None:
        return Layout.of_journal(state)
    assert job_file is not None  # without one, _checked asked which distribution
    raise ConfigError(f"which distribution? {job_file} names no output, state, campaign or distribution")


def _path(values: Mapping[str, Any], key: str) -> Path:
    return Path(values[key])


def _given(overrides: Mapping[str, Any]) -> set[str]:
    return {key for key, value in overrides.items() if value is not None}

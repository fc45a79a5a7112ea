"""The configuration of a run: a job file (:mod:`.jobfile`), command-line overrides and the environment, merged
and checked into one :class:`JobConfig`.

Precedence: a flag given on the command line beats the job file, which beats the defaults.  Relative paths in a
job file are resolved against the job file's folder; relative paths on the command line against the current
directory.

Credentials come only from the environment (``VOUCHERIFY_APP_ID`` / ``VOUCHERIFY_APP_TOKEN``), never from a job
file or a flag, so they do not end up in shell history, crontabs or version control.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from . import checks
from .credentials import (
    ENV_APP_ID,
    ENV_APP_TOKEN,
    LOOPBACK_HOSTS,
    SANDBOX,
    CleverTapCredentials,
    Credentials,
    resolve_url,
)
from .errors import ConfigError
from .jobfile import check_sandbox_names, merged, refuse_unknown
from .layout import Layout
from .naming import default_output_name, publication_source_id, publication_source_id_v1, slugify
from .units import Rate

#: Voucherify's Europe host, the default region.  (``SANDBOX``, ``--api-url sandbox``: the embedded stand-in.)
DEFAULT_API_URL = "https://api.voucherify.io"
DEFAULT_PROPERTY = "voucher_code"
#: ``deliver_to``: a code for every member of the segment (the default), or for each member who leaves it.
MEMBERS = "members"
LEAVERS = "leavers"
DELIVERIES = (MEMBERS, LEAVERS)

# Kept importable from here (``--api-url sandbox``; the keys of publications), where the run and the journal
# import them from.
__all__ = [
    "DEFAULT_API_URL", "DEFAULT_PROPERTY", "DELIVERIES", "LEAVERS", "MEMBERS", "SANDBOX", "JobConfig",
    "SegmentPaths", "is_rehearsal", "known_options", "normalise_api_url", "publication_source_id",
    "publication_source_id_v1", "refuse_stand_in_codes_for_real_profiles", "segment_paths", "slugify",
]


class SegmentPaths(tuple[Path, ...]):
    """The segment as given: one or several parts, each a file, a folder of parts or a glob pattern (expanded
    when the segment is opened, see :func:`distributor.segment.open_segment`).  As text: the paths joined by
    `` + ``, so a one-file segment reads as its path."""

    def __str__(self) -> str:
        return " + ".join(str(path) for path in self)


def segment_paths(value: object, where: str = "") -> SegmentPaths:
    """``--segment`` (given once or repeated) or a job file's ``segment`` (a path or a list of paths)."""
    items = list(value) if isinstance(value, (list, tuple)) else [value]
    if not items:
        raise ConfigError(f"segment is missing{where}: give --segment or set segment in the job file")
    paths = [Path(item) for item in items if isinstance(item, (str, Path)) and str(item)]
    if len(paths) != len(items):
        raise ConfigError(f"segment{where} must be a path or a list of paths (files, folders or glob patterns)")
    return SegmentPaths(paths)


@dataclass(frozen=True)
class JobConfig:
    """Everything one distribution run needs.  Build it with :meth:`load` (job file + overrides + env)."""

    #: The segment's parts: several are read as one segment (``--segment`` repeated, a folder, a glob); none for a
    #: command that reads no segment (``verify``).
    segment: SegmentPaths
    campaign: str
    rate_limit: Rate
    output: Path
    id_column: str | None = None
    #: Name of this distribution; with the customer it makes each publication's ``source_id``.  ``None``: the
    #: campaign's id, so that by default one customer gets one code per campaign even if the journal is lost.
    distribution: str | None = None
    api_url: str = DEFAULT_API_URL
    #: The CleverTap profile property that receives the code (``--property``).
    property_name: str = DEFAULT_PROPERTY
    state: Path | None = None
    #: Calls in flight at once; ``None`` adapts to the observed latency (Little's law).
    concurrency: int | None = None
    #: Fraction of ``rate_limit`` to leave unused for the shop's own traffic (0.2 = run at 80 %).
    headroom: float = 0.0
    #: Deadline of one whole call (connect, send, answer and body), in seconds.
    timeout: float = 30.0
    #: The longest pause a server's 429 may ask for; a longer one stops the run (exit 3) saying when to resume.
    max_pause: float = 900.0
    #: Attempts per member before its transient failures stop being retried in this run (it is served again by
    #: the next run, never marked failed).
    max_attempts: int = 8
    retry_failed: bool = False
    #: Who gets a code: every member of the segment (``members``), or each member who left it since the previous
    #: complete run (``leavers``: the segment is watched, its members are not served).
    deliver_to: str = MEMBERS
    #: Publish to at most this many members (in segment order), then stop resumably: a first test batch.
    limit: int | None = None
    verbose: bool = False
    #: ``text`` (the default) or ``json``: one JSON object per line, for log shippers.
    log_format: str = "text"
    #: Seconds between progress lines when stderr is not a terminal (cron, a pipe).
    progress_interval: float = 30.0
    credentials: Credentials | None = field(default=None, repr=True)
    #: The ``[sandbox]`` table of the job file, used when ``api_url`` is ``sandbox``.
    sandbox: Mapping[str, Any] = field(default_factory=dict)
    job_file: Path | None = None
    # h7-clevertap: push the codes to CleverTap (``--clevertap REGION|URL|sandbox``); see push.py
    clevertap: str | None = None
    clevertap_batch: int = 1000
    clevertap_concurrency: int = 5
    clevertap_credentials: CleverTapCredentials | None = field(default=None, repr=True)
    #: ``--expiry-property``: the profile property that receives each code's expiration date (CSV and push)
    expiry_property: str | None = None
    #: ``--clevertap-query``: read the segment from CleverTap's profiles API with this query file (audience.py)
    clevertap_query: Path | None = None

    # ------------------------------------------------------------------ derived
    @property
    def uses_sandbox(self) -> bool:
        return self.api_url == SANDBOX

    @property
    def layout(self) -> Layout:
        """Where this distribution's files are: the output, its reports and the journal."""
        return Layout(self.output, self.state)

    @property
    def delivers_to_leavers(self) -> bool:
        return self.deliver_to == LEAVERS

    @property
    def budget(self) -> Rate:
        """The rate this job may actually spend: the grant minus the headroom left to the shop."""
        return self.rate_limit.scaled(1.0 - self.headroom) if self.headroom else self.rate_limit

    # ------------------------------------------------------------------ loading
    @classmethod
    def load(
        cls,
        job_file: Path | None = None,
        overrides: Mapping[str, Any] | None = None,
        env: Mapping[str, str] | None = None,
        *,
        reads_segment: bool = True,
    ) -> JobConfig:
        """Merge a job file, command-line ``overrides`` (``None`` values are ignored) and the environment.
        ``reads_segment=False``: a command that reads no segment (``verify``) does not need one."""
        values = merged(job_file, overrides)
        return cls.from_mapping(values, env=env or {}, job_file=job_file, reads_segment=reads_segment)

    @classmethod
    def from_mapping(
        cls,
        values: Mapping[str, Any],
        *,
        env: Mapping[str, str],
        job_file: Path | None = None,
        reads_segment: bool = True,
    ) -> JobConfig:
        where = f" in {job_file}" if job_file else ""
        refuse_unknown(set(values), known_options(), where)
        from_clevertap = values.get("clevertap_query") not in (None, "")
        if from_clevertap and values.get("segment") not in (None, ""):
            raise ConfigError("give either segment (a file) or clevertap_query (CleverTap's profiles API), not both")
        without_segment = not reads_segment and values.get("segment") in (None, "")
        _require(values, from_clevertap or without_segment)

        data = dict(values)
        if without_segment and not from_clevertap:
            data["segment"] = SegmentPaths()
        elif from_clevertap:  # the day's audience file stands for the segment: set below, once the output is known
            data["segment"] = SegmentPaths([Path()])
            data["clevertap_query"] = Path(data["clevertap_query"])
        else:
            data["segment"] = segment_paths(data["segment"], where)
        data["rate_limit"] = (
            data["rate_limit"] if isinstance(data["rate_limit"], Rate) else Rate.parse(data["rate_limit"])
        )
        data["campaign"] = checks.campaign_given(data["campaign"])
        if data.get("output") in (None, ""):
            # beside the job file, never in the caller's working directory ($HOME under cron)
            folder = job_file.resolve().parent if job_file is not None else Path()
            data["output"] = folder / default_output_name(data.get("distribution") or data["campaign"])
        data["output"] = Path(data["output"])
        data["state"] = Path(data["state"]) if data.get("state") not in (None, "") else None
        checks.read_durations(data)
        if isinstance(data.get("api_url"), str):
            data["api_url"] = normalise_api_url(data["api_url"])
        config = cls(**data, job_file=job_file)
        if from_clevertap:
            config = replace(config, segment=SegmentPaths([config.layout.audience()]))
        config = replace(config, credentials=config._credentials_from(env))
        if config.clevertap is not None:
            config = replace(config, clevertap_credentials=CleverTapCredentials.from_env(env))
        config.validate()
        return config

    def _credentials_from(self, env: Mapping[str, str]) -> Credentials | None:
        credentials = Credentials.from_env(env)
        if credentials is None and not self.uses_sandbox:
            raise ConfigError(
                f"no Voucherify credentials: set {ENV_APP_ID} and {ENV_APP_TOKEN} in the environment "
                "(Project Settings → Application Keys in Voucherify)"
            )
        return credentials

    def validate(self) -> None:
        """Checks that need no file or network access.  Raises :class:`ConfigError`."""
        _check_api_url(self.api_url)
        checks.check_property(self.property_name)
        self._check_pacing()
        checks.check_log_format(self.log_format)
        if not 0.1 <= self.progress_interval <= 86400:
            raise ConfigError(f"progress_interval {self.progress_interval}s must be between 0.1s and 1 day")
        check_sandbox_names(self.sandbox, self.job_file)
        checks.check_distribution(self.distribution)
        checks.check_clevertap(self.clevertap)
        if self.clevertap_query is not None and self.clevertap is None:
            raise ConfigError(
                "clevertap_query needs --clevertap: the account's region (eu1, in1, …), a URL or 'sandbox'"
            )
        checks.check_expiry_property(self.expiry_property, self.property_name)
        checks.check_uploads(self.clevertap_batch, self.clevertap_concurrency)
        if self.deliver_to not in DELIVERIES:
            raise ConfigError(f"deliver_to {self.deliver_to!r} must be {' or '.join(DELIVERIES)}")
        checks.check_files(self.layout)

    def _check_pacing(self) -> None:
        """How fast, how many at once, how long and how often: each within its range."""
        if self.concurrency is not None and not (isinstance(self.concurrency, int) and 1 <= self.concurrency <= 256):
            raise ConfigError(f"concurrency {self.concurrency!r} must be a whole number from 1 to 256")
        if not (isinstance(self.headroom, (int, float)) and 0.0 <= self.headroom < 1.0):
            raise ConfigError(
                f"headroom {self.headroom!r} must be a fraction from 0 to 0.99 (0.2 leaves 20 % to the shop)"
            )
        if not (isinstance(self.max_attempts, int) and 1 <= self.max_attempts <= 100):
            raise ConfigError(f"max_attempts {self.max_attempts!r} must be a whole number from 1 to 100")
        checks.check_timeout(self.timeout)
        if not 1.0 <= self.max_pause <= 7 * 86400:
            raise ConfigError(f"max_pause {self.max_pause:g}s must be between 1s and 7 days (e.g. 15min)")
        if self.limit is not None and not (
            isinstance(self.limit, int) and not isinstance(self.limit, bool) and self.limit >= 1
        ):
            raise ConfigError(f"limit {self.limit!r} must be a whole number of members, at least 1")


def known_options() -> set[str]:
    """The options a job file or the flags may set: :class:`JobConfig`'s fields but those filled in by loading."""
    return {f.name for f in fields(JobConfig)} - {"credentials", "job_file", "clevertap_credentials"}


def _require(values: Mapping[str, Any], segment_elsewhere: bool) -> None:
    """The options every run needs: the segment (unless CleverTap's profiles query gives it, or none is read),
    the campaign and the rate."""
    for required, flag in (("segment", "--segment"), ("campaign", "--campaign"), ("rate_limit", "--rate-limit")):
        if required == "segment" and segment_elsewhere:
            continue
        if values.get(required) in (None, ""):
            hint = " (the budget this job may spend, e.g. 80/min on a 100/min plan)" if required == "rate_limit" else ""
            raise ConfigError(f"{required} is missing: give {flag} or set {required} in the job file{hint}")


def _check_api_url(api_url: str) -> None:
    """A URL (https, or http on loopback only: the app token travels in every request), or ``sandbox``."""
    if api_url == SANDBOX:
        return
    parts = urlsplit(api_url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"api_url {api_url!r} is not a URL (e.g. {DEFAULT_API_URL}) nor 'sandbox'")
    if parts.scheme == "http" and parts.hostname not in LOOPBACK_HOSTS:
        raise ConfigError(f"api_url {api_url!r} is plain http: the app token would travel unencrypted; use https")


def refuse_stand_in_codes_for_real_profiles(config: JobConfig) -> None:
    """A run against a stand-in Voucherify publishes codes that do not exist: they must never reach real CleverTap
    profiles (customers would be shown them).  :class:`ConfigError`, before any call."""
    if (
        config.clevertap is not None
        and is_rehearsal(config.api_url)
        and not is_rehearsal(resolve_url(str(config.clevertap)))
    ):
        raise ConfigError(
            f"api_url {config.api_url!r} is a stand-in Voucherify, whose codes do not exist: they must never reach "
            f"real CleverTap profiles ({config.clevertap}); push a rehearsal to --clevertap sandbox"
        )


def is_rehearsal(url_or_host: str) -> bool:
    """``sandbox`` (the embedded stand-in) or a loopback URL (``distributor sandbox``): nothing there is real."""
    if url_or_host == SANDBOX:
        return True
    return urlsplit(url_or_host).hostname in LOOPBACK_HOSTS


def normalise_api_url(url: str) -> str:
    """``https://api.voucherify.io/v1/`` → ``https://api.voucherify.io``: the client adds ``/v1`` itself."""
    url = url.strip()
    while url.endswith("/"):
        url = url[:-1]
    if url.lower().endswith("/v1"):
        url = url[:-3].rstrip("/")
    return url

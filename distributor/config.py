"""The job's configuration: a TOML job file, command-line overrides and the environment, merged and checked.

Precedence: a flag given on the command line beats the job file, which beats the defaults.  Relative paths in a
job file are resolved against the job file's folder (so a job runs the same from cron, whose working directory
is ``$HOME``); relative paths on the command line against the current directory.

Credentials come only from the environment (``VOUCHERIFY_APP_ID`` / ``VOUCHERIFY_APP_TOKEN``), never from a job
file or a flag, so they do not end up in shell history, crontabs or version control.
"""

from __future__ import annotations

import hashlib
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from .credentials import ENV_APP_ID, ENV_APP_TOKEN, LOOPBACK_HOSTS, CleverTapCredentials, Credentials, resolve_url
from .errors import ConfigError
from .layout import Layout
from .units import Rate, parse_duration

#: Voucherify's Europe host, the default region.
DEFAULT_API_URL = "https://api.voucherify.io"
#: ``--api-url sandbox`` runs the embedded Voucherify stand-in in-process.
SANDBOX = "sandbox"
DEFAULT_PROPERTY = "voucher_code"
#: ``deliver_to``: a code for every member of the segment (the default), or for each member who leaves it.
MEMBERS = "members"
LEAVERS = "leavers"
DELIVERIES = (MEMBERS, LEAVERS)


_PROPERTY_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_\- ]*$")


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

    #: The segment's parts: several are read as one segment (``--segment`` repeated, a folder, a glob).
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
    ) -> JobConfig:
        """Merge a job file, command-line ``overrides`` (``None`` values are ignored) and the environment."""
        values: dict[str, Any] = {}
        if job_file is not None:
            values.update(_read_job_file(job_file))
        for key, value in (overrides or {}).items():
            if value is not None:
                values[_normalise_key(key)] = value
        return cls.from_mapping(values, env=env or {}, job_file=job_file)

    @classmethod
    def from_mapping(
        cls, values: Mapping[str, Any], *, env: Mapping[str, str], job_file: Path | None = None
    ) -> JobConfig:
        where = f" in {job_file}" if job_file else ""
        known = {f.name for f in fields(cls)} - {"credentials", "job_file", "clevertap_credentials"}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"unknown option{'s' if len(unknown) > 1 else ''}{where}: {', '.join(unknown)}")
        from_clevertap = values.get("clevertap_query") not in (None, "")
        if from_clevertap and values.get("segment") not in (None, ""):
            raise ConfigError("give either segment (a file) or clevertap_query (CleverTap's profiles API), not both")
        for required, flag in (("segment", "--segment"), ("campaign", "--campaign"), ("rate_limit", "--rate-limit")):
            if required == "segment" and from_clevertap:
                continue
            if values.get(required) in (None, ""):
                hint = (
                    " (the budget this job may spend, e.g. 80/min on a 100/min plan)"
                    if required == "rate_limit"
                    else ""
                )
                raise ConfigError(f"{required} is missing: give {flag} or set {required} in the job file{hint}")

        data = dict(values)
        if from_clevertap:  # the day's audience file stands for the segment: set below, once the output is known
            data["segment"] = SegmentPaths([Path()])
            data["clevertap_query"] = Path(data["clevertap_query"])
        else:
            data["segment"] = segment_paths(data["segment"], where)
        data["rate_limit"] = (
            data["rate_limit"] if isinstance(data["rate_limit"], Rate) else Rate.parse(data["rate_limit"])
        )
        data["campaign"] = str(data["campaign"]).strip()
        if not data["campaign"]:
            raise ConfigError("campaign is empty: give the campaign's name or its camp_... id")
        if data.get("output") in (None, ""):
            # beside the job file, never in the caller's working directory ($HOME under cron)
            slug = slugify(data.get("distribution") or data["campaign"])
            folder = job_file.resolve().parent if job_file is not None else Path()
            data["output"] = folder / f"{slug}-codes.csv"
        data["output"] = Path(data["output"])
        if data.get("state") not in (None, ""):
            data["state"] = Path(data["state"])
        else:
            data["state"] = None
        for name in ("timeout", "max_pause", "progress_interval"):
            if name in data:
                try:
                    data[name] = parse_duration(data[name])
                except ConfigError as error:
                    raise ConfigError(f"{name}: {error}") from None
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
        if self.api_url != SANDBOX:
            parts = urlsplit(self.api_url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ConfigError(f"api_url {self.api_url!r} is not a URL (e.g. {DEFAULT_API_URL}) nor 'sandbox'")
            if parts.scheme == "http" and parts.hostname not in LOOPBACK_HOSTS:
                raise ConfigError(
                    f"api_url {self.api_url!r} is plain http: the app token would travel unencrypted; use https"
                )
        if not _PROPERTY_NAME.match(self.property_name) or len(self.property_name.encode()) > 120:
            raise ConfigError(
                f"property {self.property_name!r} is not a usable CleverTap property name "
                "(letters, digits, _ - and spaces, starting with a letter or _, at most 120 bytes)"
            )
        if self.property_name.lower() in ("identity", "objectid", "email", "phone"):
            raise ConfigError(
                f"property {self.property_name!r} would overwrite a CleverTap identifier; choose another name"
            )
        if self.concurrency is not None and not (isinstance(self.concurrency, int) and 1 <= self.concurrency <= 256):
            raise ConfigError(f"concurrency {self.concurrency!r} must be a whole number from 1 to 256")
        if not (isinstance(self.headroom, (int, float)) and 0.0 <= self.headroom < 1.0):
            raise ConfigError(
                f"headroom {self.headroom!r} must be a fraction from 0 to 0.99 (0.2 leaves 20 % to the shop)"
            )
        if not (isinstance(self.max_attempts, int) and 1 <= self.max_attempts <= 100):
            raise ConfigError(f"max_attempts {self.max_attempts!r} must be a whole number from 1 to 100")
        if not 0.1 <= self.timeout <= 170:
            raise ConfigError(
                f"timeout {self.timeout}s must be between 0.1s and 170s (Voucherify cuts requests at 3 min)"
            )
        if not 1.0 <= self.max_pause <= 7 * 86400:
            raise ConfigError(f"max_pause {self.max_pause:g}s must be between 1s and 7 days (e.g. 15min)")
        if self.limit is not None and not (
            isinstance(self.limit, int) and not isinstance(self.limit, bool) and self.limit >= 1
        ):
            raise ConfigError(f"limit {self.limit!r} must be a whole number of members, at least 1")
        if self.log_format not in ("text", "json"):
            raise ConfigError(f"log_format {self.log_format!r} must be text or json")
        if not 0.1 <= self.progress_interval <= 86400:
            raise ConfigError(f"progress_interval {self.progress_interval}s must be between 0.1s and 1 day")
        self._check_sandbox_table()
        if self.distribution is not None and not str(self.distribution).strip():
            raise ConfigError("distribution is empty: leave it out to use the campaign, or give a name")
        self._validate_clevertap()
        if self.deliver_to not in DELIVERIES:
            raise ConfigError(f"deliver_to {self.deliver_to!r} must be {' or '.join(DELIVERIES)}")
        if self.output.suffix.lower() != ".csv":
            raise ConfigError(f"output {self.output} must end in .csv (CleverTap's upload takes CSV)")
        if self.layout.journal.resolve() == self.output.resolve():
            raise ConfigError("state and output point at the same file")

    def _check_sandbox_table(self) -> None:
        """A ``[sandbox]`` typo is refused now, before the segment is read; its values too when it is used."""
        from .sandbox import OPTIONS, sandbox_config

        where = f"[sandbox] of {self.job_file}" if self.job_file else "[sandbox]"
        unknown = sorted(set(self.sandbox) - set(OPTIONS) - {"_base", "clevertap"})
        if unknown:
            raise ConfigError(f"unknown option{'s' if len(unknown) > 1 else ''} in {where}: {', '.join(unknown)}")
        if self.uses_sandbox:
            options = {key: value for key, value in self.sandbox.items() if key != "_base"}
            sandbox_config(options, base=self.sandbox.get("_base"), where=where)
        table = self.sandbox.get("clevertap")
        if table is not None:
            from .sandbox import CleverTapConfig

            if not isinstance(table, Mapping):
                raise ConfigError(f"{where[:-1]}.clevertap] must be a table")
            try:
                CleverTapConfig.parse(table)
            except TypeError as error:
                raise ConfigError(f"{where[:-1]}.clevertap]: {error}") from None

    def _validate_clevertap(self) -> None:
        if self.clevertap is not None:
            resolve_url(str(self.clevertap))
        if self.clevertap_query is not None and self.clevertap is None:
            raise ConfigError(
                "clevertap_query needs --clevertap: the account's region (eu1, in1, …), a URL or 'sandbox'"
            )
        expiry = self.expiry_property
        if expiry is not None and (
            not _PROPERTY_NAME.match(expiry)
            or len(expiry.encode()) > 120
            or expiry.lower() in ("identity", "objectid", "email", "phone", self.property_name.lower())
        ):
            raise ConfigError(
                f"expiry_property {expiry!r} is not a usable CleverTap property name, or is an identifier "
                "or the code's property; choose another name"
            )
        if not (isinstance(self.clevertap_batch, int) and 1 <= self.clevertap_batch <= 1000):
            raise ConfigError(
                f"clevertap_batch {self.clevertap_batch!r} must be a whole number from 1 to 1000 "
                "(CleverTap's limit per upload)"
            )
        if not (isinstance(self.clevertap_concurrency, int) and 1 <= self.clevertap_concurrency <= 15):
            raise ConfigError(
                f"clevertap_concurrency {self.clevertap_concurrency!r} must be a whole number from 1 to 15 "
                "(CleverTap answers 429 beyond 15 concurrent requests)"
            )


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


def publication_source_id(distribution: str, campaign: str, identity: str) -> str:
    """The idempotency key of one customer's publication of one campaign in one distribution.

    Deterministic, so a retry or a rerun asks Voucherify for the same publication and gets the same code back;
    different for another campaign (even under the same distribution name: Voucherify would otherwise answer
    ``duplicate_source_id`` and the look-up would find the other campaign's code) and for another distribution.
    ``campaign`` is the campaign's ``camp_…`` id when the pre-flight resolved it, else the configured campaign;
    the journal pins the choice on its first run (meta ``key_campaign``) and each member's key on its first call.
    Identities can be 1023 characters of anything, so the key carries a hash, prefixed with a readable slug.
    """
    material = b"\x00".join((b"v2", distribution.encode(), campaign.encode(), identity.encode()))
    digest = hashlib.sha256(material).hexdigest()[:32]
    return f"{slugify(distribution)[:40]}-{digest}"


def publication_source_id_v1(distribution: str, identity: str) -> str:
    """The key of journals before schema 5 (distribution and customer only): kept for their members' calls."""
    digest = hashlib.sha256(distribution.encode() + b"\x00" + identity.encode()).hexdigest()[:32]
    return f"{slugify(distribution)[:40]}-{digest}"


def slugify(text: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return slug or "distribution"


_RENAMED = {"property": "property_name"}


def _normalise_key(key: str) -> str:
    key = key.replace("-", "_")
    return _RENAMED.get(key, key)


def _read_job_file(path: Path) -> dict[str, Any]:
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"job file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"job file {path} cannot be read: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"job file {path} is not valid TOML: {exc}") from None

    base = path.resolve().parent
    values: dict[str, Any] = {}
    for key, value in raw.items():
        key = _normalise_key(key)
        if key == "sandbox":
            if not isinstance(value, dict):
                raise ConfigError(f"[sandbox] in {path} must be a table")
            values["sandbox"] = {**{_normalise_key(k): v for k, v in value.items()}, "_base": base}
            continue
        if isinstance(value, dict):
            raise ConfigError(f"unknown table [{key}] in {path}")
        if key in ("segment", "output", "state", "clevertap_query") and isinstance(value, str) and value:
            value = os.path.normpath(base / value)
        elif key == "segment" and isinstance(value, list):  # several parts, each relative to the job file
            value = [os.path.normpath(base / item) if isinstance(item, str) and item else item for item in value]
        values[key] = value
    return values

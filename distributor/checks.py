"""The checks of single options that need no file or network access, shared by a run's configuration
(:mod:`.config`) and the reading of a distribution's files (:mod:`.files`), so that both refuse a value with the
same one line.  Each raises :class:`~distributor.errors.ConfigError`."""

from __future__ import annotations

import re
from collections.abc import MutableMapping
from typing import Any

from .credentials import resolve_url
from .errors import ConfigError
from .layout import Layout
from .units import parse_duration

_PROPERTY_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_\- ]*$")
#: CleverTap's identifiers: a property of that name would overwrite them.
_IDENTIFIERS = ("identity", "objectid", "email", "phone")
#: The options given as durations (``150ms``, ``2s``, ``15min``), read into seconds.
DURATIONS = ("timeout", "max_pause", "progress_interval")


def read_durations(values: MutableMapping[str, Any]) -> None:
    """The duration options of ``values`` (text such as ``"30s"``) as seconds, in place."""
    for name in DURATIONS:
        if name in values:
            try:
                values[name] = parse_duration(values[name])
            except ConfigError as error:
                raise ConfigError(f"{name}: {error}") from None


def campaign_given(value: object) -> str:
    """The campaign's name or ``camp_…`` id, stripped: it must be there, and not blank."""
    if value in (None, ""):
        raise ConfigError("campaign is missing: give --campaign or set campaign in the job file")
    campaign = str(value).strip()
    if not campaign:
        raise ConfigError("campaign is empty: give the campaign's name or its camp_... id")
    return campaign


def check_distribution(distribution: object) -> None:
    if distribution is not None and not str(distribution).strip():
        raise ConfigError("distribution is empty: leave it out to use the campaign, or give a name")


def check_property(property_name: str) -> None:
    """A name CleverTap accepts for the code's profile property, and not one of its identifiers."""
    if not _PROPERTY_NAME.match(property_name) or len(property_name.encode()) > 120:
        raise ConfigError(
            f"property {property_name!r} is not a usable CleverTap property name "
            "(letters, digits, _ - and spaces, starting with a letter or _, at most 120 bytes)"
        )
    if property_name.lower() in _IDENTIFIERS:
        raise ConfigError(f"property {property_name!r} would overwrite a CleverTap identifier; choose another name")


def check_expiry_property(expiry: str | None, property_name: str) -> None:
    """``--expiry-property``: a usable name, neither an identifier nor the code's own property."""
    if expiry is not None and (
        not _PROPERTY_NAME.match(expiry)
        or len(expiry.encode()) > 120
        or expiry.lower() in (*_IDENTIFIERS, property_name.lower())
    ):
        raise ConfigError(
            f"expiry_property {expiry!r} is not a usable CleverTap property name, or is an identifier "
            "or the code's property; choose another name"
        )


def check_clevertap(clevertap: str | None) -> None:
    """``--clevertap``: a region, a URL or ``sandbox``."""
    if clevertap is not None:
        resolve_url(str(clevertap))


def check_uploads(batch: object, concurrency: object) -> None:
    """The size and number of CleverTap uploads in flight, within CleverTap's limits."""
    if not (isinstance(batch, int) and 1 <= batch <= 1000):
        raise ConfigError(
            f"clevertap_batch {batch!r} must be a whole number from 1 to 1000 (CleverTap's limit per upload)"
        )
    if not (isinstance(concurrency, int) and 1 <= concurrency <= 15):
        raise ConfigError(
            f"clevertap_concurrency {concurrency!r} must be a whole number from 1 to 15 "
            "(CleverTap answers 429 beyond 15 concurrent requests)"
        )


def check_timeout(timeout: float) -> None:
    if not 0.1 <= timeout <= 170:
        raise ConfigError(f"timeout {timeout}s must be between 0.1s and 170s (Voucherify cuts requests at 3 min)")


def check_files(layout: Layout) -> None:
    """The output is a CSV, and the journal is another file."""
    if layout.output.suffix.lower() != ".csv":
        raise ConfigError(f"output {layout.output} must end in .csv (CleverTap's upload takes CSV)")
    if layout.journal.resolve() == layout.output.resolve():
        raise ConfigError("state and output point at the same file")


def check_log_format(log_format: object) -> None:
    if log_format not in ("text", "json"):
        raise ConfigError(f"log_format {log_format!r} must be text or json")

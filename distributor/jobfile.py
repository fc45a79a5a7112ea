"""A job file as written: the TOML read, its keys normalised, its relative paths resolved, and the names its
``[sandbox]`` table may hold — nothing interpreted yet (:mod:`.config` builds a run's configuration from it,
:mod:`.files` finds a distribution's files with it).

Relative paths in a job file are resolved against the job file's folder, so a job runs the same from cron, whose
working directory is ``$HOME``.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .errors import ConfigError

#: The options of the ``[sandbox]`` table (and of the ``distributor sandbox`` command): how the embedded stand-in
#: behaves.  The stand-in reads their values (:func:`distributor.sandbox.sandbox_config`); a name not listed here is
#: refused as soon as the job file is read, before any segment.
SANDBOX_OPTIONS = (
    "rate_limit", "latency", "latency_p99", "error_rate", "lost_answer_rate", "strict_source_id",
    "background_rate", "background_since", "cycle_quota", "seed", "campaigns",
)
#: ``[sandbox.clevertap]``: the CleverTap stand-in's own table, read by :func:`distributor.sandbox.embedded_clevertap`.
CLEVERTAP_TABLE = "clevertap"
#: Where the ``[sandbox]`` table remembers the job file's folder (its ``campaigns`` file is relative to it).
BASE = "_base"
#: Paths a job file may give relative to its own folder.
_PATHS = ("segment", "output", "state", "clevertap_query")
_RENAMED = {"property": "property_name"}


def normalise_key(key: str) -> str:
    """``max-attempts`` → ``max_attempts``, ``property`` → ``property_name``: job file and flags use one name."""
    key = key.replace("-", "_")
    return _RENAMED.get(key, key)


def read_job_file(path: Path) -> dict[str, Any]:
    """The job file's options by normalised name, relative paths resolved against its folder.  :class:`ConfigError`
    when it does not exist, cannot be read, is not TOML, or holds a table other than ``[sandbox]``."""
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
        key = normalise_key(key)
        if key == "sandbox":
            if not isinstance(value, dict):
                raise ConfigError(f"[sandbox] in {path} must be a table")
            values["sandbox"] = {**{normalise_key(k): v for k, v in value.items()}, BASE: base}
            continue
        if isinstance(value, dict):
            raise ConfigError(f"unknown table [{key}] in {path}")
        if key in _PATHS and isinstance(value, str) and value:
            value = os.path.normpath(base / value)
        elif key == "segment" and isinstance(value, list):  # several parts, each relative to the job file
            value = [os.path.normpath(base / item) if isinstance(item, str) and item else item for item in value]
        values[key] = value
    return values


def merged(job_file: Path | None, overrides: Mapping[str, Any] | None) -> dict[str, Any]:
    """The job file's options with the flags given over them (a flag left ``None`` was not given)."""
    values = read_job_file(job_file) if job_file is not None else {}
    for key, value in (overrides or {}).items():
        if value is not None:
            values[normalise_key(key)] = value
    return values


def refuse_unknown(names: set[str], known: set[str], where: str) -> None:
    """``unknown option(s) <where>: a, b`` (:class:`ConfigError`) when ``names`` holds any not ``known``."""
    unknown = sorted(names - known)
    if unknown:
        raise ConfigError(f"unknown option{'s' if len(unknown) > 1 else ''}{where}: {', '.join(unknown)}")


def sandbox_where(job_file: Path | None, table: str = "sandbox") -> str:
    """How messages name a ``[sandbox]`` (or ``[sandbox.clevertap]``) table: with its job file when there is one."""
    return f"[{table}] of {job_file}" if job_file else f"[{table}]"


def check_sandbox_names(table: Mapping[str, Any], job_file: Path | None) -> None:
    """A ``[sandbox]`` typo is refused as soon as the job file is read, before the segment (its values are the
    stand-in's to read when it is built)."""
    refuse_unknown(set(table) - {BASE, CLEVERTAP_TABLE}, set(SANDBOX_OPTIONS), f" in {sandbox_where(job_file)}")
    stand_in = table.get(CLEVERTAP_TABLE)
    if stand_in is not None and not isinstance(stand_in, Mapping):
        raise ConfigError(f"{sandbox_where(job_file, 'sandbox.clevertap')} must be a table")

"""``--clevertap-query FILE.json``: the segment read straight from CleverTap's Get User Profiles API.

The query (CleverTap's own JSON, e.g. ``{"event_name": "Charged", "from": "yesterday", "to": "yesterday"}``) may
use relative dates — ``"today"``, ``"yesterday"``, ``"N days ago"`` — anywhere a value is a string; each becomes
the ``YYYYMMDD`` number CleverTap expects, for the local date the job runs on, so a daily cron job selects
"everyone who did *Charged* yesterday".

The members are paged (``POST /1/profiles.json?batch_size=N``, then ``GET …?cursor=…`` until no ``next_cursor``)
into a JSON-lines file beside the output, ``<name>.audience-YYYY-MM-DD.jsonl``, which then *is* the run's segment:
the same exact identity rules as any file apply (placeholders skipped and reported, duplicates once, byte-exact:
numbers are kept as CleverTap wrote them), and the same segment-update logic (the journal publishes only to
new members on the next day's run).  A 429 or a transient failure while paging is retried with backoff; a cursor
CleverTap no longer knows restarts the query from the start.  Pages go to a temporary file that is renamed only
when the last page has arrived, so a broken paging run never leaves a partial audience behind: running the same
command again simply asks again.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from datetime import date, timedelta
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio

from . import outputs
from .clevertap import (
    CleverTapAuthError,
    CleverTapClient,
    CleverTapRefused,
    CleverTapTransient,
    describe_target,
)
from .errors import ConfigError, StopRun
from .pacing.retry import backoff
from .push import connect

if TYPE_CHECKING:
    from .config import JobConfig

log = logging.getLogger("distributor")

#: Records per page (CleverTap allows at most 5000).
BATCH_SIZE = 5000
_PAGE_ATTEMPTS = 8
_RESTARTS = 3
_RELATIVE = re.compile(r"^\s*(today|yesterday|(\d+)\s+days?\s+ago)\s*$", re.IGNORECASE)


def read_query(path: Path, *, today: date | None = None) -> dict[str, Any]:
    """The query file with its relative dates resolved.  Raises :class:`ConfigError` naming the file."""
    try:
        query = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"clevertap_query {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"clevertap_query {path} cannot be read: {error}") from None
    except json.JSONDecodeError as error:
        raise ConfigError(
            f"clevertap_query {path} is not valid JSON: line {error.lineno} column {error.colno}: {error.msg}"
        ) from None
    if not isinstance(query, dict):
        raise ConfigError(f"clevertap_query {path} must hold one JSON object (CleverTap's query)")
    resolved = _resolve_dates(query, today or date.today())
    assert isinstance(resolved, dict)
    return resolved


def _resolve_dates(value: Any, today: date) -> Any:
    if isinstance(value, Mapping):
        return {key: _resolve_dates(item, today) for key, item in value.items()}
    if isinstance(value, list):
        return [_resolve_dates(item, today) for item in value]
    if isinstance(value, str):
        found = _RELATIVE.match(value)
        if found is not None:
            word = found.group(1).lower()
            days = 0 if word == "today" else 1 if word == "yesterday" else int(found.group(2))
            return int((today - timedelta(days=days)).strftime("%Y%m%d"))
    return value


def fetch_audience(config: JobConfig, *, today: date | None = None) -> JobConfig:
    """Page the query's members into ``config.segment`` (``<name>.audience-YYYY-MM-DD.jsonl``, see
    ``JobConfig.layout.audience()``) and return ``config`` (the file then is the run's segment)."""
    assert config.clevertap_query is not None
    if config.clevertap is None:
        raise ConfigError("clevertap_query needs --clevertap: the account's region (eu1, in1, …), a URL or 'sandbox'")
    query = read_query(Path(config.clevertap_query), today=today)
    path = config.layout.audience()
    count = anyio.run(lambda: _fetch(config, query, path), backend="asyncio")
    log.info("audience: %d profiles from CleverTap's query %s into %s", count, config.clevertap_query, path)
    return config


async def _fetch(config: JobConfig, query: dict[str, Any], path: Path) -> int:
    where = describe_target(config.clevertap or "")
    async with connect(config) as client:
        for restart in range(_RESTARTS + 1):
            try:
                return await _page_into(client, query, path, Path(config.clevertap_query or ""))
            except _CursorLost:
                log.warning(
                    "CleverTap no longer knows the query's cursor: asking again from the start (%d)", restart + 1
                )
        raise StopRun(
            f"CleverTap at {where} kept losing the profiles query's cursor; run the same command again later",
            reason="clevertap_unreachable",
        )


class _CursorLost(Exception):
    pass


async def _page_into(client: CleverTapClient, query: dict[str, Any], path: Path, source: Path) -> int:
    count = 0
    with outputs.atomic_write(path) as handle:
        try:
            cursor: str | None = await _retrying(lambda: client.start_query(query, BATCH_SIZE), "starting the query")
        except CleverTapRefused as error:
            raise ConfigError(f"CleverTap refused the query in {source}: {error.message}") from None
        while cursor is not None:
            current = cursor
            try:
                records, cursor = await _retrying(partial(client.page, current), "reading a page")
            except CleverTapRefused as error:
                raise _CursorLost() from error
            for record in records:
                handle.write(json.dumps({"identity": record.get("identity", "")}, ensure_ascii=False) + "\n")
                count += 1
    return count


async def _retrying(call: Any, doing: str) -> Any:
    for attempt in range(1, _PAGE_ATTEMPTS + 1):
        try:
            return await call()
        except CleverTapAuthError as error:
            raise StopRun(
                f"CleverTap refused the account id or passcode while {doing} (HTTP {error.status}): check "
                "CLEVERTAP_ACCOUNT_ID, CLEVERTAP_PASSCODE and --clevertap",
                reason="clevertap_unauthorized",
            ) from None
        except CleverTapTransient as error:
            if attempt == _PAGE_ATTEMPTS:
                raise StopRun(
                    f"CleverTap does not answer while {doing} ({error.message}); nothing was published: run "
                    "the same command again later",
                    reason="clevertap_unreachable",
                ) from None
            await anyio.sleep(backoff(attempt, base=0.5, cap=30.0))
    raise AssertionError("unreachable")

"""``--api-url sandbox``: the stand-in served in-process (a loopback server in a background thread).

The job file's ``[sandbox]`` table (and the ``distributor sandbox`` command's options) set how it behaves::

    [sandbox]
    rate_limit = "600/min"      # the plan the stand-in enforces (default: the job's own rate_limit)
    latency = "60ms"            # median latency
    latency_p99 = "400ms"       # long tail
    error_rate = 0.03           # 5xx before commit
    lost_answer_rate = 0.02     # committed, then the connection drops
    strict_source_id = false    # true: any reused source_id answers 400 duplicate_source_id
    background_rate = "60/min"  # the shop's own calls on the same quota
    background_since = "1min"   # ... which were already going when the sandbox started
    cycle_quota = 100000        # billing-cycle quota
    seed = 7
    campaigns = "campaigns.toml"  # [[campaign]] tables; default: the demo campaigns
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
from starlette.applications import Starlette

from ..clevertap import CleverTapCredentials
from ..credentials import Credentials
from ..errors import ConfigError
from ..jobfile import BASE, CLEVERTAP_TABLE, SANDBOX_OPTIONS, refuse_unknown, sandbox_where
from .campaigns import load_campaigns
from .clevertap import CleverTapConfig, CleverTapDropped, CleverTapWorld, clevertap_routes
from .model import DEMO_APP_ID, DEMO_APP_TOKEN, SandboxConfig
from .server import SandboxServer
from .world import Sandbox

if TYPE_CHECKING:
    from ..config import JobConfig

log = logging.getLogger("distributor")

#: The ``[sandbox]`` table's options (named in the job file's schema, :mod:`distributor.jobfile`).
OPTIONS = SANDBOX_OPTIONS


def sandbox_config(options: Mapping[str, Any], *, base: Path | None = None, where: str = "[sandbox]") -> SandboxConfig:
    """Build a :class:`SandboxConfig` from ``[sandbox]`` options (text units such as ``"150ms"``, ``"100/min"``)."""
    # "clevertap" is the [sandbox.clevertap] table: the CleverTap stand-in's own options (embedded_clevertap)
    values = {k.replace("-", "_"): v for k, v in options.items() if k not in (BASE, CLEVERTAP_TABLE) and v is not None}
    refuse_unknown(set(values), set(OPTIONS), f" in {where}")
    campaigns = values.pop("campaigns", None)
    if campaigns is not None:
        path = Path(campaigns)
        values["campaigns"] = load_campaigns(path if path.is_absolute() or base is None else base / path)
    if "latency" in values:
        values["latency_median"] = values.pop("latency")
    for name in ("rate_limit", "background_rate"):
        if name in values:
            values[name] = str(values[name])
    try:
        return SandboxConfig.parse(**values)
    except TypeError as error:
        raise ConfigError(f"{where}: {error}") from None


def check_tables(config: JobConfig) -> None:
    """The job file's ``[sandbox]`` table (when the run uses the embedded Voucherify) and ``[sandbox.clevertap]``
    read as the stand-ins will read them, so that a wrong value is refused before the segment is read."""
    if config.uses_sandbox:
        _stand_in_config(config)
    table = config.sandbox.get(CLEVERTAP_TABLE)
    if table is not None:
        clevertap_config(table, where=sandbox_where(config.job_file, "sandbox.clevertap"))


def _stand_in_config(config: JobConfig) -> SandboxConfig:
    options = dict(config.sandbox)
    options.setdefault("rate_limit", str(config.rate_limit))
    base = options.pop(BASE, None)
    return sandbox_config(options, base=base, where=sandbox_where(config.job_file))


def clevertap_config(table: object, *, where: str = "[sandbox.clevertap]") -> CleverTapConfig:
    """The CleverTap stand-in's settings from a ``[sandbox.clevertap]`` table."""
    if not isinstance(table, Mapping):
        raise ConfigError(f"{where} must be a table")
    try:
        return CleverTapConfig.parse(table)
    except TypeError as error:
        raise ConfigError(f"{where}: {error}") from None


@contextmanager
def embedded_sandbox(config: JobConfig) -> Iterator[tuple[str, Credentials, Sandbox]]:
    """Serve the stand-in for one run; yields its URL, the keys it accepts, and its state."""
    with SandboxServer(_stand_in_config(config)) as server:
        yield server.url, Credentials(DEMO_APP_ID, DEMO_APP_TOKEN), server.sandbox


@contextmanager
def embedded_clevertap(
    table: Mapping[str, Any] | None, *, where: str = "[sandbox.clevertap]"
) -> Iterator[tuple[str, CleverTapCredentials, httpx.AsyncBaseTransport]]:
    """``--clevertap sandbox``: the CleverTap stand-in for one run, in-process (an ASGI transport: no socket, and
    its latency runs on the run's own clock), as set by the job file's ``[sandbox.clevertap]`` table (``latency``,
    ``error_rate``, ``lost_answer_rate``, ``record_failure_rate``, ``query_error_rate``, ``max_records``,
    ``max_concurrent``, ``refused_identities``, ``seed``).  Yields a base URL, the account it accepts and the
    transport.  At the end it logs what it holds, as the demo shows."""
    world = CleverTapWorld(clevertap_config(table if table is not None else {}, where=where))
    transport = _InProcess(app=Starlette(routes=clevertap_routes(world)))
    yield "http://clevertap.sandbox", CleverTapCredentials(world.config.account_id, world.config.passcode), transport
    log.info(
        "CleverTap sandbox now holds %d profiles; %d uploads, %d records received",
        len(world.profiles), world.counts["uploads"], world.counts["records"],
    )
    for (key, identity), properties in list(world.profiles.items())[:3]:
        log.info("  CleverTap profile %s=%s: %s", key, identity, properties)


class _InProcess(httpx.ASGITransport):
    """The stand-in's deliberately lost answers reach the client as a dropped connection, as over a socket."""

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        try:
            return await super().handle_async_request(request)
        except CleverTapDropped as error:
            raise httpx.RemoteProtocolError(str(error), request=request) from None

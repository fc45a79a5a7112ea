"""Reaching CleverTap: the real API at ``--clevertap`` (a region or a URL) or the in-process stand-in
(``sandbox``), its credentials proven by one cheap call before anything is published."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import anyio

from ..clevertap import (
    SANDBOX,
    CleverTapAuthError,
    CleverTapClient,
    CleverTapCredentials,
    CleverTapError,
    CleverTapTransient,
    describe_target,
    resolve_url,
)
from ..errors import ConfigError, StopRun
from ..pacing.retry import backoff
from .settings import PushSettings

_BACKOFF_BASE = 0.5
#: Attempts of the credentials check before CleverTap counts as unreachable.
_CHECK_ATTEMPTS = 4


@asynccontextmanager
async def connect(config: PushSettings, *, transport: Any = None) -> AsyncIterator[CleverTapClient]:
    """A client for ``config.clevertap`` (the embedded stand-in for ``sandbox``), its credentials proven by one
    cheap call: raises :class:`StopRun` (exit 3) naming the region when CleverTap refuses them."""
    assert config.clevertap is not None
    with _target(config) as (url, credentials, embedded):
        async with CleverTapClient(
            url,
            credentials,
            timeout=config.timeout,
            max_connections=config.clevertap_concurrency + 2,
            transport=transport or embedded,
        ) as client:
            await _check_credentials(client, config.clevertap, credentials)
            yield client


@contextmanager
def _target(config: PushSettings) -> Iterator[tuple[str, CleverTapCredentials, Any]]:
    """The base URL, the credentials, and (``sandbox``) the in-process transport of the stand-in."""
    assert config.clevertap is not None
    if resolve_url(config.clevertap) != SANDBOX:
        if config.clevertap_credentials is None:
            raise ConfigError(
                "no CleverTap credentials: set CLEVERTAP_ACCOUNT_ID and CLEVERTAP_PASSCODE in the environment "
                "(Settings → Project in CleverTap)"
            )
        yield resolve_url(config.clevertap), config.clevertap_credentials, None
        return
    from ..sandbox import embedded_clevertap

    with embedded_clevertap(config.sandbox.get("clevertap")) as target:
        yield target


async def _check_credentials(client: CleverTapClient, target: str, credentials: CleverTapCredentials) -> None:
    where = describe_target(target)
    for attempt in range(1, _CHECK_ATTEMPTS + 1):
        try:
            await client.check_credentials()
            return
        except CleverTapAuthError as error:
            raise StopRun(
                f"CleverTap refused account {credentials.account_id} with this passcode at {where} "
                f"(HTTP {error.status}): check CLEVERTAP_ACCOUNT_ID, CLEVERTAP_PASSCODE and --clevertap; "
                "nothing was published",
                reason="clevertap_unauthorized",
            ) from None
        except CleverTapTransient as error:
            if attempt == _CHECK_ATTEMPTS:
                raise StopRun(
                    f"CleverTap at {where} does not answer ({error.message}); nothing was published: "
                    "run the same command again later",
                    reason="clevertap_unreachable",
                ) from None
            await anyio.sleep(backoff(attempt, base=_BACKOFF_BASE, cap=5.0))
        except CleverTapError as error:
            raise StopRun(
                f"CleverTap at {where} refused the credentials check: {error.message}", reason="clevertap_refused"
            ) from None

"""The calls ``plan`` makes to prove what a run would meet: ``GET /v1/campaigns/{id}`` (once, twice only after no
answer or a 5xx), and with ``--clevertap`` the one cheap authenticated CleverTap call a run makes first.  Each
answer becomes :class:`~.plan.Finding` s; no Voucherify quota is spent on CleverTap's."""

from __future__ import annotations

import anyio
import httpx

from ..config import JobConfig
from ..credentials import Credentials
from ..errors import StopRun
from ..pacing.retry import Action, decide
from ..target import voucherify_target
from ..voucherify import ApiError, Campaign, TransportError, VoucherifyClient
from .plan import NOTE, PROBLEM, WARNING, Finding

#: Seconds before the second (and last) attempt of the campaign check after no answer or a 5xx.
_SECOND_ATTEMPT_AFTER = 1.0


async def check_campaign(
    config: JobConfig, transport: httpx.AsyncBaseTransport | None
) -> tuple[Campaign | None, int, list[Finding]]:
    """``GET /v1/campaigns/{id}``, a second time only after no answer or a 5xx.  Returns the campaign (or
    ``None``), the calls made, and what the answers mean for a run."""
    with voucherify_target(config) as target:
        return await _ask(config, target.url, target.credentials, transport)


async def _ask(
    config: JobConfig, url: str, credentials: Credentials, transport: httpx.AsyncBaseTransport | None
) -> tuple[Campaign | None, int, list[Finding]]:
    calls = 0
    async with VoucherifyClient(
        url, credentials, timeout=config.timeout, max_connections=2, transport=transport
    ) as api:
        for attempt in (1, 2):
            calls += 1
            try:
                return await api.get_campaign(config.campaign), calls, []
            except (ApiError, TransportError) as error:
                decision = decide(error, campaign=config.campaign)
                if decision.action is Action.RETRY and decision.reason != "rate_limited" and attempt == 1:
                    await anyio.sleep(_SECOND_ATTEMPT_AFTER)
                    continue
                return None, calls, [_refusal(decision.action, decision.reason, decision.message, error)]
    raise AssertionError("unreachable")  # pragma: no cover


def _refusal(action: Action, reason: str, message: str, error: Exception) -> Finding:
    if action is Action.STOP and reason == "forbidden":
        return Finding(
            WARNING, "campaign_unchecked",
            f"{message}; a run skips this check too, and publishing may still be allowed",
        )
    if action is Action.STOP:
        return Finding(PROBLEM, reason, message)
    if action is Action.RETRY and reason == "rate_limited":
        return Finding(
            WARNING, "campaign_unchecked",
            "Voucherify answered 429: the project's rate limit is used up right now (by the shop or another job); "
            "the campaign was not checked. A run would wait its turn",
        )
    if action is Action.RETRY and reason in ("timeout", "connection"):
        return Finding(
            PROBLEM, "unreachable",
            f"Voucherify could not be reached ({error}): neither the keys, the region nor the campaign were proved; "
            "check --api-url and the network, then plan again",
        )
    if action is Action.RETRY:
        return Finding(
            WARNING, "campaign_unchecked",
            f"no usable answer from Voucherify ({error}): the campaign was not checked. A run retries for a minute "
            "before it gives up",
        )
    # any other refusal of the campaign call stops a run at once
    return Finding(PROBLEM, "refused", f"Voucherify refused the campaign check: {error}")


def check_clevertap(config: JobConfig) -> list[Finding]:
    """``--clevertap``: the one cheap authenticated call a run makes before publishing, so that wrong CleverTap
    credentials or region show here (exit 3) rather than at 3 a.m.  No Voucherify quota is spent."""
    from ..push import connect

    async def prove() -> None:
        async with connect(config):
            pass

    try:
        anyio.run(prove, backend="asyncio")
    except StopRun as refused:
        return [Finding(PROBLEM, "clevertap_refused", str(refused))]
    return [Finding(NOTE, "clevertap", f"CleverTap accepted the account and passcode ({config.clevertap})")]

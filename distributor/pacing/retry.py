"""What to do about a failed call: retry it, look the publication up, fail the member, or stop the whole job.

The rules (Voucherify's API reference, *Errors*):

* **retry** (same publication ``source_id``): no answer at all (timeout, connection refused or dropped), 5xx,
  408, and 429 from the per-minute/hour limit — the throttle also pauses every call until the server's hint;
  none of these ever makes a member ``failed``: the engine waits, or stops the run resumably;
* **look up** the publication by ``source_id``: ``400 duplicate_source_id`` — never publish again under a new id;
* **stop the job**, because every further call would fail too: 401 (keys or region), 402 (plan), 403 (keys
  without the right), 404 on the campaign, ``no_voucher_suitable_for_publication`` (campaign out of codes), and
  429 ``api_calls_cycle`` (billing-cycle quota spent), a 429 asking for a pause longer than ``max_pause`` (the
  job says when to resume instead of sleeping silently for hours), and any 3xx (a redirect dooms every call:
  probably a wrong ``--api-url``; the client never follows one, it would re-send a POST elsewhere);
* **fail the member** (recorded with Voucherify's ``key``, ``message`` and ``request_id``): any other 4xx.

Waits between attempts are capped exponential backoff with full jitter (AWS Architecture blog,
"Exponential Backoff And Jitter"): ``uniform(0, min(cap, base * 2**attempt))``.

Tests switch the waits off, or make their jitter repeatable, with :func:`backoff_testing` (in the spirit of
stamina's testing mode): ``with backoff_testing():`` every :func:`backoff` is 0 s;
``with backoff_testing(waits=True, seed=1):`` the waits stay but their jitter comes from ``random.Random(1)``,
the same draws on every run.
"""

from __future__ import annotations

import enum
import random
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from ..units import format_duration
from ..voucherify.models import ApiError, TransportError


class Action(enum.Enum):
    RETRY = "retry"
    LOOKUP = "lookup"
    FAIL_MEMBER = "fail_member"
    STOP = "stop"


@dataclass(frozen=True)
class Decision:
    action: Action
    #: a short word for counters and the summary: ``timeout``, ``server_error``, ``rate_limited``, ``unauthorized``…
    reason: str
    #: for STOP: the one line shown to the user, naming the cause and what to do
    message: str = ""
    #: Unix time before which no call should be made (the server's ``X-Rate-Limit-Retry`` / ``Retry-After``)
    not_before: float | None = None


TRANSIENT_STATUSES = frozenset({408, 425, 500, 502, 503, 504})
#: The longest pause a server's 429 may impose before the run stops instead (``--max-pause``), in seconds.
DEFAULT_MAX_PAUSE = 900.0


def decide(
    error: ApiError | TransportError,
    *,
    campaign: str,
    now: float | None = None,
    max_pause: float = DEFAULT_MAX_PAUSE,
) -> Decision:
    """Classify one failed call to ``POST /v1/publications`` (or a look-up) of ``campaign``."""
    now = time.time() if now is None else now
    if isinstance(error, TransportError):
        return Decision(Action.RETRY, "timeout" if error.kind == "timeout" else "connection")

    status, key = error.status, error.key
    if 300 <= status < 400:
        where = f" to {error.location}" if error.location else ""
        return Decision(
            Action.STOP,
            "redirected",
            f"Voucherify answered {error.endpoint} with a redirect ({status}{where}): every call would be "
            "redirected; check --api-url (your region's host, e.g. https://api.voucherify.io, without a path)",
        )
    if status == 429:
        hint = error.rate.wait_until(now)
        if hint is not None and hint - now > max_pause and error.rate.limit_type != "api_calls_cycle":
            return Decision(
                Action.STOP,
                "long_pause",
                f"Voucherify asks to pause {format_duration(hint - now)} "
                f"(429 {error.rate.limit_type or 'rate limited'}), "
                f"longer than --max-pause {format_duration(max_pause)}: run the same command again after "
                f"{_local_time(hint)} to resume",
                not_before=hint,
            )
        if error.rate.limit_type == "api_calls_cycle":
            when = f", which starts {_local_time(hint)}" if hint else ""
            return Decision(
                Action.STOP,
                "quota_spent",
                "Voucherify's API-call quota for this billing cycle is spent (429 api_calls_cycle): nothing more "
                f"can be published until the next cycle{when}; run the same command again then, or raise the quota",
                not_before=hint,
            )
        return Decision(Action.RETRY, "rate_limited", not_before=hint)
    if status in TRANSIENT_STATUSES or status >= 500:
        return Decision(Action.RETRY, "server_error")
    if status == 401:
        return Decision(
            Action.STOP,
            "unauthorized",
            "Voucherify refused the keys (401 unauthorized): check VOUCHERIFY_APP_ID and VOUCHERIFY_APP_TOKEN "
            "(server-side keys) and that --api-url is your project's region (api.voucherify.io in Europe, "
            "us1.api.voucherify.io in the US, as1.api.voucherify.io in Asia)",
        )
    if status == 402:
        return Decision(
            Action.STOP,
            "plan_exceeded",
            f"Voucherify says the request exceeds your pricing plan (402): {error.description}",
        )
    if status == 403:
        return Decision(
            Action.STOP,
            "forbidden",
            f"Voucherify forbids this call (403 {key or 'forbidden'}: {error.description}): use server-side keys "
            "whose role may publish codes",
        )
    if status == 404 and error.resource_type in (None, "campaign"):
        return Decision(
            Action.STOP,
            "unknown_campaign",
            f"campaign {campaign!r} does not exist in this Voucherify project (404 {key or 'not_found'}): check "
            "--campaign (its name or camp_… id), the keys' project and the region in --api-url",
        )
    if key == "no_voucher_suitable_for_publication":
        return Decision(
            Action.STOP,
            "out_of_codes",
            f"campaign {campaign!r} has no code left to publish (400 no_voucher_suitable_for_publication): add "
            "codes to the campaign (or make it generate them, AUTO_UPDATE), then run the same command again",
        )
    if key == "duplicate_source_id":
        return Decision(Action.LOOKUP, "duplicate_source_id")
    return Decision(Action.FAIL_MEMBER, key or f"http_{status}")


def backoff(attempt: int, *, base: float = 0.5, cap: float = 30.0, rng: random.Random | None = None) -> float:
    """Seconds to wait before attempt ``attempt + 1`` (``attempt`` ≥ 1 failed already): full jitter.

    Under :func:`backoff_testing`: 0 s, or (``waits=True``) a draw from the testing mode's seeded generator
    unless the caller passed its own ``rng``.
    """
    ceiling = min(cap, base * 2 ** max(0, attempt - 1))
    mode = _testing
    if mode is not None:
        if not mode.waits:
            return 0.0
        rng = rng or mode.rng
    return (rng or random).uniform(0.0, ceiling)


@dataclass(frozen=True)
class _TestingMode:
    waits: bool
    rng: random.Random


_testing: _TestingMode | None = None


def set_testing(active: bool, *, waits: bool = False, seed: int = 0) -> None:
    """Turn the testing mode on or off for the whole process (see :func:`backoff_testing`)."""
    global _testing
    _testing = _TestingMode(waits, random.Random(seed)) if active else None


def is_testing() -> bool:
    """Whether the testing mode is on."""
    return _testing is not None


@contextmanager
def backoff_testing(*, waits: bool = False, seed: int = 0) -> Iterator[None]:
    """Backoff for tests, for the duration of the block: no waits at all, or (``waits=True``) waits whose jitter
    comes from ``random.Random(seed)`` — the same figures on every run.  The previous mode is restored after."""
    global _testing
    previous = _testing
    set_testing(True, waits=waits, seed=seed)
    try:
        yield
    finally:
        _testing = previous


def _local_time(unix: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M %Z", time.localtime(unix))

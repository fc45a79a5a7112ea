"""What Voucherify says, as data: rate-limit headers, errors, publications and campaigns.

The bottom of the ``voucherify`` package: no HTTP here, so the pacing layer (``pacing.throttle``,
``pacing.retry``) reads these types without importing the client.
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Mapping
from dataclasses import dataclass

#: Rate-limit hints further away than this are not Unix times in seconds (a billing cycle is at most a month).
_LONGEST_PLAUSIBLE_HINT = 40 * 86400.0
#: No Voucherify plan allows more calls than this per window.
_LARGEST_PLAUSIBLE_LIMIT = 10_000_000


@dataclass(frozen=True)
class RateLimitHeaders:
    """Voucherify's rate-limit headers of one answer (``X-Rate-Limit-…``, note the hyphen), all optional."""

    limit: int | None = None
    remaining: int | None = None
    #: Unix time at which the next call may be made (``X-Rate-Limit-Retry``).
    retry_at: float | None = None
    #: Seconds to wait (``Retry-After``), sent once a limit is hit.
    retry_after: float | None = None
    #: Which limit was hit: ``api_calls``, ``bulk_api_calls``, ``api_calls_cycle``, ``webhook_calls``.
    limit_type: str | None = None

    @classmethod
    def from_headers(cls, headers: Mapping[str, str], now: float | None = None) -> RateLimitHeaders:
        return cls(
            limit=int_header(headers.get("x-rate-limit-limit")),
            remaining=int_header(headers.get("x-rate-limit-remaining")),
            retry_at=float_header(headers.get("x-rate-limit-retry")),
            retry_after=_retry_after(headers.get("retry-after"), now),
            limit_type=(headers.get("x-rate-limit-type") or None),
        )

    def plausible(self, now: float) -> tuple[RateLimitHeaders, list[str]]:
        """These headers without the values that cannot be true, and what was wrong with them (``now``: Unix time).

        A retry time that is not a Unix time in seconds (e.g. milliseconds), a ``Retry-After`` beyond a billing
        cycle, a limit of zero or of millions, more calls remaining than the limit: treated as absent.
        """
        problems: list[str] = []
        limit, remaining, retry_at, retry_after = self.limit, self.remaining, self.retry_at, self.retry_after
        if limit is not None and not 0 < limit <= _LARGEST_PLAUSIBLE_LIMIT:
            problems.append(f"X-Rate-Limit-Limit {limit} is not a plausible limit")
            limit = remaining = None
        if remaining is not None and (remaining < 0 or (limit is not None and remaining > limit)):
            problems.append(f"X-Rate-Limit-Remaining {remaining} is not between 0 and the limit {limit}")
            limit = remaining = None
        if retry_at is not None and not now - 86400.0 <= retry_at <= now + _LONGEST_PLAUSIBLE_HINT:
            problems.append(f"X-Rate-Limit-Retry {retry_at:g} is not a Unix time in seconds near now")
            retry_at = None
        if retry_after is not None and retry_after > _LONGEST_PLAUSIBLE_HINT:
            problems.append(f"Retry-After {retry_after:g}s is not a plausible wait")
            retry_after = None
        if not problems:
            return self, []
        clean = RateLimitHeaders(limit, remaining, retry_at, retry_after, self.limit_type)
        return clean, problems

    def wait_until(self, now: float) -> float | None:
        """The later of the two hints, as a Unix time, or ``None`` when the answer gave neither."""
        hints = [t for t in (self.retry_at, None if self.retry_after is None else now + self.retry_after) if t]
        return max(hints) if hints else None


class ApiError(Exception):
    """Voucherify answered with an error status.  Carries its ``key``, ``message`` and ``request_id``."""

    def __init__(
        self,
        status: int,
        *,
        key: str | None,
        message: str,
        details: str | None = None,
        request_id: str | None = None,
        resource_type: str | None = None,
        rate: RateLimitHeaders = RateLimitHeaders(),
        endpoint: str = "",
        location: str | None = None,
    ) -> None:
        super().__init__(f"{endpoint} → {status} {key or ''}: {message}".strip())
        self.status = status
        self.key = key
        self.message = message
        self.details = details
        self.request_id = request_id
        self.resource_type = resource_type
        self.rate = rate
        self.endpoint = endpoint
        #: where a 3xx answer points (``Location``)
        self.location = location

    @property
    def description(self) -> str:
        """``message`` and ``details`` in one line, for reports."""
        if self.details and self.details != self.message:
            return f"{self.message}: {self.details}"
        return self.message


class TransportError(Exception):
    """No usable answer: timeout, connection refused or dropped, or a body that is not what was promised.

    The request may or may not have reached Voucherify and been committed.
    """

    def __init__(self, kind: str, detail: str, *, endpoint: str = "") -> None:
        super().__init__(f"{endpoint}: {kind}: {detail}" if endpoint else f"{kind}: {detail}")
        self.kind = kind
        self.detail = detail
        self.endpoint = endpoint


@dataclass(frozen=True)
class Publication:
    id: str | None
    code: str
    source_id: str | None
    customer_source_id: str | None
    campaign: str | None
    campaign_id: str | None
    #: the voucher's ``expiration_date`` (ISO 8601), when it has one (h7-clevertap: ``--expiry-property``)
    expiration_date: str | None = None


@dataclass(frozen=True)
class Campaign:
    id: str
    name: str
    type: str | None
    campaign_type: str | None
    join_once: bool
    active: bool | None
    vouchers_count: int | None
    start_date: str | None
    expiration_date: str | None


def int_header(value: str | None) -> int | None:
    """A header's integer (``"12.0"`` too), or ``None`` when it is absent or not a number."""
    try:
        return int(float(value)) if value not in (None, "") else None
    except ValueError:
        return None


def float_header(value: str | None) -> float | None:
    """A header's number, or ``None`` when it is absent or not a number."""
    try:
        return float(value) if value not in (None, "") else None
    except ValueError:
        return None


def _retry_after(value: str | None, now: float | None) -> float | None:
    """``Retry-After`` is seconds or an HTTP date (RFC 9110)."""
    if not value:
        return None
    seconds = float_header(value)
    if seconds is not None:
        return max(0.0, seconds)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))

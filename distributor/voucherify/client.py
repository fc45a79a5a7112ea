"""A small asynchronous client for the three Voucherify endpoints the distributor calls.

* ``POST /v1/publications`` — publish one code of a campaign to one customer, under our idempotent ``source_id``;
* ``GET /v1/publications?source_id=`` — find the publication made under a ``source_id`` (a lost answer's code);
* ``GET /v1/campaigns/{id}`` — the campaign, for the pre-flight check.

Every answer's ``X-Rate-Limit-*`` headers are handed to an observer (the throttle), whatever the status.  Failures
are raised as :class:`ApiError` (Voucherify answered with an error status) or :class:`TransportError` (no usable
answer: timeout, connection refused or dropped, garbled body).  Nothing here retries: that is policy
(``pacing/retry.py``), applied by the run.  The app token is sent in a header and appears nowhere else: not in
exceptions, not in ``repr``, not in logs — and a server that echoes it in an error is redacted here, at the
boundary, before anything else sees the text.

A misbehaving server cannot hang the job or exhaust its memory: ``timeout`` is the deadline of the *whole* call
(connect, send, headers and body), not of each read, so a body trickled a byte at a time times out; a body longer
than ``max_body`` bytes (after decompression) is abandoned while streaming.  Rate-limit headers that cannot be
true (a retry time in milliseconds, more remaining calls than the limit, absurd values) are treated as absent,
with one warning per kind of nonsense.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import quote

import httpx

from .._version import __version__
from ..credentials import Credentials
from ..exchange import NoCompleteAnswer, Session
from .models import ApiError, Campaign, Publication, RateLimitHeaders, TransportError

API_VERSION = "v2018-08-01"
#: The largest answer read (decompressed); a publication is a few kB, a list of ten a few tens of kB.
MAX_BODY_BYTES = 4 * 1024 * 1024
#: What a secret echoed by the server is replaced with.
REDACTED = "***"
log = logging.getLogger("distributor")


#: Called with every answer: its rate-limit headers, its status, when it was sent and how long it took (loop time).
RateObserver = Callable[[RateLimitHeaders, int, float, float], None]


class VoucherifyClient:
    """One keep-alive connection pool to Voucherify.  Use as ``async with VoucherifyClient(...) as client``."""

    def __init__(
        self,
        base_url: str,
        credentials: Credentials,
        *,
        timeout: float = 30.0,
        max_connections: int = 100,
        observer: RateObserver | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        max_body: int = MAX_BODY_BYTES,
    ) -> None:
        self._observer = observer
        self._deadline = timeout
        self._max_body = max_body
        self._secrets = tuple(secret for secret in (credentials.app_token,) if secret)
        self._warned: set[str] = set()
        self._session = Session(
            base_url,
            {
                "X-App-Id": credentials.app_id,
                "X-App-Token": credentials.app_token,
                "X-Voucherify-API-Version": API_VERSION,
                "User-Agent": f"distributor/{__version__}",
                "Accept": "application/json",
            },
            # pool: waiting for a free connection is our own doing, never the server's; keep it short and visible
            timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0), pool=timeout),
            max_connections=max_connections,
            transport=transport,
        )

    async def __aenter__(self) -> VoucherifyClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._session.aclose()

    def __repr__(self) -> str:
        return f"VoucherifyClient({str(self._session.base_url)!r})"

    # ------------------------------------------------------------------ endpoints
    async def publish(
        self,
        *,
        campaign: str,
        customer_source_id: str,
        source_id: str,
        join_once: bool = False,
        metadata: Mapping[str, Any] | None = None,
    ) -> Publication:
        """Publish one code of ``campaign`` to the customer; the same ``source_id`` gets the same code back."""
        body: dict[str, Any] = {
            "campaign": {"name": campaign},
            "customer": {"source_id": customer_source_id},
            "source_id": source_id,
        }
        if metadata:
            body["metadata"] = dict(metadata)
        params = {"join_once": "true"} if join_once else None
        data = await self._call("POST", "/v1/publications", json=body, params=params)
        return _publication(data, "POST /v1/publications")

    async def find_publication(self, source_id: str) -> Publication | None:
        """The publication made under ``source_id``, or ``None`` if Voucherify has none."""
        data = await self._call("GET", "/v1/publications", params={"source_id": source_id, "limit": "10"})
        items = data.get("publications") if isinstance(data, dict) else None
        if not isinstance(items, list):
            raise TransportError("unexpected body", "no publications list", endpoint="GET /v1/publications")
        for item in items:
            if (
                isinstance(item, dict)
                and item.get("source_id") == source_id
                and item.get("result", "SUCCESS") == "SUCCESS"
            ):
                return _publication(item, "GET /v1/publications")
        return None

    async def get_campaign(self, campaign: str) -> Campaign:
        data = await self._call("GET", f"/v1/campaigns/{quote(campaign, safe='')}")
        if not isinstance(data, dict) or not data.get("id"):
            raise TransportError("unexpected body", "campaign without id", endpoint="GET /v1/campaigns")
        return Campaign(
            id=str(data["id"]),
            name=str(data.get("name") or data["id"]),
            type=data.get("type"),
            campaign_type=data.get("campaign_type"),
            join_once=bool(data.get("join_once")),
            active=data.get("active"),
            vouchers_count=data.get("vouchers_count"),
            start_date=data.get("start_date"),
            expiration_date=data.get("expiration_date"),
        )

    # ------------------------------------------------------------------ plumbing
    async def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        endpoint = f"{method} {path.split('?')[0]}"
        try:
            return await self._call_within_deadline(method, path, endpoint, **kwargs)
        except (ApiError, TransportError) as error:
            raise self._redacted(error) from None

    async def _call_within_deadline(self, method: str, path: str, endpoint: str, **kwargs: Any) -> Any:
        """One request, whose whole exchange (connect, send, headers, body) must end within the deadline."""
        clock = asyncio.get_running_loop().time  # anyio.current_time() on asyncio, a tenth of its cost
        sent_at = clock()

        def observe(response: httpx.Response) -> None:
            if self._observer is not None:
                took = clock() - sent_at
                self._observer(self._rate_of(response), response.status_code, sent_at, took)

        try:
            response, content = await self._session.exchange(
                method, path, deadline=self._deadline, max_body=self._max_body, on_headers=observe, **kwargs
            )
        except NoCompleteAnswer as failure:
            raise TransportError(failure.kind, failure.detail, endpoint=endpoint) from None
        body = _json_or_none(content)
        if response.is_success:
            if body is None:
                raise TransportError("unexpected body", f"HTTP {response.status_code} without JSON", endpoint=endpoint)
            return body
        raise _api_error(response, body, self._rate_of(response), endpoint)

    def _rate_of(self, response: httpx.Response) -> RateLimitHeaders:
        """The answer's rate-limit headers, without the implausible ones (one warning per kind of nonsense)."""
        rate, problems = RateLimitHeaders.from_headers(_lowercase(response.headers), now=time.time()).plausible(
            time.time()
        )
        for problem in problems:
            kind = problem.split(" ", 1)[0]
            if kind not in self._warned:
                self._warned.add(kind)
                log.warning("ignoring an implausible rate-limit header: %s", self._redact(problem))
        return rate

    def _redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, REDACTED)
        return text

    def _redacted(self, error: ApiError | TransportError) -> ApiError | TransportError:
        """The same error with every secret the server may have echoed replaced by ``***``."""
        if not self._secrets:
            return error
        if isinstance(error, TransportError):
            return TransportError(error.kind, self._redact(error.detail), endpoint=self._redact(error.endpoint))
        text = self._redact_or_none
        return ApiError(
            error.status,
            key=text(error.key),
            message=self._redact(error.message),
            details=text(error.details),
            request_id=text(error.request_id),
            resource_type=text(error.resource_type),
            rate=error.rate,
            endpoint=error.endpoint,
            location=text(error.location),
        )

    def _redact_or_none(self, text: str | None) -> str | None:
        return None if text is None else self._redact(text)


def _api_error(response: httpx.Response, body: Any, rate: RateLimitHeaders, endpoint: str) -> ApiError:
    fields = body if isinstance(body, dict) else {}
    message = fields.get("message") or fields.get("error") or response.reason_phrase or f"HTTP {response.status_code}"
    return ApiError(
        response.status_code,
        key=_str_or_none(fields.get("key")),
        message=str(message),
        details=_str_or_none(fields.get("details")),
        request_id=_str_or_none(fields.get("request_id")),
        resource_type=_str_or_none(fields.get("resource_type")),
        rate=rate,
        endpoint=endpoint,
        location=response.headers.get("location") if response.is_redirect else None,
    )


def _publication(data: Any, endpoint: str) -> Publication:
    voucher = data.get("voucher") if isinstance(data, dict) else None
    code = voucher.get("code") if isinstance(voucher, dict) else None
    if not code and isinstance(data, dict) and isinstance(data.get("vouchers"), list) and len(data["vouchers"]) == 1:
        code = data["vouchers"][0]
    if not isinstance(code, str) or not code:
        raise TransportError("unexpected body", "publication without a voucher code", endpoint=endpoint)
    customer = data.get("customer") if isinstance(data.get("customer"), dict) else {}
    return Publication(
        id=_str_or_none(data.get("id")),
        code=code,
        source_id=_str_or_none(data.get("source_id")),
        customer_source_id=_str_or_none(data.get("tracking_id") or customer.get("source_id")),
        campaign=_str_or_none(voucher.get("campaign")) if isinstance(voucher, dict) else None,
        campaign_id=_str_or_none(voucher.get("campaign_id")) if isinstance(voucher, dict) else None,
        expiration_date=_str_or_none(voucher.get("expiration_date")) if isinstance(voucher, dict) else None,
    )


def _lowercase(headers: httpx.Headers) -> dict[str, str]:
    """The headers as a plain dict by lower-case name (repeated ones joined as httpx does): five look-ups in it
    cost less than one in ``httpx.Headers``."""
    plain: dict[str, str] = {}
    for name, value in headers.raw:
        key, text = name.decode("latin-1").lower(), value.decode(headers.encoding)
        plain[key] = f"{plain[key]}, {text}" if key in plain else text
    return plain


def _json_or_none(content: bytes) -> Any:
    try:
        return json.loads(content)
    except (ValueError, RecursionError):
        return None


def _str_or_none(value: Any) -> str | None:
    return None if value is None else str(value)

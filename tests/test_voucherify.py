"""The HTTP client against the loopback sandbox: what it sends, and how it reads every kind of answer."""

from __future__ import annotations

import json
from typing import Any

import anyio
import httpx
import pytest
from contracts import PUBLICATIONS, check

from distributor.credentials import Credentials
from distributor.sandbox import DEMO_APP_ID, DEMO_APP_TOKEN
from distributor.units import Rate
from distributor.voucherify import ApiError, RateLimitHeaders, TransportError, VoucherifyClient

KEYS = Credentials(DEMO_APP_ID, DEMO_APP_TOKEN)


class Recording(httpx.AsyncBaseTransport):
    """The real transport, keeping a copy of each request it sends (to check it against the contract)."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.requests: list[httpx.Request] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


def call(server: Any, method: str, *args: Any, credentials: Credentials = KEYS, timeout: float = 5.0,
         observed: list[Any] | None = None, transport: httpx.AsyncBaseTransport | None = None, **kwargs: Any) -> Any:
    async def main() -> Any:
        observer = (lambda *answer: observed.append(answer)) if observed is not None else None
        async with VoucherifyClient(server.url, credentials, timeout=timeout, observer=observer, transport=transport) as client:
            return await getattr(client, method)(*args, **kwargs)

    return anyio.run(main, backend="asyncio")


def publish(server: Any, customer: str = "cust-1", source_id: str = "dist-1", **kwargs: Any) -> Any:
    return call(server, "publish", campaign="reactivation-20", customer_source_id=customer, source_id=source_id, **kwargs)


def test_a_publication_request_is_what_the_contract_describes(sandbox) -> None:
    server = sandbox()
    recording = Recording()

    publication = publish(server, metadata={"distribution": "d"}, transport=recording)

    request = recording.requests[0]
    body = json.loads(request.content)
    check(PUBLICATIONS, "PublicationsCreateRequestBody", body)
    assert body == {"campaign": {"name": "reactivation-20"}, "customer": {"source_id": "cust-1"},
                    "source_id": "dist-1", "metadata": {"distribution": "d"}}
    assert request.headers["X-App-Id"] == DEMO_APP_ID
    assert request.headers["X-Voucherify-API-Version"]
    held = server.sandbox.codes_held("reactivation-20")
    assert held == {"cust-1": {publication.code}}
    assert publication.customer_source_id == "cust-1" and publication.source_id == "dist-1"


def test_join_once_travels_as_the_query_flag(sandbox) -> None:
    server = sandbox()
    recording = Recording()
    publish(server, join_once=True, transport=recording)
    assert recording.requests[0].url.params["join_once"] == "true"


def test_the_same_source_id_gets_the_same_code_and_can_be_looked_up(sandbox) -> None:
    server = sandbox()
    first = publish(server)
    second = publish(server)
    found = call(server, "find_publication", "dist-1")
    assert first.code == second.code == found.code
    assert call(server, "find_publication", "no-such-source-id") is None


def test_error_answers_carry_voucherifys_key_message_and_request_id(sandbox) -> None:
    server = sandbox(refuse_customers={"cust-9": "voucher_cannot_be_published"})
    with pytest.raises(ApiError) as raised:
        publish(server, customer="cust-9")
    error = raised.value
    assert (error.status, error.key) == (400, "voucher_cannot_be_published")
    assert error.request_id and error.request_id.startswith("v-")
    assert error.description


def test_an_html_502_is_an_api_error_not_a_crash(sandbox) -> None:
    server = sandbox(error_rate=1.0, seed=3)
    statuses = set()
    for index in range(12):
        with pytest.raises(ApiError) as raised:
            publish(server, source_id=f"s-{index}")
        statuses.add(raised.value.status)
    assert statuses == {500, 502, 503}
    assert server.sandbox.publications == []


def test_a_lost_answer_is_a_transport_error_and_the_retry_gets_the_committed_code(sandbox) -> None:
    server = sandbox(lost_answer_rate=1.0)
    with pytest.raises(TransportError) as raised:
        publish(server)
    assert raised.value.kind == "connection"
    server.sandbox.config.lost_answer_rate = 0.0
    assert publish(server).code == server.sandbox.publications[0].code


def test_a_slow_answer_times_out(sandbox) -> None:
    server = sandbox(latency_median=1.0)
    with pytest.raises(TransportError) as raised:
        publish(server, timeout=0.2)
    assert raised.value.kind == "timeout"


def test_every_answer_reports_its_rate_limit_headers(sandbox) -> None:
    server = sandbox(rate_limit=Rate(3, 60.0))
    observed: list[Any] = []
    for index in range(3):
        publish(server, source_id=f"s-{index}", observed=observed)
    with pytest.raises(ApiError) as raised:
        publish(server, source_id="s-4", observed=observed)

    remaining = [answer[0].remaining for answer in observed]
    assert remaining == [2, 1, 0, 0]
    assert all(answer[0].limit == 3 for answer in observed)
    assert raised.value.status == 429
    assert raised.value.rate.limit_type == "api_calls"
    assert raised.value.rate.retry_after and raised.value.rate.retry_after > 0
    assert observed[-1][1] == 429


def test_bad_keys_are_a_401_and_the_token_appears_in_no_error(sandbox) -> None:
    server = sandbox()
    secret = Credentials(DEMO_APP_ID, "wrong-secret-token")
    with pytest.raises(ApiError) as raised:
        publish(server, credentials=secret)
    assert raised.value.status == 401
    assert "wrong-secret-token" not in str(raised.value) and "wrong-secret-token" not in repr(raised.value)
    assert "wrong-secret-token" not in repr(VoucherifyClient(server.url, secret))


def test_get_campaign_by_name_or_id(sandbox) -> None:
    server = sandbox()
    by_name = call(server, "get_campaign", "referral-program")
    by_id = call(server, "get_campaign", by_name.id)
    assert by_name == by_id
    assert by_name.join_once is True
    with pytest.raises(ApiError) as raised:
        call(server, "get_campaign", "no such campaign/../x")
    assert raised.value.status == 404


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"Retry-After": "7"}, RateLimitHeaders(retry_after=7.0)),
        ({"X-Rate-Limit-Limit": "100", "X-Rate-Limit-Remaining": "0", "X-Rate-Limit-Retry": "1800000060",
          "X-Rate-Limit-Type": "api_calls"},
         RateLimitHeaders(limit=100, remaining=0, retry_at=1_800_000_060.0, limit_type="api_calls")),
        ({"Retry-After": "Wed, 15 Jan 2027 10:00:30 GMT"}, RateLimitHeaders(retry_after=30.0)),
        ({"X-Rate-Limit-Remaining": "lots"}, RateLimitHeaders()),
    ],
)
def test_rate_limit_headers_parse_seconds_dates_and_garbage(headers: dict[str, str], expected: RateLimitHeaders) -> None:
    now = 1_800_000_000.0 if "GMT" not in headers.get("Retry-After", "") else 1_800_007_200.0
    assert RateLimitHeaders.from_headers(httpx.Headers(headers), now=now) == expected

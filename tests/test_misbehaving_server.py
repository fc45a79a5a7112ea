"""A misbehaving server cannot hang the client, exhaust its memory, mislead the throttle or leak the token.

Each test scripts a real loopback server (``misbehaving.py``) and calls it with the real client; deadlines are a
fraction of a second so the whole file takes a few seconds.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Any

import anyio
import pytest
from misbehaving import MisbehavingServer, endless, huge, reply, trickle

from distributor.clevertap import CleverTapClient, CleverTapCredentials, CleverTapTransient
from distributor.credentials import Credentials
from distributor.voucherify import ApiError, TransportError, VoucherifyClient

TOKEN = "tok-echoed-secret-42"
KEYS = Credentials("app-id-1", TOKEN)
PUBLICATION = {
    "id": "pub_1", "object": "publication", "source_id": "k-1", "tracking_id": "cust-1", "result": "SUCCESS",
    "customer": {"source_id": "cust-1"},
    "voucher": {"code": "CODE-1", "campaign": "reactivation-20", "campaign_id": "camp_demo_reactivation"},
}


@pytest.fixture
def server() -> Iterator[MisbehavingServer]:
    with MisbehavingServer() as started:
        yield started


def publish(server: MisbehavingServer, *, timeout: float = 0.5, observed: list[Any] | None = None,
            max_body: int | None = None) -> Any:
    async def main() -> Any:
        observer = (lambda *answer: observed.append(answer)) if observed is not None else None
        options: dict[str, Any] = {} if max_body is None else {"max_body": max_body}
        async with VoucherifyClient(server.url, KEYS, timeout=timeout, observer=observer, **options) as client:
            return await client.publish(campaign="reactivation-20", customer_source_id="cust-1", source_id="k-1")

    return anyio.run(main, backend="asyncio")


def test_a_body_trickled_byte_by_byte_times_out_at_the_whole_call_deadline(server: MisbehavingServer) -> None:
    # every byte arrives well within the per-read timeout; the whole body would take ~40 s
    server.script(trickle(PUBLICATION, every=0.1))
    started = time.monotonic()
    with pytest.raises(TransportError) as caught:
        publish(server, timeout=0.5)
    assert caught.value.kind == "timeout"
    assert time.monotonic() - started < 2.0


def test_an_announced_huge_body_is_refused_before_it_is_read(server: MisbehavingServer) -> None:
    server.script(huge(3_000_000_000))
    with pytest.raises(TransportError) as caught:
        publish(server, timeout=5.0, max_body=1_000_000)
    assert caught.value.kind == "oversized answer"


def test_an_unannounced_big_body_is_abandoned_once_it_exceeds_the_cap(server: MisbehavingServer) -> None:
    server.script(huge(20_000_000, announce=False))
    with pytest.raises(TransportError) as caught:
        publish(server, timeout=5.0, max_body=1_000_000)
    assert caught.value.kind == "oversized answer"


def test_an_endless_body_is_abandoned_quickly(server: MisbehavingServer) -> None:
    server.script(endless())
    started = time.monotonic()
    with pytest.raises(TransportError) as caught:
        publish(server, timeout=5.0)  # the default cap: 4 MiB
    assert caught.value.kind == "oversized answer"
    assert time.monotonic() - started < 3.0


def test_implausible_rate_limit_headers_are_treated_as_absent_with_one_warning(
    server: MisbehavingServer, caplog: pytest.LogCaptureFixture
) -> None:
    now_ms = str(int(time.time() * 1000))
    nonsense = {"X-Rate-Limit-Retry": now_ms, "X-Rate-Limit-Limit": "100", "X-Rate-Limit-Remaining": "5000"}
    server.script(*[reply(429, {"code": 429, "message": "Too many"}, nonsense) for _ in range(3)])
    observed: list[Any] = []
    with caplog.at_level(logging.WARNING, logger="distributor"):
        for _ in range(3):
            with pytest.raises(ApiError) as caught:
                publish(server, observed=observed)
    rate = caught.value.rate
    assert rate.retry_at is None and rate.limit is None and rate.remaining is None
    assert all(answer[0].retry_at is None and answer[0].remaining is None for answer in observed)
    warnings = [r.getMessage() for r in caplog.records if "implausible" in r.getMessage()]
    # one warning per kind of nonsense (not one per answer: the client is shared by the whole run)
    assert len(warnings) <= 2 * 3
    assert any("X-Rate-Limit-Retry" in w for w in warnings) and any("Remaining" in w for w in warnings)


def test_plausible_headers_are_kept(server: MisbehavingServer) -> None:
    retry_at = str(int(time.time()) + 30)
    server.script(reply(429, {"code": 429}, {"X-Rate-Limit-Retry": retry_at, "Retry-After": "30",
                                             "X-Rate-Limit-Limit": "100", "X-Rate-Limit-Remaining": "0"}))
    with pytest.raises(ApiError) as caught:
        publish(server)
    assert caught.value.rate.retry_at == float(retry_at) and caught.value.rate.retry_after == 30.0
    assert caught.value.rate.limit == 100 and caught.value.rate.remaining == 0


def test_a_token_echoed_by_the_server_is_redacted_at_the_client(server: MisbehavingServer) -> None:
    server.script(reply(400, {"code": 400, "key": "invalid_payload", "message": f"Bad token {TOKEN}",
                              "details": f"X-App-Token: {TOKEN} is not allowed here", "request_id": f"v-{TOKEN}"}))
    with pytest.raises(ApiError) as caught:
        publish(server)
    error = caught.value
    texts = [str(error), error.message, error.description, error.details or "", error.request_id or "", repr(error)]
    assert all(TOKEN not in text for text in texts)
    assert "***" in error.message and error.key == "invalid_payload"


def test_a_redirect_is_not_followed_and_says_where_it_points(server: MisbehavingServer) -> None:
    server.script(reply(301, b"", {"Location": "https://example.com/v1/publications"}))
    with pytest.raises(ApiError) as caught:
        publish(server)
    assert caught.value.status == 301 and caught.value.location == "https://example.com/v1/publications"
    assert len(server.requests) == 1


# ---------------------------------------------------------------------- the CleverTap client is bounded the same way
def clevertap_call(server: MisbehavingServer, call: str, *, timeout: float = 0.5) -> Any:
    async def main() -> Any:
        async with CleverTapClient(server.url, CleverTapCredentials("ACC-1", "pass-1"), timeout=timeout) as client:
            if call == "upload":
                return await client.upload([{"identity": "cust-1", "type": "profile", "profileData": {"c": "X"}}])
            return await client.profile("cust-1")

    return anyio.run(main, backend="asyncio")


@pytest.mark.parametrize(
    ("call", "behaviour"),
    [
        ("upload", trickle({"status": "success", "processed": 1, "unprocessed": []}, every=0.1)),
        ("profile", endless()),
    ],
    ids=["trickled-upload-answer", "endless-profile"],
)
def test_a_misbehaving_clevertap_ends_as_a_transient_failure_within_the_deadline(
    server: MisbehavingServer, call: str, behaviour: Any
) -> None:
    """Before the CleverTap client shared the bounded exchange, a trickled answer kept a push waiting for ever and
    an endless one filled the memory."""
    server.script(behaviour)
    started = time.monotonic()
    with pytest.raises(CleverTapTransient, match="no complete answer from CleverTap"):
        clevertap_call(server, call)
    assert time.monotonic() - started < 2.0

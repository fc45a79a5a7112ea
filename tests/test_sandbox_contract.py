"""The sandbox answers in Voucherify's shapes: every body is checked against the official OpenAPI schemas.

The schemas are read from ``../shared/contracts/`` beside the project; without that folder these tests skip.
The request bodies the tests send are checked against ``PublicationsCreateRequestBody`` too, so the test client
asks what a real client would.
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Iterator
from typing import Any

import httpx
from contracts import CAMPAIGNS, PUBLICATIONS, check, validator

from distributor.sandbox import DEMO_APP_ID, DEMO_APP_TOKEN, Campaign, SandboxConfig, SandboxServer, default_campaigns
from distributor.units import Rate

HEADERS = {"X-App-Id": DEMO_APP_ID, "X-App-Token": DEMO_APP_TOKEN}
REQUEST_ID = re.compile(r"^v-[0-9a-f]{18}$")


def check_error(response: httpx.Response, status: int, key: str | None) -> dict[str, Any]:
    """An ``Error`` body with Voucherify's keys: code, key, message, details, request_id."""
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    check(PUBLICATIONS, "Error", body)
    if key is not None:
        assert body["code"] == status and body["key"] == key
        assert body["message"] and body["details"]
        assert REQUEST_ID.match(body["request_id"]), body["request_id"]
    return body


class Client:
    """An httpx client that refuses to send a publication request a real client could not send."""

    def __init__(self, url: str) -> None:
        self.http = httpx.Client(base_url=url, headers=HEADERS, timeout=10)

    def publish(self, body: dict[str, Any], **params: str) -> httpx.Response:
        check(PUBLICATIONS, "PublicationsCreateRequestBody", body)
        return self.http.post("/v1/publications", json=body, params=params)

    def publish_invalid(self, body: object) -> httpx.Response:
        """Send a body the request schema rejects, on purpose."""
        assert list(validator(PUBLICATIONS, "PublicationsCreateRequestBody").iter_errors(body)), body
        return self.http.post("/v1/publications", json=body)


@contextlib.contextmanager
def sandbox_client(**options: Any) -> Iterator[tuple[SandboxServer, Client]]:
    validator(PUBLICATIONS, "Error")  # skip before starting anything when the contracts are absent
    with SandboxServer(SandboxConfig(seed=11, **options)) as server:
        client = Client(server.url)
        try:
            yield server, client
        finally:
            client.http.close()


def full_request(customer: str, campaign: str, source_id: str) -> dict[str, Any]:
    return {
        "campaign": {"name": campaign},
        "customer": {
            "source_id": customer,
            "name": "Ann Example",
            "email": f"{customer}@example.com",
            "phone": "+48 600 000 000",
            "birthdate": "1990-04-01",
            "address": {"city": "Warsaw", "country": "PL", "postal_code": "00-001", "line_1": "Main 1"},
            "metadata": {"segment": "lapsed-90d"},
        },
        "source_id": source_id,
        "metadata": {"distribution": "spring-2026", "row": 17},
        "channel": "distributor",
    }


def test_publication_responses_match_the_schema_for_every_kind_of_campaign() -> None:
    dated = Campaign(
        id="camp_dated", name="dated", start_date="2026-01-01T00:00:00Z", expiration_date="2027-01-01T00:00:00Z",
        discount={"type": "FIXED", "fixed_amount": 999, "effect": "APPLY_TO_ORDER"}, metadata={"team": "crm"},
    )
    with sandbox_client(campaigns=[*default_campaigns(), dated], rate_limit=Rate(100, 60.0)) as (_, client):
        names = [c.name for c in default_campaigns()] + ["camp_dated"]
        for i, campaign in enumerate(names):
            response = client.publish(full_request(f"cust-{i}", campaign, f"pub-{i}"))
            assert response.status_code == 200, response.text
            body = response.json()
            check(PUBLICATIONS, "PublicationsCreateResponseBody", body)
            assert body["result"] == "SUCCESS" and body["channel"] == "API"
            assert body["tracking_id"] == f"cust-{i}" and body["source_id"] == f"pub-{i}"
            assert body["id"].startswith("pub_") and body["customer_id"].startswith("cust_")
            assert body["vouchers_id"] == [body["voucher"]["id"]]
            assert response.headers["X-Rate-Limit-Remaining"] == str(99 - i)
        # A minimal request, campaign as a bare string, and the join_once query flag.
        minimal = client.publish({"campaign": {"name": "reactivation-20"}, "customer": {"source_id": "cust-0"}})
        check(PUBLICATIONS, "PublicationsCreateResponseBody", minimal.json())
        assert minimal.json()["source_id"] is None
        again = client.publish(
            {"campaign": {"name": "reactivation-20"}, "customer": {"source_id": "cust-0"}}, join_once="true"
        )
        check(PUBLICATIONS, "PublicationsCreateResponseBody", again.json())
        customer_id = minimal.json()["customer_id"]
        by_id = client.publish({"campaign": {"name": "camp_demo_gift"}, "customer": {"id": customer_id}})
        check(PUBLICATIONS, "PublicationsCreateResponseBody", by_id.json())


def test_list_responses_match_the_schema() -> None:
    with sandbox_client() as (_, client):
        for i, campaign in enumerate(c.name for c in default_campaigns()):
            assert client.publish(full_request(f"cust-{i}", campaign, f"pub-{i}")).status_code == 200
        for params in ({}, {"source_id": "pub-2"}, {"campaign": "loyalty-card"}, {"limit": "2", "page": "2"},
                       {"source_id": "never"}):
            response = client.http.get("/v1/publications", params=params)
            assert response.status_code == 200
            body = response.json()
            check(PUBLICATIONS, "PublicationsListResponseBody", body)
            for item in body["publications"]:
                check(PUBLICATIONS, "ListPublicationsItemValidSingleVoucher", item)
        single = client.http.get("/v1/publications", params={"source_id": "pub-2"}).json()
        assert single["total"] == 1 and single["publications"][0]["source_id"] == "pub-2"
        assert (single["object"], single["data_ref"]) == ("list", "publications")
        check_error(client.http.get("/v1/publications", params={"limit": "0"}), 400, "invalid_payload")


def test_campaign_responses_match_the_schema() -> None:
    dated = Campaign(
        id="camp_dated", name="dated", start_date="2026-01-01T00:00:00Z", expiration_date="2027-01-01T00:00:00Z",
        active=False,
        discount={"type": "UNIT", "unit_off": 1, "unit_type": "prod_coffee", "effect": "ADD_MISSING_ITEMS"},
    )
    campaigns = [*default_campaigns(), dated]
    with sandbox_client(campaigns=campaigns) as (_, client):
        for campaign in campaigns:
            for ref in (campaign.id, campaign.name):
                response = client.http.get(f"/v1/campaigns/{ref}")
                assert response.status_code == 200, response.text
                body = response.json()
                check(CAMPAIGNS, "CampaignsGetResponseBody", body)
                assert (body["id"], body["name"], body["type"]) == (campaign.id, campaign.name, campaign.type)
                assert (body["join_once"], body["active"]) == (campaign.join_once, campaign.active)
        dated_body = client.http.get("/v1/campaigns/dated").json()
        assert dated_body["expiration_date"] == "2027-01-01T00:00:00.000Z"
        missing = check_error(client.http.get("/v1/campaigns/camp_missing"), 404, "not_found")
        assert (missing["resource_type"], missing["resource_id"]) == ("campaign", "camp_missing")
        assert missing["details"] == "Cannot find campaign with id camp_missing"


def test_error_bodies_match_the_schema() -> None:
    tiny = Campaign(
        id="camp_tiny", name="tiny", type="STATIC", codes=["ONLY-1"], discount={"type": "AMOUNT", "amount_off": 1}
    )

    def request(customer: dict[str, Any], campaign: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
        return {"campaign": campaign or {"name": "tiny"}, "customer": customer, **extra}

    with sandbox_client(campaigns=[*default_campaigns(), tiny]) as (server, client):
        assert client.publish(request({"source_id": "a"}, source_id="p1")).status_code == 200
        check_error(client.publish(request({"source_id": "b"})), 400, "no_voucher_suitable_for_publication")
        duplicate = client.publish(request({"source_id": "b"}, source_id="p1"))
        assert check_error(duplicate, 400, "duplicate_source_id")["resource_type"] == "publication"
        unknown = check_error(client.publish(request({"source_id": "a"}, {"name": "camp_x"})), 404, "not_found")
        assert (unknown["resource_type"], unknown["resource_id"]) == ("campaign", "camp_x")
        check_error(client.publish(request({"id": "cust_nobody"})), 404, "not_found")
        check_error(client.publish(request({"email": "x@y.z"})), 400, "invalid_customer")
        with_count = request({"source_id": "a"}, {"name": "tiny", "count": 2}, source_id="p9")
        check_error(client.publish(with_count), 400, "invalid_payload")
        check_error(client.publish_invalid({"campaign": {"name": "tiny"}}), 400, "invalid_payload")
        check_error(client.publish_invalid({"customer": {"source_id": "a"}}), 400, "missing_vouchers")
        check_error(client.http.post("/v1/publications", content=b"{not json"), 400, "invalid_payload")
        check_error(client.http.get("/v1/nothing"), 404, "not_found")
        check_error(httpx.get(server.url + "/v1/campaigns/tiny"), 401, "unauthorized")

        server.sandbox.config.error_rate = 1.0
        seen = set()
        for i in range(12):
            response = client.publish({"campaign": {"name": "reactivation-20"}, "customer": {"source_id": f"c{i}"}})
            seen.add(response.status_code)
            if response.status_code != 502:  # the 502 is an HTML page, like a gateway's
                check_error(response, response.status_code, None)
        assert seen == {500, 502, 503}


def test_429_bodies_match_the_schema() -> None:
    with sandbox_client(rate_limit=Rate(1, 60.0)) as (_, client):
        assert client.http.get("/v1/campaigns/static-50").status_code == 200
        limited = client.http.get("/v1/campaigns/static-50")
        assert check_error(limited, 429, None) == {"code": 429, "message": "Too many requests hit the API too quickly."}
    with sandbox_client(cycle_quota=0, cycle_resets_at=time.time() + 60) as (_, client):
        spent = client.publish({"campaign": {"name": "static-50"}, "customer": {"source_id": "a"}})
        check_error(spent, 429, None)
        assert spent.headers["X-Rate-Limit-Type"] == "api_calls_cycle"

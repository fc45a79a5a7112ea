"""The sandbox over real HTTP on 127.0.0.1: the server, the keys, limits, faults, latency and the CLI entry point.

(No pytest fixtures here: with looptime installed but not pytest-asyncio, looptime's fixture hook breaks every
fixture, parametrization included. Plain helpers keep these tests independent of that.)
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from distributor.sandbox import DEMO_APP_ID, DEMO_APP_TOKEN, Sandbox, SandboxConfig, SandboxServer
from distributor.units import Rate

HEADERS = {"X-App-Id": DEMO_APP_ID, "X-App-Token": DEMO_APP_TOKEN}
PROJECT = Path(__file__).resolve().parents[1]


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@contextlib.contextmanager
def serving(sandbox: Sandbox | None = None, **options: Any) -> Iterator[tuple[SandboxServer, httpx.Client]]:
    """A running sandbox and a client for it, with the demo keys."""
    with (
        SandboxServer(sandbox or SandboxConfig(seed=5, **options)) as server,
        httpx.Client(base_url=server.url, headers=HEADERS, timeout=10) as client,
    ):
        yield server, client


def publication(customer: str, source_id: str | None = None, campaign: str = "reactivation-20") -> dict[str, Any]:
    body: dict[str, Any] = {"campaign": {"name": campaign}, "customer": {"source_id": customer}}
    if source_id is not None:
        body["source_id"] = source_id
    return body


# ---------------------------------------------------------------------------------------------- the server


def test_servers_bind_ephemeral_ports_run_side_by_side_and_stop() -> None:
    with SandboxServer() as first, SandboxServer(SandboxConfig(app_token="other")) as second:
        assert first.url.startswith("http://127.0.0.1:") and first.port != second.port != 0
        assert httpx.get(first.url + "/v1/campaigns/static-50", headers=HEADERS).status_code == 200
        assert httpx.get(second.url + "/v1/campaigns/static-50", headers=HEADERS).status_code == 401
        assert len(first.sandbox.arrivals) == len(second.sandbox.arrivals) == 1
    for server in (first, second):
        with pytest.raises(httpx.ConnectError):
            httpx.get(server.url + "/v1/campaigns/static-50", headers=HEADERS)


def test_unknown_paths_are_json_404() -> None:
    with serving() as (server, client):
        for method, path in (("GET", "/v1/vouchers/X"), ("DELETE", "/v1/publications"), ("GET", "/")):
            response = client.request(method, path)
            assert response.status_code == 404, (method, path)
            assert response.json()["key"] == "not_found"
        assert {a.kind for a in server.sandbox.arrivals} == {"other"}


# ---------------------------------------------------------------------------------------------- keys


def test_missing_or_wrong_keys_are_401_and_the_token_never_comes_back() -> None:
    secret = "s3cr3t-token-value"
    with serving(app_token=secret) as (server, _):
        attempts = [
            {},
            {"X-App-Id": DEMO_APP_ID},
            {"X-App-Id": DEMO_APP_ID, "X-App-Token": "wrong-token"},
            {"X-App-Id": "someone-else", "X-App-Token": secret},
        ]
        for headers in attempts:
            response = httpx.post(server.url + "/v1/publications", json=publication("ann"), headers=headers)
            assert response.status_code == 401, headers
            assert response.json()["key"] == "unauthorized"
            assert "wrong-token" not in response.text
        # And with the right keys, no answer (success or error) repeats the token.
        good = {"X-App-Id": DEMO_APP_ID, "X-App-Token": secret}
        texts = [
            httpx.post(server.url + "/v1/publications", json=publication("ann", "s1"), headers=good),
            httpx.post(server.url + "/v1/publications", json={"customer": {}}, headers=good),
            httpx.get(server.url + "/v1/publications?source_id=s1", headers=good),
            httpx.get(server.url + "/v1/campaigns/nope", headers=good),
            httpx.get(server.url + "/v1/nothing", headers=good),
        ]
        for response in texts:
            assert secret not in response.text and secret not in str(response.headers)
        assert server.sandbox.stats()["unauthorized"] == 4
        assert secret not in server.sandbox.arrivals_jsonl()


# ---------------------------------------------------------------------------------------------- limits


def test_a_burst_beyond_the_limit_gets_429s_with_integer_headers() -> None:
    with serving(rate_limit=Rate(5, 60.0)) as (server, client):

        async def burst() -> list[httpx.Response]:
            responses: list[httpx.Response] = []
            async with httpx.AsyncClient(base_url=server.url, headers=HEADERS) as aclient:

                async def one(i: int) -> None:
                    responses.append(await aclient.post("/v1/publications", json=publication(f"c{i}", f"s{i}")))

                async with anyio.create_task_group() as group:
                    for i in range(8):
                        group.start_soon(one, i)
            return responses

        responses = anyio.run(burst)
        statuses = sorted(r.status_code for r in responses)
        assert statuses == [200] * 5 + [429] * 3
        now = time.time()
        for response in responses:
            limit = int(response.headers["X-Rate-Limit-Limit"])
            remaining = int(response.headers["X-Rate-Limit-Remaining"])
            retry = int(response.headers["X-Rate-Limit-Retry"])
            assert limit == 5 and 0 <= remaining < 5
            assert now - 2 <= retry <= now + 61
            if response.status_code == 429:
                assert 1 <= int(response.headers["Retry-After"]) <= 60
                assert response.headers["X-Rate-Limit-Type"] == "api_calls"
                assert response.json() == {"code": 429, "message": "Too many requests hit the API too quickly."}
                assert math.ceil(now) + 57 <= retry  # the window frees up about a minute later
        assert client.get("/v1/campaigns/static-50").status_code == 429  # every endpoint counts
        assert server.sandbox.max_in_window() == 9
        assert len(server.sandbox.publications) == 5


def test_cycle_quota_answers_api_calls_cycle() -> None:
    with serving(cycle_quota=2, cycle_resets_at=time.time() + 7200) as (server, client):
        assert client.get("/v1/campaigns/static-50").status_code == 200
        assert client.get("/v1/publications").status_code == 200
        spent = client.post("/v1/publications", json=publication("ann"))
        assert spent.status_code == 429
        assert spent.headers["X-Rate-Limit-Type"] == "api_calls_cycle"
        assert 7100 <= int(spent.headers["Retry-After"]) <= 7200
        assert "X-Rate-Limit-Limit" not in spent.headers  # no per-minute limit configured
        assert server.sandbox.publications == []


def test_background_traffic_lowers_remaining_and_can_fill_the_window() -> None:
    clock = FakeClock()
    sandbox = Sandbox(SandboxConfig(clock=clock, rate_limit=Rate(100, 60.0), background_rate=Rate(120, 60.0)))
    with serving(sandbox) as (_, client):
        assert client.get("/v1/campaigns/static-50").headers["X-Rate-Limit-Remaining"] == "99"
        clock.now += 10.2  # the shop made 20 calls meanwhile (one every 0.5 s)
        assert client.get("/v1/campaigns/static-50").headers["X-Rate-Limit-Remaining"] == str(100 - 1 - 20 - 1)

    clock = FakeClock()
    sandbox = Sandbox(SandboxConfig(clock=clock, rate_limit=Rate(100, 60.0), background_rate=Rate(120, 60.0)))
    with serving(sandbox) as (_, client):
        clock.now += 60.2  # 120 shop calls: the first 100 fill the window, the last 20 fail at checkout
        response = client.get("/v1/campaigns/static-50")
        assert response.status_code == 429 and response.headers["X-Rate-Limit-Remaining"] == "0"
        assert sandbox.stats()["background_accepted"] == 100
        assert sandbox.stats()["background_rejected"] == 20


# ---------------------------------------------------------------------------------------------- faults


def test_error_rate_gives_5xx_without_committing() -> None:
    with serving(error_rate=1.0) as (server, client):
        seen: dict[int, str] = {}
        for i in range(20):
            response = client.post("/v1/publications", json=publication(f"c{i}", f"s{i}"))
            seen[response.status_code] = response.headers["content-type"]
            if response.status_code == 502:
                assert response.text.lstrip().startswith("<html>")
            else:
                assert response.json()["code"] == response.status_code
        assert set(seen) == {500, 502, 503}
        assert seen[502].startswith("text/html") and seen[500] == seen[503] == "application/json"
        assert server.sandbox.publications == []
        # Lookups and campaigns are never failed on purpose.
        assert client.get("/v1/campaigns/static-50").status_code == 200


def test_lost_answer_drops_the_connection_after_committing() -> None:
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    keep = Keep(level=logging.DEBUG)
    uvicorn_log = logging.getLogger("uvicorn")
    uvicorn_log.addHandler(keep)
    try:
        with serving(lost_answer_rate=1.0) as (server, client):
            with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
                client.post("/v1/publications", json=publication("ann", "pub-1"))
            stored = server.sandbox.publication_for_source_id("pub-1")
            assert stored is not None  # committed although the client never got the answer
            assert server.sandbox.arrivals[-1].outcome == "lost_answer"

            found = client.get("/v1/publications", params={"source_id": "pub-1"}).json()
            assert [p["voucher"]["code"] for p in found["publications"]] == [stored.code]

            server.sandbox.config.lost_answer_rate = 0.0
            retry = client.post("/v1/publications", json=publication("ann", "pub-1"))
            assert retry.status_code == 200 and retry.json()["voucher"]["code"] == stored.code
            assert len(server.sandbox.publications) == 1
    finally:
        uvicorn_log.removeHandler(keep)
    assert not [r for r in records if r.levelno >= logging.WARNING], [r.getMessage() for r in records]


# ---------------------------------------------------------------------------------------------- latency


def test_latency_does_not_serialise_requests() -> None:
    with serving(latency_median=0.05) as (server, _):

        async def twenty() -> float:
            async with httpx.AsyncClient(base_url=server.url, headers=HEADERS) as client:
                await client.get("/v1/campaigns/static-50")  # connect once before timing
                statuses: list[int] = []

                async def publish(i: int) -> None:
                    statuses.append((await client.post("/v1/publications", json=publication(f"c{i}"))).status_code)

                started = time.perf_counter()
                async with anyio.create_task_group() as group:
                    for i in range(20):
                        group.start_soon(publish, i)
                assert statuses == [200] * 20
                return time.perf_counter() - started

        elapsed = anyio.run(twenty)
        assert 0.05 <= elapsed < 0.5  # serially it would take 20 x 50 ms = 1 s
        assert server.sandbox.stats()["ok"] == 21


# ---------------------------------------------------------------------------------------------- serve()


@pytest.mark.slow
def test_serve_runs_until_sigterm_and_writes_the_arrival_log() -> None:
    script = textwrap.dedent(
        """
        import sys
        from distributor.sandbox import SandboxConfig
        from distributor.sandbox.server import serve

        sandbox = serve(SandboxConfig(seed=1), on_ready=lambda server: print(server.url, flush=True),
                        arrivals_path=sys.argv[1])
        print("served", sandbox.stats()["arrivals"], flush=True)
        """
    )
    with tempfile.TemporaryDirectory() as folder:
        log = Path(folder) / "arrivals.jsonl"
        env = {**os.environ, "PYTHONPATH": str(PROJECT)}
        process = subprocess.Popen(
            [sys.executable, "-c", script, str(log)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
        )
        try:
            assert process.stdout is not None
            url = process.stdout.readline().strip()
            assert url.startswith("http://127.0.0.1:"), process.stderr.read() if process.stderr else ""
            assert httpx.get(url + "/v1/campaigns/loyalty-card", headers=HEADERS).status_code == 200
            process.send_signal(signal.SIGTERM)
            out, err = process.communicate(timeout=10)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
        assert process.returncode == 0, err
        assert out.strip() == "served 1" and err == ""
        lines = [json.loads(line) for line in log.read_text().splitlines()]
        assert [(line["kind"], line["status"]) for line in lines] == [("campaign", 200)]

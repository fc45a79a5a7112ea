"""Throughput benchmarks: how close the job runs to its budget, and how fast it could go.

    .venv/bin/python benchmarks/throughput.py            # all scenarios (about 3 minutes)
    .venv/bin/python benchmarks/throughput.py --quick    # shorter runs

The sandbox runs in its own process (``distributor sandbox``), as Voucherify would, so the job's figures are its
own.  Scenarios:

* **budget** — Voucherify's Organization plan, 2,000 calls/min, with a long latency tail (median 150 ms, p99
  1.2 s) and 3 % of 5xx: utilisation of the granted rate from first call to last, 429s, calls per code, the most
  calls the server counted in any minute.
* **shop** — the same plan while the shop, already busy when the job starts, spends 500 calls/min of it: what the
  job takes, and how many of the shop's calls were refused.
* **ceiling** — no limit, no latency: publications per second end to end (journal included) and CPU time per
  publication: the client's own ceiling.
* **responder** — the same ceiling against a *minimal responder* (``benchmarks/responder.py``, raw asyncio, in its
  own process) so the figures are the client's alone, 32 in flight: the project (journal included), the TCP
  connections the responder saw opened (a stable pool opens about as many as the calls in flight), and side by
  side from the same run a **lean client** (the same body, 32 in flight over raw asyncio streams, no journal, no
  checks: what the machine allows) and **plain httpx** (``httpx.AsyncClient``, 32 in flight, no journal).
* **naive** — the baseline: a sequential loop of ``httpx`` calls, one after another, without a journal, at zero
  latency and at the long-tail latency.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import TracebackType

import httpx

from distributor.config import JobConfig
from distributor.credentials import Credentials
from distributor.run import run_distribution
from distributor.sandbox import DEMO_APP_ID, DEMO_APP_TOKEN
from distributor.sandbox.process import SandboxProcess
from distributor.voucherify import VoucherifyClient

ENV = {"VOUCHERIFY_APP_ID": DEMO_APP_ID, "VOUCHERIFY_APP_TOKEN": DEMO_APP_TOKEN}
HEADERS = {"X-App-Id": DEMO_APP_ID, "X-App-Token": DEMO_APP_TOKEN}


def segment(size: int) -> Path:
    path = Path(tempfile.mkdtemp(prefix="bench-")) / "segment.csv"
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["identity", "Email"])
        writer.writerows([f"customer-{i:08d}", f"c{i}@example.com"] for i in range(size))
    return path


def run_job(url: str, members: int, rate: str, transport: httpx.AsyncBaseTransport | None = None,
            **options: object) -> tuple[dict, float, float]:
    """Run a distribution in this process; returns its summary, wall seconds and CPU seconds."""
    path = segment(members)
    config = JobConfig.load(
        None,
        {"segment": path, "campaign": "reactivation-20", "api_url": url, "rate_limit": rate,
         "output": path.with_name("codes.csv"), **options},
        ENV,
    )
    wall, cpu = time.perf_counter(), time.process_time()
    result = run_distribution(config, transport=transport)
    return result.summary, time.perf_counter() - wall, time.process_time() - cpu


def scenario_budget(members: int) -> None:
    with SandboxProcess("--rate-limit", "2000/min", "--latency", "150ms", "--latency-p99", "1.2s",
                        "--error-rate", "0.03", "--seed", "1") as sandbox:
        summary, wall, _ = run_job(sandbox.url, members, "2000/min")
    print_row("budget: 2,000/min plan, p50 150 ms, p99 1.2 s, 3 % 5xx", summary, wall,
              f"max in any 60 s: {sandbox.max_in_window(60.0)} / 2000")


def scenario_shop(members: int) -> None:
    with SandboxProcess("--rate-limit", "2000/min", "--latency", "150ms", "--latency-p99", "1.2s",
                        "--background-rate", "500/min", "--background-since", "1min", "--seed", "1") as sandbox:
        summary, wall, _ = run_job(sandbox.url, members, "2000/min")
    shop_refused = sandbox.count(kind="background", status=429)
    shop_calls = sandbox.count(kind="background")
    print_row("shop: the same plan, the shop spends 500/min", summary, wall,
              f"shop calls refused: {shop_refused} of {shop_calls}; job took "
              f"{summary['rate']['achieved_per_minute']:.0f}/min of the 1,460 left (1,500 minus a 2 % reserve)")


def scenario_ceiling(members: int) -> None:
    with SandboxProcess() as sandbox:
        summary, wall, cpu = run_job(sandbox.url, members, "1000000/min", concurrency=32)
    published = summary["members"]["published"]
    print(f"ceiling: no limit, no latency, 32 in flight\n"
          f"    {published} codes in {wall:.1f} s = {published / wall:.0f} publications/s end to end; "
          f"CPU {1000 * cpu / published:.2f} ms per publication (job process, journal included); "
          f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


class ResponderProcess:
    """``benchmarks/responder.py`` in its own process until the block ends."""

    def __init__(self) -> None:
        self.url = ""
        self.port = 0
        self._process: subprocess.Popen[str] | None = None

    def __enter__(self) -> ResponderProcess:
        script = Path(__file__).with_name("responder.py")
        self._process = subprocess.Popen([sys.executable, str(script), "0"], stdout=subprocess.PIPE, text=True)
        assert self._process.stdout is not None
        line = self._process.stdout.readline()
        if "responder on " not in line:
            self._process.kill()
            raise RuntimeError(f"the responder did not start: {line!r}")
        self.url = line.split("responder on ", 1)[1].strip()
        self.port = int(self.url.rsplit(":", 1)[1])
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        assert self._process is not None
        self._process.terminate()
        self._process.wait(timeout=30)

    def stats(self) -> dict[str, int]:
        """Connections opened, the most open at once and requests served so far, this request's own not counted."""
        answer = httpx.get(f"{self.url}/__stats").json()
        return {"connections": answer["connections"] - 1, "most_open": answer["most_open"],
                "requests": answer["requests"] - 1}

    def connections(self) -> str:
        stats = self.stats()
        return f"{stats['connections']} TCP connections opened (at most {stats['most_open']} open at once)"


def body_of(i: int) -> bytes:
    return json.dumps({"campaign": {"name": "reactivation-20"}, "customer": {"source_id": f"customer-{i:08d}"},
                       "source_id": f"lean-{i}", "metadata": {"distribution": "camp_1"}}).encode()


def scenario_responder(members: int) -> None:
    print("ceiling against a minimal responder (benchmarks/responder.py, its own process): no limit, no latency")
    project_rows: tuple[tuple[str, dict[str, object], Callable[[], httpx.AsyncBaseTransport] | None], ...] = (
        ("project, 32 in flight", {"concurrency": 32}, None),
        ("project, adaptive concurrency (no --concurrency)", {}, None),
        ("project over httpx's own transport (httpcore), 32 in flight", {"concurrency": 32}, httpcore_transport),
    )
    for name, options, transport in project_rows:
        with ResponderProcess() as responder:
            summary, wall, cpu = run_job(responder.url, members, "1000000/min",
                                         transport=transport() if transport else None, **options)
            opened = responder.connections()
        published = summary["members"]["published"]
        print(f"    {name}: {published} codes in {wall:.2f} s = {published / wall:.0f} publications/s; "
              f"CPU {1000 * cpu / published:.3f} ms per publication (journal included); "
              f"{opened}")
    for name, client in (("the project's HTTP path alone (VoucherifyClient.publish), 32 in flight", project_client),
                         ("lean client (raw asyncio streams), 32 in flight", lean_client),
                         ("plain httpx.AsyncClient, 32 in flight", plain_httpx)):
        with ResponderProcess() as responder:
            wall, cpu = time.perf_counter(), time.process_time()
            asyncio.run(in_flight(32, members, client(responder)))
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            opened = responder.connections()
        print(f"    {name}: {members} codes in {wall:.2f} s = {members / wall:.0f} publications/s; "
              f"CPU {1000 * cpu / members:.3f} ms per publication (no journal); {opened}")


def httpcore_transport() -> httpx.AsyncBaseTransport:
    return httpx.AsyncHTTPTransport(limits=httpx.Limits(max_connections=36, max_keepalive_connections=36))


Call = Callable[[int], Awaitable[None]]


async def in_flight(concurrency: int, members: int, make_worker: Callable[[], Awaitable[Call]]) -> None:
    """``concurrency`` workers, each on its own connection, share ``members`` publications."""
    numbers = iter(range(members))

    async def worker() -> None:
        call = await make_worker()
        for i in numbers:
            await call(i)

    await asyncio.gather(*(worker() for _ in range(concurrency)))


def lean_client(responder: ResponderProcess) -> Callable[[], Awaitable[Call]]:
    head = (f"POST /v1/publications HTTP/1.1\r\nHost: 127.0.0.1:{responder.port}\r\nX-App-Id: {DEMO_APP_ID}\r\n"
            f"X-App-Token: {DEMO_APP_TOKEN}\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n")

    async def connect() -> Call:
        reader, writer = await asyncio.open_connection("127.0.0.1", responder.port)

        async def call(i: int) -> None:
            body = body_of(i)
            writer.write((head % len(body)).encode() + body)
            answer_head = await reader.readuntil(b"\r\n\r\n")
            length = next(int(line[15:]) for line in answer_head.split(b"\r\n")
                          if line[:15].lower() == b"content-length:")
            publication = json.loads(await reader.readexactly(length))
            assert publication["voucher"]["code"] and answer_head.startswith(b"HTTP/1.1 200")

        return call

    return connect


def project_client(responder: ResponderProcess) -> Callable[[], Awaitable[Call]]:
    """The project's client and its checks of the answer, without the journal, the throttle or the run."""
    client = VoucherifyClient(responder.url, Credentials(DEMO_APP_ID, DEMO_APP_TOKEN), max_connections=36)

    async def connect() -> Call:
        async def call(i: int) -> None:
            publication = await client.publish(campaign="camp_1", customer_source_id=f"customer-{i:08d}",
                                               source_id=f"lean-{i}", metadata={"distribution": "camp_1"})
            assert publication.customer_source_id == f"customer-{i:08d}" and publication.campaign_id == "camp_1"

        return call

    return connect


def plain_httpx(responder: ResponderProcess) -> Callable[[], Awaitable[Call]]:
    client = httpx.AsyncClient(base_url=responder.url, headers=HEADERS,
                               limits=httpx.Limits(max_connections=32, max_keepalive_connections=32))

    async def connect() -> Call:
        async def call(i: int) -> None:
            response = await client.post("/v1/publications", content=body_of(i),
                                          headers={"Content-Type": "application/json"})
            assert response.status_code == 200 and response.json()["voucher"]["code"]

        return call

    return connect


def scenario_naive(members: int, latency: str) -> None:
    with SandboxProcess("--latency", latency) as sandbox:
        wall, cpu = time.perf_counter(), time.process_time()
        with httpx.Client(base_url=sandbox.url, headers=HEADERS, timeout=30) as client:
            for i in range(members):
                response = client.post("/v1/publications", json={
                    "campaign": {"name": "reactivation-20"},
                    "customer": {"source_id": f"customer-{i:08d}"},
                    "source_id": f"naive-{i}",
                })
                response.raise_for_status()
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    print(f"naive sequential httpx loop, latency {latency}\n"
          f"    {members} codes in {wall:.1f} s = {members / wall:.1f} publications/s; "
          f"CPU {1000 * cpu / members:.2f} ms per publication (no journal, no retries, no throttle)")


def print_row(title: str, summary: dict, wall: float, extra: str) -> None:
    calls, rate = summary["calls"], summary["rate"]
    print(f"{title}\n"
          f"    {summary['members']['published']} codes in {wall:.1f} s; utilisation {100 * rate['utilisation']:.1f} % "
          f"({rate['achieved_per_minute']:.0f}/min of {rate['budget']}); 429s: {calls['rate_limited_429']}; "
          f"calls per code {calls['per_code']:.3f} ({calls['retries']} retries); {extra}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="shorter runs (about a minute in all)")
    parser.add_argument("--only", choices=["responder"], help="only this scenario")
    args = parser.parse_args()
    scale = 0.25 if args.quick else 1.0
    if args.only == "responder":
        scenario_responder(int(20000 * scale))
        return
    print(f"distributor throughput benchmarks · Python {sys.version.split()[0]} · {os.cpu_count()} CPUs\n")
    scenario_budget(int(3000 * scale))
    scenario_shop(int(2000 * scale))
    scenario_ceiling(int(5000 * scale))
    scenario_responder(int(20000 * scale))
    scenario_naive(int(2000 * scale), "0ms")
    scenario_naive(int(200 * scale), "150ms")


if __name__ == "__main__":
    main()

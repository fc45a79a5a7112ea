"""Runs on a virtual clock: the whole distribution and the sandbox in one event loop whose time jumps over waits.

``httpx.ASGITransport`` carries the job's calls straight into the sandbox's ASGI app (no socket), and a looptime
event loop advances its clock to the next timer whenever nothing is ready.  The sandbox reads the same clock, so
its rate windows, latencies and ``Retry-After`` hints are in the job's time: a 40-second scenario runs in about
three seconds and gives the same figures on every run, however busy the machine is.  What needs a real process or
socket (signals, kill -9, the installed command) stays in the tests that use ``conftest.sandbox``.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, replace
from typing import Any

import anyio
import httpx
import looptime

from distributor.config import JobConfig
from distributor.pacing.retry import backoff_testing
from distributor.run import Distribution, RunResult
from distributor.sandbox import Sandbox, SandboxConfig
from distributor.sandbox.app import AnswerDropped, create_app

#: The job calls this URL; ASGITransport answers it in-process, so nothing ever leaves the interpreter.
VIRTUAL_URL = "http://127.0.0.1:9"


@dataclass
class VirtualRun:
    result: RunResult
    sandbox: Sandbox
    #: virtual seconds the run took
    elapsed: float


def run_virtual(
    config: JobConfig, sandbox: SandboxConfig | None = None, *, after: VirtualRun | None = None, **options: Any
) -> VirtualRun:
    """Run ``config`` (whose ``api_url`` is :data:`VIRTUAL_URL`) against a sandbox built from ``sandbox``.

    ``after``: a previous run whose sandbox (with everything it holds) serves this one too, its clock going on
    from where that run ended, as a rerun of the same command would find Voucherify.
    """
    start = after.elapsed if after is not None else 0.0

    async def main() -> VirtualRun:
        loop = asyncio.get_running_loop()
        if after is not None:
            world = after.sandbox
        else:
            base = sandbox if sandbox is not None else SandboxConfig(seed=1)
            world = Sandbox(replace(base, clock=_loop_time))
        transport = _DroppingTransport(app=create_app(world))
        result = await Distribution(config, transport=transport, **options).run()
        return VirtualRun(result, world, loop.time())

    # the retries' waits stay (they cost only virtual time) with seeded jitter: the same figures on every run
    with backoff_testing(waits=True, seed=1):
        return anyio.run(
            main, backend="asyncio", backend_options={"loop_factory": lambda: looptime.new_event_loop(start=start)}
        )


def _loop_time() -> float:
    """The running loop's (virtual) time: the sandbox is only ever called from inside a run's loop."""
    return asyncio.get_running_loop().time()


class _DroppingTransport(httpx.ASGITransport):
    """An answer the sandbox drops on purpose reaches the client as a dropped connection, as it does over a socket.

    (Under a real server the client sees the connection close before the promised body; ``ASGITransport`` would
    hand the sandbox's own exception to the client instead.)
    """

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        try:
            return await super().handle_async_request(request)
        except AnswerDropped as dropped:
            raise httpx.RemoteProtocolError(f"peer closed connection without sending complete body: {dropped}",
                                            request=request) from None

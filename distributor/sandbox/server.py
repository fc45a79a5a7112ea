"""Serve the sandbox over HTTP on loopback: in a background thread for tests, or in the foreground for the CLI."""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import threading
from collections.abc import Callable
from pathlib import Path
from types import FrameType, TracebackType

import uvicorn
from starlette.requests import ClientDisconnect

from .app import AnswerDropped, create_app
from .clevertap import CleverTapDropped, CleverTapWorld
from .model import SandboxConfig
from .world import Sandbox

#: How long to wait for the server thread to start, or to finish its requests when stopping.
_START_TIMEOUT = 10.0
_STOP_TIMEOUT = 5  # whole seconds: uvicorn's timeout_graceful_shutdown is an int


class _QuietDrops(logging.Filter):
    """Keeps the deliberate connection drops (``AnswerDropped``, ``CleverTapDropped``), the requests cut short when
    the sandbox is stopped while answers are still pending (``CancelledError``), and the requests whose client went
    away before sending their whole body (``ClientDisconnect``: a client killed mid-request) out of uvicorn's error
    log; real errors pass."""

    def filter(self, record: logging.LogRecord) -> bool:
        expected = (AnswerDropped, CleverTapDropped, asyncio.CancelledError, ClientDisconnect)
        return not (record.exc_info and isinstance(record.exc_info[1], expected))


_uvicorn_errors = logging.getLogger("uvicorn.error")
if not any(isinstance(f, _QuietDrops) for f in _uvicorn_errors.filters):
    _uvicorn_errors.addFilter(_QuietDrops())


class _Server(uvicorn.Server):
    """A uvicorn server that says when it is listening."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.ready = threading.Event()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        self.ready.set()


class SandboxServer:
    """The sandbox served by uvicorn in a daemon thread, on a socket bound here (``port=0``: any free port).

    Example::

        with SandboxServer(SandboxConfig(rate_limit=Rate(100, 60))) as server:
            httpx.get(server.url + "/v1/campaigns/static-50", headers=...)
            assert server.sandbox.max_in_window() <= 100
    """

    def __init__(
        self,
        config_or_sandbox: SandboxConfig | Sandbox | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        clevertap: CleverTapWorld | None = None,
    ) -> None:
        self.sandbox = (
            config_or_sandbox if isinstance(config_or_sandbox, Sandbox) else Sandbox(config_or_sandbox)
        )
        #: The CleverTap stand-in served on the same port under ``/1/…`` (``None``: Voucherify only).
        self.clevertap = clevertap
        self.host = host
        self.port = port
        self._socket: socket.socket | None = None
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._failure: BaseException | None = None

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT`` (the base URL: paths start with ``/v1``)."""
        return f"http://{self.host}:{self.port}"

    def start(self) -> SandboxServer:
        if self._thread is not None:
            raise RuntimeError("this SandboxServer was already started")
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        # proto=IPPROTO_TCP matters: asyncio only sets TCP_NODELAY on accepted sockets that say they are TCP,
        # and without it every keep-alive answer waits ~40 ms (Nagle vs delayed ACK).
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        # SO_REUSEADDR: a sandbox stopped and started again on the same port (an outage in a fault campaign)
        # can bind while the connections of its previous life linger in TIME_WAIT.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.host, self.port))
        except OSError:
            sock.close()
            raise
        self._socket = sock
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            create_app(self.sandbox, self.clevertap),
            http="h11",
            loop="asyncio",
            lifespan="off",
            access_log=False,
            log_config=None,  # leave the host program's logging alone
            timeout_graceful_shutdown=_STOP_TIMEOUT,
        )
        self._server = _Server(config)
        self._thread = threading.Thread(target=self._run, name=f"sandbox-{self.port}", daemon=True)
        self._thread.start()
        self._server.ready.wait(_START_TIMEOUT)
        if not self._server.started:
            self.stop()
            raise RuntimeError(f"the sandbox server did not start on {self.url}") from self._failure
        return self

    def _run(self) -> None:
        assert self._server is not None and self._socket is not None
        try:
            self._server.run(sockets=[self._socket])
        except BaseException as error:  # SystemExit on a startup failure, included
            self._failure = error
        finally:
            self._server.ready.set()  # wake start() even if startup failed

    def stop(self) -> None:
        """Stop serving: let requests in flight finish (up to 5 s), then close the socket."""
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(_STOP_TIMEOUT + 1.0)
            if self._thread.is_alive():
                self._server.force_exit = True
                self._thread.join(_STOP_TIMEOUT)
        if self._socket is not None:
            self._socket.close()

    def __enter__(self) -> SandboxServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def serve(
    config: SandboxConfig | Sandbox | None = None,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    on_ready: Callable[[SandboxServer], None] | None = None,
    arrivals_path: str | Path | None = None,
    clevertap: CleverTapWorld | None = None,
) -> Sandbox:
    """Serve the sandbox until SIGINT or SIGTERM, then write the arrival log (JSON lines) to ``arrivals_path``
    if given, and return the sandbox (for its ``stats()``). ``on_ready`` gets the running server (its ``url``).

    Must run in the main thread (signal handlers)."""
    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    server = SandboxServer(config, host, port, clevertap=clevertap)
    try:
        with server:
            if on_ready is not None:
                on_ready(server)
            stop.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if arrivals_path is not None:
            server.sandbox.write_arrivals(arrivals_path)
    return server.sandbox

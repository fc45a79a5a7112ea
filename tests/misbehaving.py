"""A misbehaving Voucherify: a real HTTP server on 127.0.0.1 whose answer to each request is scripted.

It sits in front of a real upstream (the loopback sandbox) and forwards whatever is not scripted, so a test can
make the 3rd publication trickle, every look-up of one customer stall, or the whole server refuse connections for
a second, while the rest is answered by the real stand-in::

    with MisbehavingServer(upstream=sandbox().url) as server:
        server.script(stall(2.0), huge(50_000_000))            # the next two requests
        server.when(lambda seen: "cust-7" in seen.text, reply(503, {"code": 503}))  # every request naming cust-7
        server.refuse_for(1.5)                                   # nothing listens for 1.5 s
        ... run a distribution against server.url ...
        server.requests                                          # what arrived, in order

Behaviours (each a function of the connection and the request): :func:`forward`, :func:`reply`, :func:`trickle`,
:func:`huge`, :func:`endless`, :func:`stall`, :func:`drop`, :func:`redirect`.  Every answer closes its connection
(``Connection: close``), so each request is one scripted exchange.  Waits use an event set by :meth:`stop`, so
the server stops at once whatever it is doing.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import selectors
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Self
from urllib.parse import urlsplit


@dataclass(frozen=True)
class Seen:
    """One request as it arrived."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    at: float = field(default_factory=time.monotonic)

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


class Exchange:
    """What a behaviour gets: the connection, the request, the upstream and the server's stop event."""

    def __init__(self, connection: socket.socket, seen: Seen, upstream: str | None, stopping: threading.Event) -> None:
        self.connection = connection
        self.seen = seen
        self.upstream = upstream
        self.stopping = stopping

    def send(self, data: bytes) -> None:
        self.connection.sendall(data)

    def head(self, status: int, headers: dict[str, str] | None = None, *, length: int | None = None) -> None:
        """The status line and headers (``Connection: close``; ``Content-Length`` when ``length`` is given)."""
        lines = [f"HTTP/1.1 {status} {http.client.responses.get(status, 'Status')}", "Connection: close"]
        if length is not None:
            lines.append(f"Content-Length: {length}")
        lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
        self.send(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))

    def wait(self, seconds: float) -> bool:
        """Wait ``seconds``; ``False`` when the server is stopping."""
        return not self.stopping.wait(seconds)


Behaviour = Callable[[Exchange], None]


def forward() -> Behaviour:
    """Relay the request to the upstream and its answer back (the default)."""

    def behave(exchange: Exchange) -> None:
        assert exchange.upstream is not None, "forward() needs an upstream"
        target = urlsplit(exchange.upstream)
        upstream = http.client.HTTPConnection(target.hostname or "127.0.0.1", target.port, timeout=30)
        try:
            seen = exchange.seen
            headers = {k: v for k, v in seen.headers.items() if k.lower() not in ("host", "connection")}
            upstream.request(seen.method, seen.path, body=seen.body or None, headers=headers)
            answer = upstream.getresponse()
            body = answer.read()
            kept = {k: v for k, v in answer.getheaders() if k.lower() not in _HOP_HEADERS}
        finally:
            upstream.close()
        exchange.head(answer.status, kept, length=len(body))
        exchange.send(body)

    return behave


def reply(status: int, body: Any = None, headers: dict[str, str] | None = None) -> Behaviour:
    """A complete answer: ``body`` is JSON (a dict or list), bytes, or nothing."""
    data = body if isinstance(body, bytes) else b"" if body is None else json.dumps(body).encode()
    kind = {"Content-Type": "application/json"} if body is not None and not isinstance(body, bytes) else {}

    def behave(exchange: Exchange) -> None:
        exchange.head(status, {**kind, **(headers or {})}, length=len(data))
        exchange.send(data)

    return behave


def trickle(body: Any, every: float, status: int = 200) -> Behaviour:
    """The headers at once, then the body one byte every ``every`` seconds (each read well within any timeout)."""
    data = body if isinstance(body, bytes) else json.dumps(body).encode()

    def behave(exchange: Exchange) -> None:
        exchange.head(status, {"Content-Type": "application/json"}, length=len(data))
        for index in range(len(data)):
            if not exchange.wait(every):
                return
            exchange.send(data[index : index + 1])

    return behave


def huge(size: int, *, announce: bool = True) -> Behaviour:
    """A 200 whose body is ``size`` bytes of a JSON string (``announce``: with its Content-Length; else chunked)."""

    def behave(exchange: Exchange) -> None:
        chunk = b"x" * 65536
        if announce:
            exchange.head(200, {"Content-Type": "application/json"}, length=size)
            _send_counted(exchange, size, chunk, chunked=False)
        else:
            exchange.head(200, {"Content-Type": "application/json", "Transfer-Encoding": "chunked"})
            _send_counted(exchange, size, chunk, chunked=True)
            exchange.send(b"0\r\n\r\n")

    return behave


def endless() -> Behaviour:
    """A chunked 200 body that never ends (until the client hangs up or the server stops)."""
    return huge(1 << 62, announce=False)


def stall(seconds: float) -> Behaviour:
    """Read the request, say nothing for ``seconds``, then hang up."""

    def behave(exchange: Exchange) -> None:
        exchange.wait(seconds)

    return behave


def drop() -> Behaviour:
    """Hang up without a word (after the request arrived: it may have been committed upstream by a forward)."""
    return lambda exchange: None


def forward_then_drop() -> Behaviour:
    """Forward the request (the upstream commits it), then hang up before answering: a lost answer."""
    relay = forward()

    def behave(exchange: Exchange) -> None:
        exchange.connection = _Mute(exchange.connection)  # type: ignore[assignment]
        relay(exchange)

    return behave


def forward_then_stall(seconds: float) -> Behaviour:
    """Forward the request (the upstream commits it), then say nothing for ``seconds``: the answer never comes."""
    relay = forward()

    def behave(exchange: Exchange) -> None:
        exchange.connection = _Mute(exchange.connection)  # type: ignore[assignment]
        relay(exchange)
        exchange.wait(seconds)

    return behave


def redirect(status: int = 301, location: str = "https://api.voucherify.io/v1/publications") -> Behaviour:
    return reply(status, b"", {"Location": location})


class MisbehavingServer:
    """The scripted server.  ``upstream``: the URL unscripted requests are forwarded to (``None``: 404)."""

    def __init__(self, upstream: str | None = None) -> None:
        self.upstream = upstream
        self.requests: list[Seen] = []
        self._script: deque[Behaviour] = deque()
        self._rules: list[tuple[Callable[[Seen], bool], Behaviour]] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._listener: socket.socket | None = self._listen(0)
        self.port = self._listener.getsockname()[1]
        self._refusing_until = 0.0
        self._thread = threading.Thread(target=self._serve, name="misbehaving-server", daemon=True)
        self._workers: list[threading.Thread] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # ------------------------------------------------------------------ scripting
    def script(self, *behaviours: Behaviour) -> None:
        """The next requests get these behaviours, in order (before any rule)."""
        with self._lock:
            self._script.extend(behaviours)

    def when(self, matches: Callable[[Seen], bool], behaviour: Behaviour) -> None:
        """Every request for which ``matches`` holds gets ``behaviour`` (the first matching rule wins)."""
        with self._lock:
            self._rules.append((matches, behaviour))

    def clear(self) -> None:
        with self._lock:
            self._script.clear()
            self._rules.clear()

    def refuse_for(self, seconds: float) -> None:
        """Stop listening now (connections are refused by the kernel), listen again on the same port later."""
        with self._lock:
            self._refusing_until = time.monotonic() + seconds
            if self._listener is not None:
                self._listener.close()
                self._listener = None

    # ------------------------------------------------------------------ life
    def start(self) -> Self:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(timeout=5)
        for worker in self._workers:
            worker.join(timeout=5)
        with self._lock:
            if self._listener is not None:
                self._listener.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ plumbing
    @staticmethod
    def _listen(port: int) -> socket.socket:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", port))
        listener.listen(128)
        listener.setblocking(False)
        return listener

    def _serve(self) -> None:
        selector = selectors.DefaultSelector()
        registered: socket.socket | None = None
        while not self._stopping.is_set():
            listener = self._current_listener()
            if listener is not registered:
                if registered is not None:
                    with contextlib.suppress(KeyError, ValueError):
                        selector.unregister(registered)
                if listener is not None:
                    selector.register(listener, selectors.EVENT_READ)
                registered = listener
            if listener is None:
                self._stopping.wait(0.01)
                continue
            if not selector.select(timeout=0.02):
                continue
            try:
                connection, _ = listener.accept()
            except (BlockingIOError, OSError):
                continue
            worker = threading.Thread(target=self._handle, args=(connection,), daemon=True)
            self._workers.append(worker)
            worker.start()
        selector.close()

    def _current_listener(self) -> socket.socket | None:
        with self._lock:
            if self._listener is None and time.monotonic() >= self._refusing_until:
                self._listener = self._listen(self.port)
            return self._listener

    def _handle(self, connection: socket.socket) -> None:
        connection.setblocking(True)
        connection.settimeout(30)
        try:
            seen = _read_request(connection)
            if seen is None:
                return
            with self._lock:
                self.requests.append(seen)
                behaviour = self._choose(seen)
            behaviour(Exchange(connection, seen, self.upstream, self._stopping))
        except OSError:
            pass  # the client hung up (a deadline, a cap): that is what these tests provoke
        finally:
            connection.close()

    def _choose(self, seen: Seen) -> Behaviour:
        if self._script:
            return self._script.popleft()
        for matches, behaviour in self._rules:
            if matches(seen):
                return behaviour
        return forward() if self.upstream else reply(404, {"code": 404, "key": "not_found", "message": "Not found"})


_HOP_HEADERS = {"connection", "keep-alive", "transfer-encoding", "content-length", "date", "server"}


class _Mute:
    """A connection that swallows everything sent: the answer is lost."""

    def __init__(self, inner: socket.socket) -> None:
        self._inner = inner

    def sendall(self, data: bytes) -> None:
        pass


def _send_counted(exchange: Exchange, size: int, chunk: bytes, *, chunked: bool) -> None:
    sent = 0
    while sent < size and not exchange.stopping.is_set():
        piece = chunk[: min(len(chunk), size - sent)]
        exchange.send(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece)
        sent += len(piece)


def _read_request(connection: socket.socket) -> Seen | None:
    data = b""
    while b"\r\n\r\n" not in data:
        piece = connection.recv(65536)
        if not piece:
            return None
        data += piece
    head, _, body = data.partition(b"\r\n\r\n")
    request_line, *header_lines = head.decode("latin-1").split("\r\n")
    method, path, _ = request_line.split(" ", 2)
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip()] = value.strip()
    length = int(next((v for k, v in headers.items() if k.lower() == "content-length"), "0"))
    while len(body) < length:
        piece = connection.recv(65536)
        if not piece:
            break
        body += piece
    return Seen(method, path, headers, body)


def requests_to(server: MisbehavingServer, method: str, path: str) -> Iterator[Seen]:
    """The requests that arrived for ``method path`` (the path without its query)."""
    return (seen for seen in list(server.requests) if seen.method == method and seen.path.split("?")[0] == path)

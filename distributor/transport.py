"""A lean HTTP/1.1 transport for httpx: keep-alive connections over asyncio streams, a few microseconds per request.

httpx's own transport (httpcore + h11) cost about 1.5 ms of CPU per request at 32 in flight: its pool checks every
connection at every request start and end (a ``getpeername()`` and a ``poll()`` each), h11 parses byte by byte in
Python, and head and body go out in two ``send()`` calls.  This transport keeps what the project relies on and
nothing else:

* a queue of idle keep-alive connections per origin, at most ``max_connections`` open at once (a request that
  waits longer than the pool timeout for one gets :class:`httpx.PoolTimeout`); the connection idle longest is
  used first, so while calls go on every connection the pool grew to stays in use and none reaches
  ``keepalive_expiry`` (a stack let the ones at its bottom expire whenever fewer calls were in flight for a few
  seconds, and reopened them when more were: 59 connections for 32 in flight on a busy machine);
* a connection the server closed while idle is seen before it is used and replaced: the event loop has usually
  read its EOF already, and a connection idle longer than ``recheck_after`` seconds is also asked (one
  non-blocking ``select()``) whether anything arrived — a busy pool's connections, idle for microseconds, cost no
  system call; a request is never sent twice here — a connection that fails once the request is written is the
  caller's failure, retried (or not) by the caller's own policy;
* head and body written in one ``write()``; the answer's head read in one ``readuntil``; ``Content-Length``,
  ``chunked`` and read-until-close bodies; 1xx interim answers skipped;
* a connection goes back to the pool only once its answer was read to the end; an answer closed early, a call
  cancelled mid-way or any error closes it;
* TLS with certificate verification as httpx does it (:func:`httpx.create_ssl_context`: certifi, or
  ``SSL_CERT_FILE``), for ``https://`` origins;
* httpx's timeouts from the request: ``connect``, ``read`` (each read), ``write``, ``pool``.

No proxies, no HTTP/2: :func:`lean_transport` gives ``None`` (httpx's own transport) when a proxy is configured in
the environment.  Errors are httpx's (:class:`httpx.ConnectError`, :class:`httpx.ReadTimeout`,
:class:`httpx.RemoteProtocolError` …), so callers cannot tell the transports apart; their messages never quote what
the server sent (a server may echo a secret header).
"""

from __future__ import annotations

import asyncio
import select
import ssl
import urllib.request
from collections import deque
from collections.abc import AsyncIterator, Coroutine
from typing import Any, NamedTuple

import httpx

__all__ = ["LeanTransport", "lean_transport"]

#: The longest answer head read (status line and headers), as h11's default.
MAX_HEAD_BYTES = 64 * 1024
_CHUNK = 64 * 1024
_NO_BODY_STATUSES = frozenset({204, 304})
Origin = tuple[str, str, int]


def lean_transport(url: str, **options: Any) -> LeanTransport | None:
    """A :class:`LeanTransport`, or ``None`` (let httpx choose its own) when the environment names a proxy that
    httpx would use for ``url``."""
    scheme = httpx.URL(url).scheme
    proxies = urllib.request.getproxies()
    if any(proxies.get(name) for name in (scheme, "all")):
        return None
    return LeanTransport(**options)


class LeanTransport(httpx.AsyncBaseTransport):
    """HTTP/1.1 keep-alive over asyncio streams.  See the module's documentation."""

    def __init__(
        self,
        *,
        max_connections: int = 100,
        keepalive_expiry: float = 5.0,
        recheck_after: float = 0.5,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self._keepalive_expiry = keepalive_expiry
        self._recheck_after = recheck_after
        self._ssl_context = ssl_context
        self._idle: dict[Origin, deque[_Connection]] = {}
        self._slots = asyncio.Semaphore(max_connections)
        self._closed = False
        #: TCP connections opened (for tests and benchmarks: a stable pool opens about as many as it needs)
        self.opened = 0

    # ------------------------------------------------------------------ httpx's interface
    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self._closed:
            raise RuntimeError("the transport is closed")
        timeouts: dict[str, float | None] = request.extensions.get("timeout", {})
        await self._take_slot(timeouts.get("pool"))
        connection: _Connection | None = None
        try:
            url = request.url
            origin = (url.scheme, url.host, url.port or (443 if url.scheme == "https" else 80))
            connection = self._idle_connection(origin) or await self._connect(origin, timeouts.get("connect"))
            await connection.send(_request_bytes(request, await _body_of(request)), timeouts.get("write"))
            status, reason, headers, version = await connection.read_head(timeouts.get("read"))
            framing = _framing(request.method, status, headers, version)
        except BaseException:
            if connection is not None:
                connection.close(abort=True)
            self._slots.release()
            raise
        stream = _AnswerStream(self, origin, connection, framing, timeouts.get("read"))
        return httpx.Response(
            status, headers=headers, stream=stream,
            extensions={"http_version": version, "reason_phrase": reason},
        )

    async def aclose(self) -> None:
        self._closed = True
        for connections in self._idle.values():
            for connection in connections:
                connection.close()
        self._idle.clear()

    # ------------------------------------------------------------------ the pool
    @property
    def idle(self) -> int:
        """Idle keep-alive connections held."""
        return sum(len(connections) for connections in self._idle.values())

    async def _take_slot(self, timeout: float | None) -> None:
        if not self._slots.locked():
            await self._slots.acquire()
            return
        try:
            async with asyncio.timeout(timeout):
                await self._slots.acquire()
        except TimeoutError:
            raise httpx.PoolTimeout(f"no free connection within {timeout}s") from None

    def _idle_connection(self, origin: Origin) -> _Connection | None:
        """The connection to ``origin`` idle longest and still open; the stale ones are closed."""
        waiting = self._idle.get(origin)
        now = asyncio.get_running_loop().time()
        while waiting:
            connection = waiting.popleft()
            if connection.usable(now, self._keepalive_expiry, self._recheck_after):
                return connection
            connection.close()
        return None

    async def _connect(self, origin: Origin, timeout: float | None) -> _Connection:
        scheme, host, port = origin
        context = None
        if scheme == "https":
            context = self._ssl_context or _default_ssl_context()
        try:
            async with asyncio.timeout(timeout):
                reader, writer = await asyncio.open_connection(
                    host, port, ssl=context, server_hostname=host if context else None, limit=MAX_HEAD_BYTES
                )
        except TimeoutError:
            raise httpx.ConnectTimeout(f"no connection to {host}:{port} within {timeout}s") from None
        except (OSError, ssl.SSLError) as error:
            raise httpx.ConnectError(str(error) or type(error).__name__) from None
        self.opened += 1
        return _Connection(reader, writer)

    def _release(self, origin: Origin, connection: _Connection, *, read_whole: bool, keep_alive: bool) -> None:
        """The answer on ``connection`` was read to its end (or abandoned): keep the connection for the next
        request, or close it — at once (a reset) if the rest of the answer is still on its way."""
        if read_whole and keep_alive and not self._closed:
            connection.idle_since = asyncio.get_running_loop().time()
            self._idle.setdefault(origin, deque()).append(connection)
        else:
            connection.close(abort=not read_whole)
        self._slots.release()


_ssl_context: ssl.SSLContext | None = None


def _default_ssl_context() -> ssl.SSLContext:
    """httpx's default verification (certifi or ``SSL_CERT_FILE``), made once: loading the CA bundle costs ~20 ms."""
    global _ssl_context
    if _ssl_context is None:
        _ssl_context = httpx.create_ssl_context()
    return _ssl_context


async def _body_of(request: httpx.Request) -> bytes:
    try:
        return request.content
    except httpx.RequestNotRead:
        return await request.aread()


def _request_bytes(request: httpx.Request, body: bytes) -> bytes:
    """The request line, headers and body in one piece (one ``write()``, one ``send()``)."""
    parts = [request.method.encode("ascii"), b" ", request.url.raw_path, b" HTTP/1.1\r\n"]
    has_length = False
    for name, value in request.headers.raw:
        lowered = name.lower()
        if lowered == b"transfer-encoding":  # a streamed body was read whole: it goes with a Content-Length
            continue
        has_length = has_length or lowered == b"content-length"
        parts += [name, b": ", value, b"\r\n"]
    if body and not has_length:
        parts += [b"Content-Length: ", str(len(body)).encode("ascii"), b"\r\n"]
    parts += [b"\r\n", body]
    return b"".join(parts)


class _Connection:
    """One TCP (or TLS) connection: write a request, read an answer."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.idle_since = 0.0

    def usable(self, now: float, expiry: float, recheck_after: float) -> bool:
        """Open, not closed by the server while idle, sent nothing unasked (a 408, say), not idle too long."""
        idle = now - self.idle_since
        unasked: bytes = getattr(self.reader, "_buffer", b"")
        if self.reader.at_eof() or self.writer.is_closing() or unasked or idle >= expiry:
            return False
        return idle < recheck_after or not self._readable()

    def _readable(self) -> bool:
        """Whether the socket has something to read (an EOF, a reset, bytes) that the loop has not read yet."""
        sock = self.writer.get_extra_info("socket")
        if sock is None:
            return False
        try:
            readable, _, _ = select.select([sock], [], [], 0)
        except (OSError, ValueError):
            return True
        return bool(readable)

    async def send(self, data: bytes, timeout: float | None) -> None:
        try:
            self.writer.write(data)
            if self.writer.transport.get_write_buffer_size():
                async with asyncio.timeout(timeout):
                    await self.writer.drain()
        except TimeoutError:
            raise httpx.WriteTimeout("the request could not be written in time") from None
        except (OSError, RuntimeError) as error:
            raise httpx.WriteError(str(error) or type(error).__name__) from None

    async def read_head(self, timeout: float | None) -> tuple[int, bytes, list[tuple[bytes, bytes]], bytes]:
        """Status, reason, headers and HTTP version of the answer (1xx interim answers skipped)."""
        while True:
            head = await _reading(self.reader.readuntil(b"\r\n\r\n"), "the answer's head", timeout)
            status, reason, headers, version = _parse_head(head)
            if not 100 <= status < 200 or status == 101:
                return status, reason, headers, version

    async def read(self, size: int, timeout: float | None) -> bytes:
        return await _reading(self.reader.readexactly(size), "the answer's body", timeout)

    async def read_line(self, timeout: float | None) -> bytes:
        return await _reading(self.reader.readuntil(b"\r\n"), "a chunk's size", timeout)

    async def read_some(self, timeout: float | None) -> bytes:
        return await _reading(self.reader.read(_CHUNK), "the answer's body", timeout)

    def close(self, *, abort: bool = False) -> None:
        """Close the connection; ``abort``: at once, dropping whatever is unsent or unread (a half-read answer)."""
        transport = self.writer.transport
        if abort:
            transport.abort()
        elif not transport.is_closing():
            transport.close()


async def _reading(operation: Coroutine[Any, Any, bytes], what: str, timeout: float | None) -> bytes:
    """``operation``'s bytes, within ``timeout`` seconds if one is given; its failures as httpx's errors."""
    try:
        if timeout is None:  # the caller's deadline bounds the whole call (distributor.exchange.Session)
            return await operation
        async with asyncio.timeout(timeout):
            return await operation
    except TimeoutError:
        raise httpx.ReadTimeout(f"no more of {what} within {timeout}s") from None
    except asyncio.IncompleteReadError as error:
        if not error.partial and what == "the answer's head":
            raise httpx.RemoteProtocolError("Server disconnected without sending a response.") from None
        raise httpx.RemoteProtocolError(f"the server closed the connection in the middle of {what}") from None
    except asyncio.LimitOverrunError:
        raise httpx.RemoteProtocolError(f"{what} is longer than {MAX_HEAD_BYTES} bytes") from None
    except OSError as error:
        raise httpx.ReadError(str(error) or type(error).__name__) from None


def _parse_head(head: bytes) -> tuple[int, bytes, list[tuple[bytes, bytes]], bytes]:
    status_line, *lines = head[:-4].split(b"\r\n")
    try:
        version, code, *rest = status_line.split(b" ", 2)
        if not version.startswith(b"HTTP/1.") or len(code) != 3:
            raise ValueError
        status = int(code)
    except ValueError:
        raise httpx.RemoteProtocolError("the answer does not start with an HTTP/1.x status line") from None
    headers = []
    for line in lines:
        name, colon, value = line.partition(b":")
        if not colon or not name or name != name.strip():
            raise httpx.RemoteProtocolError("a malformed header line in the answer")
        headers.append((name, value.strip(b" \t")))
    return status, rest[0] if rest else b"", headers, version


class _Framing(NamedTuple):
    """How the answer's body is delimited, and whether the connection can carry another request after it."""

    length: int | None  # None: chunked, or until the server closes (then keep_alive is False)
    chunked: bool
    keep_alive: bool


def _framing(method: str, status: int, headers: list[tuple[bytes, bytes]], version: bytes) -> _Framing:
    length: int | None = None
    chunked = False
    keep_alive = version == b"HTTP/1.1"
    for name, value in headers:
        lowered = name.lower()
        if lowered == b"content-length":
            if not value.isdigit() or (length is not None and length != int(value)):
                raise httpx.RemoteProtocolError("a malformed Content-Length in the answer")
            length = int(value)
        elif lowered == b"transfer-encoding":
            chunked = value.lower().rstrip().endswith(b"chunked")
        elif lowered == b"connection":
            tokens = {token.strip() for token in value.lower().split(b",")}
            keep_alive = (keep_alive or b"keep-alive" in tokens) and b"close" not in tokens
    if method == "HEAD" or status in _NO_BODY_STATUSES or 100 <= status < 200:
        return _Framing(0, False, keep_alive)
    if chunked:
        return _Framing(None, True, keep_alive)
    if length is None:  # the body runs until the server closes the connection
        return _Framing(None, False, False)
    return _Framing(length, False, keep_alive)


class _AnswerStream(httpx.AsyncByteStream):
    """The answer's body as it arrives; the connection goes back to the pool once it was read to its end."""

    def __init__(
        self, transport: LeanTransport, origin: Origin, connection: _Connection, framing: _Framing,
        timeout: float | None,
    ) -> None:
        self._transport, self._origin, self._connection, self._timeout = transport, origin, connection, timeout
        self._framing = framing
        self._done = False  # read to its end
        self._released = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._chunks():
                yield chunk
            self._done = True
        except BaseException:
            self._release()
            raise
        self._release()

    async def _chunks(self) -> AsyncIterator[bytes]:
        connection, timeout, framing = self._connection, self._timeout, self._framing
        if framing.chunked:
            while True:
                size_line = await connection.read_line(timeout)
                try:
                    size = int(size_line.split(b";", 1)[0].strip(), 16)
                except ValueError:
                    raise httpx.RemoteProtocolError("a malformed chunk size in the answer") from None
                if size == 0:
                    while await connection.read_line(timeout) != b"\r\n":  # trailers, then the empty line
                        pass
                    return
                while size:  # the announced size is the server's word: a slice at a time, under the caller's cap
                    piece = await connection.read(min(size, _CHUNK), timeout)
                    size -= len(piece)
                    yield piece
                if await connection.read(2, timeout) != b"\r\n":
                    raise httpx.RemoteProtocolError("a chunk does not end with CRLF")
        elif framing.length is not None:
            left = framing.length
            while left:
                chunk = await connection.read(min(left, _CHUNK), timeout)
                left -= len(chunk)
                yield chunk
        else:
            while chunk := await connection.read_some(timeout):
                yield chunk

    async def aclose(self) -> None:
        self._release()

    def _release(self) -> None:
        if not self._released:
            self._released = True
            self._transport._release(
                self._origin, self._connection, read_whole=self._done, keep_alive=self._framing.keep_alive
            )

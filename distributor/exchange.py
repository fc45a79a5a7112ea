"""One HTTP exchange that a misbehaving server cannot stretch: a deadline for the whole call, a cap on the body.

Both API clients send their requests through one bounded exchange — Voucherify's through :meth:`Session.exchange`,
CleverTap's (an ``httpx.AsyncClient``) through :func:`bounded_exchange`.  ``deadline`` is
the limit of the *whole* exchange — connect, send, headers and body — not of each read, so a body trickled a byte
at a time ends like a silent server.  The body is read as it streams in and abandoned as soon as it exceeds
``max_body`` bytes (decompressed), so a huge or endless answer costs at most that much memory.  Whatever goes wrong
comes out as :class:`NoCompleteAnswer`, which each client turns into its own error type.

:class:`Session` sends prepared requests straight to the transport (the lean one of ``distributor.transport`` by
default): the URL of each path parsed once, the fixed headers encoded once, no per-request client machinery
(``httpx.AsyncClient`` cost more CPU per publication than the whole exchange on a lean transport).  What a client
would do for such a request and does not here: cookies (the APIs set none), auth flows and redirects (none are
followed: a 3xx is an answer like any other).  When the environment names a proxy, a :class:`Session` sends
through an ``httpx.AsyncClient`` instead, so proxies work as httpx has them.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterable, AsyncIterator, Callable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any
from urllib.parse import urlencode

import anyio
import httpx

from .transport import lean_transport

__all__ = ["NoCompleteAnswer", "Session", "bounded_exchange"]

#: What is called with the response as soon as its headers arrive.
OnHeaders = Callable[[httpx.Response], None]


class NoCompleteAnswer(Exception):
    """No whole answer arrived: ``kind`` is ``timeout``, ``connection`` or ``oversized answer``."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind
        self.detail = detail


async def bounded_exchange(
    client: httpx.AsyncClient,
    method: str,
    path: str,
    *,
    deadline: float,
    max_body: int,
    on_headers: OnHeaders | None = None,
    **request: Any,
) -> tuple[httpx.Response, bytes]:
    """Send one request and read its whole answer within ``deadline`` seconds; returns the response and its body.

    ``on_headers`` sees the response as soon as its headers arrive (rate-limit headers, say), whatever follows.
    Raises :class:`NoCompleteAnswer`.
    """
    return await _bounded(client.stream(method, path, **request), deadline, max_body, on_headers)


class Session:
    """Requests to one API (``base_url`` and its fixed ``headers``) through one transport; see the module's text.

    ``transport``: any httpx transport (``httpx.ASGITransport`` in tests); by default the lean one, or httpx's own
    when a proxy is configured.
    """

    def __init__(
        self,
        base_url: str,
        headers: Mapping[str, str],
        *,
        timeout: httpx.Timeout,
        max_connections: int,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.base_url = httpx.URL(base_url.rstrip("/"))
        self._base_path = self.base_url.raw_path.rstrip(b"/").decode("ascii")
        if transport is None:
            transport = lean_transport(base_url, max_connections=max_connections)
        #: httpx's client, only when no transport was given and a proxy is configured (httpx mounts it)
        self._client = None if transport is not None else httpx.AsyncClient(
            timeout=timeout, follow_redirects=False,
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
        )
        self._transport = transport
        fixed = httpx.Headers({"Host": self.base_url.netloc.decode("ascii"), "Accept-Encoding": "gzip, deflate",
                               **headers})
        self._headers = fixed
        self._json_headers = httpx.Headers([*fixed.raw, (b"Content-Type", b"application/json")])
        # Every request goes through ``exchange``, whose deadline bounds the whole call, each read and write
        # included: the transport need not arm a timer of its own per read or write, only to connect and to wait
        # for a connection of the pool.
        self._extensions = {"timeout": {**timeout.as_dict(), "read": None, "write": None}}
        self._urls: dict[tuple[str, str], httpx.URL] = {}

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
        elif self._transport is not None:
            await self._transport.aclose()

    def request(
        self, method: str, path: str, *, params: Mapping[str, str] | None = None, json: Any = None
    ) -> httpx.Request:
        """The request, its URL and headers prepared once per path (and query) and reused."""
        query = urlencode(params) if params else ""
        url = self._urls.get((path, query))
        if url is None:
            url = self.base_url.copy_with(raw_path=(self._base_path + path + ("?" + query if query else "")).encode())
            if len(self._urls) < 64:  # the publications' and the campaign's; look-ups vary and are few
                self._urls[path, query] = url
        if json is None:
            return httpx.Request(method, url, headers=self._headers, extensions=self._extensions)
        # as httpx would make it from json=…, without its header merging: the body and its length given
        body = _json_bytes(json)
        headers = httpx.Headers(self._json_headers)  # a copy of the encoded list, nothing normalised again
        headers["Content-Length"] = str(len(body))
        request = httpx.Request(method, url, headers=headers, stream=httpx.ByteStream(body),
                                extensions=self._extensions)
        request.read()  # the body is known: request.content, as with content=…
        return request

    async def exchange(
        self,
        method: str,
        path: str,
        *,
        deadline: float,
        max_body: int,
        on_headers: OnHeaders | None = None,
        params: Mapping[str, str] | None = None,
        json: Any = None,
    ) -> tuple[httpx.Response, bytes]:
        """As :func:`bounded_exchange`: one whole exchange within ``deadline``, at most ``max_body`` bytes read."""
        request = self.request(method, path, params=params, json=json)
        return await _bounded(self._send(request), deadline, max_body, on_headers)

    @asynccontextmanager
    async def _send(self, request: httpx.Request) -> AsyncIterator[httpx.Response]:
        if self._client is not None:
            response = await self._client.send(request, stream=True)
        else:
            assert self._transport is not None
            response = await self._transport.handle_async_request(request)
            response.request = request
        try:
            yield response
        finally:
            await response.aclose()


async def _bounded(
    opening: AbstractAsyncContextManager[httpx.Response], deadline: float, max_body: int,
    on_headers: OnHeaders | None,
) -> tuple[httpx.Response, bytes]:
    with anyio.move_on_after(deadline) as scope:
        try:
            async with opening as response:
                if on_headers is not None:
                    on_headers(response)
                content = await _read_capped(response, max_body)
        except httpx.TimeoutException as exc:
            raise NoCompleteAnswer("timeout", type(exc).__name__) from None
        except httpx.TransportError as exc:
            raise NoCompleteAnswer("connection", f"{type(exc).__name__}: {exc}") from None
    if scope.cancelled_caught:
        raise NoCompleteAnswer("timeout", f"no complete answer within {deadline:g}s")
    return response, content


def _json_bytes(value: Any) -> bytes:
    """As httpx encodes ``json=``: compact, UTF-8, no NaN."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode("utf-8")


async def _read_capped(response: httpx.Response, max_body: int) -> bytes:
    declared = response.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_body:
        raise NoCompleteAnswer("oversized answer", f"{declared} bytes announced, at most {max_body} read")
    chunks: list[bytes] = []
    size = 0
    # an encoded body goes through httpx's decoders (gzip, deflate …): the cap counts decompressed bytes
    raw = response.stream
    body: AsyncIterable[bytes] = response.aiter_bytes()
    if isinstance(raw, httpx.AsyncByteStream) and "content-encoding" not in response.headers:
        body = raw  # as it came: httpx's per-chunk machinery (decoders, chunker) has nothing to do
    async for chunk in body:
        size += len(chunk)
        if size > max_body:
            raise NoCompleteAnswer("oversized answer", f"more than {max_body} bytes")
        chunks.append(chunk)
    return b"".join(chunks)

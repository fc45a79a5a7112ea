"""One HTTP exchange that a misbehaving server cannot stretch: a deadline for the whole call, a cap on the body.

Both API clients (Voucherify and CleverTap) send their requests through :func:`bounded_exchange`.  ``deadline`` is
the limit of the *whole* exchange — connect, send, headers and body — not of each read, so a body trickled a byte
at a time ends like a silent server.  The body is read as it streams in and abandoned as soon as it exceeds
``max_body`` bytes (decompressed), so a huge or endless answer costs at most that much memory.  Whatever goes wrong
comes out as :class:`NoCompleteAnswer`, which each client turns into its own error type.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anyio
import httpx

__all__ = ["NoCompleteAnswer", "bounded_exchange"]


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
    on_headers: Callable[[httpx.Response], None] | None = None,
    **request: Any,
) -> tuple[httpx.Response, bytes]:
    """Send one request and read its whole answer within ``deadline`` seconds; returns the response and its body.

    ``on_headers`` sees the response as soon as its headers arrive (rate-limit headers, say), whatever follows.
    Raises :class:`NoCompleteAnswer`.
    """
    with anyio.move_on_after(deadline) as scope:
        try:
            async with client.stream(method, path, **request) as response:
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


async def _read_capped(response: httpx.Response, max_body: int) -> bytes:
    declared = response.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_body:
        raise NoCompleteAnswer("oversized answer", f"{declared} bytes announced, at most {max_body} read")
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > max_body:
            raise NoCompleteAnswer("oversized answer", f"more than {max_body} bytes")
        chunks.append(chunk)
    return b"".join(chunks)

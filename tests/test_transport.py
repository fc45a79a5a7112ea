"""The lean transport does what httpx's own did for the client: keep-alive reuse, a pool at the calls' need, stale
connections replaced, chunked and gzip answers, half-read connections never reused, TLS verified.

Each test runs a real HTTP/1.1 server on 127.0.0.1 (asyncio streams, in the test's own event loop) whose handler is
scripted per test, and counts the TCP connections it accepted.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import shutil
import ssl
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from distributor.credentials import Credentials
from distributor.exchange import Session
from distributor.transport import LeanTransport, lean_transport
from distributor.voucherify import TransportError, VoucherifyClient

KEYS = Credentials("app-id-1", "tok-secret")

#: a handler answers one request on a connection; returning False closes the connection after it
Handler = Callable[[bytes, bytes, asyncio.StreamWriter], Awaitable[bool]]


class Server:
    """A scripted HTTP/1.1 server on 127.0.0.1."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.connections = 0
        self.requests: list[bytes] = []
        self.closed = asyncio.Event()  # set each time the server closes a connection
        self.url = ""

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next((int(line[15:]) for line in head.split(b"\r\n")
                               if line[:15].lower() == b"content-length:"), 0)
                body = await reader.readexactly(length)
                self.requests.append(head + body)
                if not await self.handler(head, body, writer):
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()
            self.closed.set()


@asynccontextmanager
async def serving(handler: Handler, ssl_context: ssl.SSLContext | None = None) -> AsyncIterator[Server]:
    server = Server(handler)
    listening = await asyncio.start_server(server.serve, "127.0.0.1", 0, ssl=ssl_context)
    port = listening.sockets[0].getsockname()[1]
    server.url = f"{'https' if ssl_context else 'http'}://127.0.0.1:{port}"
    async with listening:
        yield server


def publication_of(body: bytes) -> bytes:
    request = json.loads(body)
    return json.dumps({
        "id": "pub_1", "source_id": request["source_id"], "customer": {"source_id": request["customer"]["source_id"]},
        "voucher": {"code": f"CODE-{request['source_id']}", "campaign": "reactivation-20", "campaign_id": "camp_1"},
    }).encode()


async def answer(head: bytes, body: bytes, writer: asyncio.StreamWriter) -> bool:
    """A publication echoing the request, keep-alive."""
    content = publication_of(body)
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                 % (len(content), content))
    return True


def run(main: Callable[[], Awaitable[Any]]) -> Any:
    return anyio.run(main, backend="asyncio")


async def publish(client: VoucherifyClient, n: int) -> str:
    publication = await client.publish(campaign="reactivation-20", customer_source_id=f"cust-{n}", source_id=f"k-{n}")
    assert publication.customer_source_id == f"cust-{n}"
    return publication.code


def test_calls_one_after_another_reuse_one_connection() -> None:
    async def main() -> tuple[list[str], int, int]:
        async with serving(answer) as server:
            transport = LeanTransport()
            async with VoucherifyClient(server.url, KEYS, transport=transport) as client:
                codes = [await publish(client, n) for n in range(20)]
            return codes, server.connections, transport.opened

    codes, connections, opened = run(main)
    assert codes == [f"CODE-k-{n}" for n in range(20)]
    assert (connections, opened) == (1, 1)


def test_the_pool_opens_as_many_connections_as_calls_in_flight_and_keeps_them() -> None:
    async def main() -> tuple[int, int, int]:
        async with serving(answer) as server:
            transport = LeanTransport(max_connections=36)
            async with VoucherifyClient(server.url, KEYS, transport=transport) as client:
                for round_ in range(10):
                    async with anyio.create_task_group() as calls:
                        for n in range(32):
                            calls.start_soon(publish, client, 32 * round_ + n)
                idle = transport.idle
            return server.connections, len(server.requests), idle

    connections, requests, idle = run(main)
    assert requests == 320
    assert connections == 32
    assert idle == 32


def test_the_request_goes_out_whole_with_the_clients_headers_and_body() -> None:
    async def main() -> bytes:
        async with serving(answer) as server, VoucherifyClient(server.url, KEYS) as client:
            await publish(client, 7)
            return server.requests[0]

    sent = run(main)
    head, _, body = sent.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines[0] == b"POST /v1/publications HTTP/1.1"
    headers = {name.lower(): value for name, _, value in (line.partition(b": ") for line in lines[1:])}
    assert headers[b"x-app-id"] == b"app-id-1" and headers[b"x-app-token"] == b"tok-secret"
    assert headers[b"host"].startswith(b"127.0.0.1:")
    assert headers[b"content-type"] == b"application/json"
    assert int(headers[b"content-length"]) == len(body)
    assert json.loads(body) == {"campaign": {"name": "reactivation-20"}, "customer": {"source_id": "cust-7"},
                                "source_id": "k-7"}


def test_a_connection_the_server_closed_while_idle_is_replaced_not_failed() -> None:
    async def close_after_answer(head: bytes, body: bytes, writer: asyncio.StreamWriter) -> bool:
        await answer(head, body, writer)
        return False  # closes the connection after its answer, without saying so (no Connection: close)

    async def main() -> tuple[list[str], int]:
        async with serving(close_after_answer) as server:
            transport = LeanTransport(recheck_after=0.0)  # an idle connection is always asked before its reuse
            async with VoucherifyClient(server.url, KEYS, transport=transport) as client:
                codes = []
                for n in range(3):
                    server.closed.clear()
                    codes.append(await publish(client, n))
                    await server.closed.wait()  # the server has closed the connection the answer came on
            return codes, server.connections

    codes, connections = run(main)
    assert codes == ["CODE-k-0", "CODE-k-1", "CODE-k-2"]
    assert connections == 3


def test_connection_close_in_the_answer_is_honoured() -> None:
    async def say_close(head: bytes, body: bytes, writer: asyncio.StreamWriter) -> bool:
        content = publication_of(body)
        writer.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s" % (len(content), content))
        return True  # the server would read on: the client must not send there

    async def main() -> tuple[int, int]:
        async with serving(say_close) as server:
            async with VoucherifyClient(server.url, KEYS) as client:
                for n in range(3):
                    await publish(client, n)
            return server.connections, len(server.requests)

    assert run(main) == (3, 3)


def test_chunked_and_gzip_answers_are_read_and_the_connection_reused() -> None:
    async def chunked_gzip(head: bytes, body: bytes, writer: asyncio.StreamWriter) -> bool:
        content = gzip.compress(publication_of(body))
        half = len(content) // 2
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n")
        writer.write(b"%x;ext=1\r\n%s\r\n%x\r\n%s\r\n0\r\nX-Trailer: yes\r\n\r\n"
                     % (half, content[:half], len(content) - half, content[half:]))
        return True

    async def main() -> tuple[list[str], int]:
        async with serving(chunked_gzip) as server:
            async with VoucherifyClient(server.url, KEYS) as client:
                codes = [await publish(client, n) for n in range(3)]
            return codes, server.connections

    assert run(main) == (["CODE-k-0", "CODE-k-1", "CODE-k-2"], 1)


def test_a_body_until_the_server_closes_is_read_whole_and_its_connection_not_reused() -> None:
    async def until_close(head: bytes, body: bytes, writer: asyncio.StreamWriter) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n" + publication_of(body))
        return False

    async def main() -> tuple[list[str], int]:
        async with serving(until_close) as server:
            async with VoucherifyClient(server.url, KEYS) as client:
                codes = [await publish(client, n) for n in range(2)]
            return codes, server.connections

    assert run(main) == (["CODE-k-0", "CODE-k-1"], 2)


def test_a_call_cancelled_mid_answer_does_not_leave_its_connection_in_the_pool() -> None:
    stalled = {"first": True}

    async def stall_first(head: bytes, body: bytes, writer: asyncio.StreamWriter) -> bool:
        content = publication_of(body)
        if stalled.pop("first", False):
            # half the body, then nothing: the client gives up at its deadline
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(content), content[:10]))
            await writer.drain()
            return True
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(content), content))
        return True

    async def main() -> tuple[str, str, int, int]:
        async with serving(stall_first) as server:
            transport = LeanTransport()
            async with VoucherifyClient(server.url, KEYS, timeout=0.3, transport=transport) as client:
                with pytest.raises(TransportError) as caught:
                    await publish(client, 1)
                idle_after_timeout = transport.idle
                code = await publish(client, 2)
            return caught.value.kind, code, idle_after_timeout, server.connections

    kind, code, idle, connections = run(main)
    assert kind == "timeout"
    assert idle == 0  # the half-read connection was closed, not pooled
    assert code == "CODE-k-2"  # the next call got its own answer, not the rest of the first one
    assert connections == 2


def test_an_answer_closed_before_its_end_closes_its_connection() -> None:
    async def main() -> tuple[int, int]:
        async with serving(answer) as server:
            transport = LeanTransport()
            session = Session(server.url, {}, timeout=httpx.Timeout(5.0), max_connections=4, transport=transport)
            request = session.request("POST", "/v1/publications", json={
                "campaign": {"name": "x"}, "customer": {"source_id": "c"}, "source_id": "k"})
            response = await transport.handle_async_request(request)
            await response.aclose()  # nothing of the body read
            idle = transport.idle
            await session.aclose()
            return idle, server.connections

    assert run(main) == (0, 1)


def test_waiting_longer_than_the_pool_timeout_for_a_connection_is_a_timeout() -> None:
    release = asyncio.Event()

    async def hold(head: bytes, body: bytes, writer: asyncio.StreamWriter) -> bool:
        await release.wait()
        return await answer(head, body, writer)

    async def main() -> tuple[str, str, int]:
        async with serving(hold) as server:
            transport = LeanTransport(max_connections=1)
            holder = VoucherifyClient(server.url, KEYS, timeout=30.0, transport=transport)
            waiter = VoucherifyClient(server.url, KEYS, timeout=0.3, transport=transport)
            codes: list[str] = []

            async def holding() -> None:  # holds the only connection until the server answers
                codes.append(await publish(holder, 1))

            async with anyio.create_task_group() as calls:
                calls.start_soon(holding)
                await anyio.wait_all_tasks_blocked()
                with pytest.raises(TransportError) as caught:
                    await publish(waiter, 2)
                release.set()
            await holder.aclose()
            return caught.value.kind, codes[0], server.connections

    assert run(main) == ("timeout", "CODE-k-1", 1)


def test_a_malformed_answer_is_a_connection_failure() -> None:
    async def garbage(head: bytes, body: bytes, writer: asyncio.StreamWriter) -> bool:
        writer.write(b"SMTP ready\r\n\r\n")
        return False

    async def main() -> TransportError:
        async with serving(garbage) as server, VoucherifyClient(server.url, KEYS) as client:
            with pytest.raises(TransportError) as caught:
                await publish(client, 1)
            return caught.value

    failure = run(main)
    assert failure.kind == "connection"
    assert "RemoteProtocolError" in failure.detail


def test_a_proxy_in_the_environment_leaves_the_transport_to_httpx(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    assert isinstance(lean_transport("https://api.voucherify.io"), LeanTransport)
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:3128")
    assert lean_transport("https://api.voucherify.io") is None
    assert isinstance(lean_transport("http://127.0.0.1:8000"), LeanTransport)


# ---------------------------------------------------------------------- TLS
@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (made by the openssl command)."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("no openssl command to make a certificate")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )
    return cert, key


def test_tls_is_spoken_and_its_certificate_verified(certificate: tuple[Path, Path]) -> None:
    cert, key = certificate
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(cert, key)
    trusting = ssl.create_default_context(cafile=str(cert))

    async def main() -> tuple[list[str], int, TransportError]:
        async with serving(answer, server_context) as server:
            transport = LeanTransport(ssl_context=trusting)
            async with VoucherifyClient(server.url, KEYS, transport=transport) as client:
                codes = [await publish(client, n) for n in range(3)]
            # the default context (certifi's authorities, as httpx's) does not trust a self-signed certificate
            async with VoucherifyClient(server.url, KEYS) as client:
                with pytest.raises(TransportError) as caught:
                    await publish(client, 9)
            return codes, server.connections, caught.value

    codes, connections, refused = run(main)
    assert codes == ["CODE-k-0", "CODE-k-1", "CODE-k-2"]
    assert connections in (1, 2)  # the refused handshake may or may not count as accepted
    assert refused.kind == "connection"
    assert "CERTIFICATE_VERIFY_FAILED" in refused.detail


def test_with_a_proxy_in_the_environment_calls_go_through_it(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("NO_PROXY", "no_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy", "http_proxy"):
        monkeypatch.delenv(name, raising=False)

    async def main() -> tuple[str, bytes]:
        async with serving(answer) as proxy:
            monkeypatch.setenv("HTTP_PROXY", proxy.url)
            # nothing listens at the API's address: only the proxy can answer
            async with VoucherifyClient("http://127.0.0.1:9", KEYS) as client:
                code = await publish(client, 5)
            return code, proxy.requests[0].split(b"\r\n", 1)[0]

    code, request_line = run(main)
    assert code == "CODE-k-5"
    assert request_line == b"POST http://127.0.0.1:9/v1/publications HTTP/1.1"


def test_the_body_cap_counts_decompressed_bytes_of_a_gzip_answer() -> None:
    async def bomb(head: bytes, body: bytes, writer: asyncio.StreamWriter) -> bool:
        content = gzip.compress(b" " * 2_000_000)  # ~2 kB on the wire, 2 MB once decompressed
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n%s"
                     % (len(content), content))
        return True

    async def main() -> TransportError:
        async with serving(bomb) as server, VoucherifyClient(server.url, KEYS, max_body=100_000) as client:
            with pytest.raises(TransportError) as caught:
                await publish(client, 1)
            return caught.value

    assert run(main).kind == "oversized answer"


def test_a_malformed_header_is_refused_without_quoting_what_the_server_sent() -> None:
    async def echo_secret(head: bytes, body: bytes, writer: asyncio.StreamWriter) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\nX-Echo tok-secret\r\nContent-Length: 0\r\n\r\n")
        return False

    async def main() -> str:
        async with serving(echo_secret) as server:
            transport = LeanTransport()
            with pytest.raises(httpx.RemoteProtocolError) as caught:
                await transport.handle_async_request(httpx.Request("GET", f"{server.url}/1/profile.json"))
            await transport.aclose()
            return str(caught.value)

    message = run(main)
    assert "malformed header" in message
    assert "tok-secret" not in message


def test_a_chunk_announcing_more_than_the_body_cap_is_abandoned_as_it_streams() -> None:
    """A chunk's size is the server's word: it is read a slice at a time, so the cap applies while it streams, not
    once the whole announced chunk sits in memory (a chunk of 64 GiB announced, 1 MB sent, then silence)."""

    async def huge_chunk(head: bytes, body: bytes, writer: asyncio.StreamWriter) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nFFFFFFFFF\r\n" + b"x" * 1_000_000)
        await asyncio.Event().wait()  # nothing more, ever
        return False

    async def main() -> TransportError:
        async with serving(huge_chunk) as server, VoucherifyClient(
            server.url, KEYS, timeout=2.0, max_body=100_000
        ) as client:
            with pytest.raises(TransportError) as caught:
                await publish(client, 1)
            return caught.value

    assert run(main).kind == "oversized answer"

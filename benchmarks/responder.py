"""A minimal Voucherify stand-in for the ceiling benchmarks: it answers at once, as cheaply as a server can, so the
figures measured against it are the client's own.

    python benchmarks/responder.py [PORT]     # prints "responder on http://127.0.0.1:PORT" once it listens

Raw asyncio streams, HTTP/1.1 keep-alive, no framework.  ``POST /v1/publications`` answers a publication shaped like
Voucherify's (id, source_id, tracking_id, customer, voucher with code, campaign and campaign id) for the customer
and ``source_id`` of the request, with a new code each time; ``GET /v1/campaigns/…`` answers the campaign.  Every
answer carries the rate-limit headers a real one does.  ``GET /__stats`` answers the TCP connections opened, the most
open at once and the requests served so far (the stats request's own connection included): opened well beyond the
most open at once is churn.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import sys

CAMPAIGN = b'{"id":"camp_1","name":"reactivation-20","object":"campaign","join_once":false,"active":true}'
PUBLICATION = (
    '{"id":"pub_%d","object":"publication","created_at":"2026-01-01T00:00:00Z","customer_id":"cust_%d",'
    '"tracking_id":%s,"metadata":{},"channel":"API","source_id":%s,"result":"SUCCESS",'
    '"customer":{"id":"cust_%d","source_id":%s,"object":"customer"},'
    '"voucher":{"code":"CODE-%08d","campaign":"reactivation-20","campaign_id":"camp_1","expiration_date":null}}'
)
HEAD = (
    b"HTTP/1.1 %d %s\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: %d\r\n"
    b"X-Rate-Limit-Limit: 1000000\r\nX-Rate-Limit-Remaining: 999999\r\n\r\n"
)


class Responder:
    def __init__(self) -> None:
        self.connections = 0
        self.open = 0
        self.most_open = 0
        self.requests = 0
        self._codes = itertools.count()

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.open += 1
        self.most_open = max(self.most_open, self.open)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                body = await reader.readexactly(_content_length(head))
                self.requests += 1
                status, answer = self.answer(head, body)
                writer.write(HEAD % (status, b"OK" if status == 200 else b"Not Found", len(answer)) + answer)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            pass
        finally:
            self.open -= 1
            writer.close()

    def answer(self, head: bytes, body: bytes) -> tuple[int, bytes]:
        if head.startswith(b"POST /v1/publications"):
            request = json.loads(body)
            customer = json.dumps(request["customer"]["source_id"])
            source_id = json.dumps(request["source_id"])
            n = next(self._codes)
            return 200, (PUBLICATION % (n, n, customer, source_id, n, customer, n)).encode()
        if head.startswith(b"GET /v1/campaigns/"):
            return 200, CAMPAIGN
        if head.startswith(b"GET /__stats"):
            stats = {"connections": self.connections, "most_open": self.most_open, "requests": self.requests}
            return 200, json.dumps(stats).encode()
        return 404, b'{"code":404,"key":"not_found","message":"Resource not found"}'


def _content_length(head: bytes) -> int:
    for line in head.split(b"\r\n"):
        if line[:15].lower() == b"content-length:":
            return int(line[15:])
    return 0


async def main(port: int) -> None:
    responder = Responder()
    server = await asyncio.start_server(responder.serve, "127.0.0.1", port, backlog=512)
    print(f"responder on http://127.0.0.1:{server.sockets[0].getsockname()[1]}", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 0))

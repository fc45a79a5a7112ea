"""The sandbox's HTTP face: a Starlette app that turns requests into calls on a :class:`~.world.Sandbox`.

The rules live behind the ``Sandbox`` façade (``world.py`` and its parts); this module only parses requests,
sleeps the drawn latency (asynchronously, so the server keeps serving other requests meanwhile) and writes the
answers, including the deliberately broken ones: an HTML 502, and a "lost answer" whose connection drops after
the status line.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import anyio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from .clevertap import CleverTapWorld, clevertap_routes
from .model import Kind, Reply, Ticket
from .requests import INVALID_JSON
from .world import Sandbox

_ALL_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


class AnswerDropped(Exception):
    """Raised on purpose after a committed publication's status line: the server then cuts the connection.

    Under uvicorn the client sees a protocol error (the promised body never comes); the server's log filter
    (``server.py``) keeps this out of the error log. Under ``httpx.ASGITransport`` the exception itself
    reaches the client."""


class _DroppedResponse(Response):
    """Sends the status line and headers (with the Content-Length of the real body), then fails."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        raise AnswerDropped("the sandbox dropped this answer on purpose (lost_answer_rate)")


def create_app(sandbox: Sandbox, clevertap: CleverTapWorld | None = None) -> Starlette:
    """The Voucherify endpoints the distributor uses, backed by ``sandbox``; with ``clevertap``, also CleverTap's
    ``/1/…`` endpoints (``sandbox/clevertap.py``) on the same app."""

    async def answer(
        request: Request,
        kind: Kind,
        operation: Callable[[Ticket], Reply],
        *,
        source_id: str | None = None,
        customer: str | None = None,
    ) -> Response:
        ticket = sandbox.admit(
            kind,
            request.method,
            request.url.path,
            app_id=request.headers.get("x-app-id"),
            app_token=request.headers.get("x-app-token"),
            source_id=source_id,
            customer=customer,
        )
        if ticket.rejection is not None:
            return _render(ticket.rejection)
        if ticket.latency > 0:
            await anyio.sleep(ticket.latency)
        return _render(operation(ticket))

    async def create_publication(request: Request) -> Response:
        payload = _json(await request.body())
        join_once = request.query_params.get("join_once", "").lower() == "true"
        source_id, customer = _identity(payload)
        return await answer(
            request,
            "publish",
            lambda ticket: sandbox.publish(ticket, payload, join_once=join_once),
            source_id=source_id,
            customer=customer,
        )

    async def list_publications(request: Request) -> Response:
        query = dict(request.query_params)
        return await answer(
            request,
            "lookup",
            lambda ticket: sandbox.list_publications(ticket, query),
            source_id=query.get("source_id"),
            customer=query.get("customer"),
        )

    async def get_campaign(request: Request) -> Response:
        campaign_ref = request.path_params["campaign_id"]
        return await answer(request, "campaign", lambda ticket: sandbox.get_campaign(ticket, campaign_ref))

    async def other(request: Request) -> Response:
        return await answer(request, "other", sandbox.not_found)

    return Starlette(
        routes=[
            *(clevertap_routes(clevertap) if clevertap is not None else []),  # h7-clevertap
            Route("/v1/publications", create_publication, methods=["POST"]),
            Route("/v1/publications", list_publications, methods=["GET"]),
            Route("/v1/campaigns/{campaign_id}", get_campaign, methods=["GET"]),
            # Anything else, any method: Voucherify-style 404 JSON (after the same auth and rate checks).
            Route("/{path:path}", other, methods=_ALL_METHODS),
        ]
    )


def _render(reply: Reply) -> Response:
    if isinstance(reply.body, str):
        return HTMLResponse(reply.body, reply.status, reply.headers)
    if reply.drop:
        return _DroppedResponse(
            json.dumps(reply.body).encode(), reply.status, reply.headers, media_type="application/json"
        )
    return JSONResponse(reply.body, reply.status, reply.headers)


def _json(body: bytes) -> Any:
    if not body:
        return None
    try:
        return json.loads(body)
    except ValueError:  # includes UnicodeDecodeError
        return INVALID_JSON


def _identity(payload: Any) -> tuple[str | None, str | None]:
    """The publication source_id and the customer (source_id, else id) of a request, for the arrival log."""
    if not isinstance(payload, dict):
        return None, None
    source_id = payload.get("source_id")
    customer = payload.get("customer")
    who = (customer.get("source_id") or customer.get("id")) if isinstance(customer, dict) else None
    return (
        source_id if isinstance(source_id, str) else None,
        who if isinstance(who, str) else None,
    )

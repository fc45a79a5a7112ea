"""The sandbox's façade: a Voucherify project in memory, without any HTTP.

Every request goes through two steps, so that the HTTP layer (``app.py``) can sleep in between:

1. :meth:`Sandbox.admit` records the arrival, checks the keys, the cycle quota and the rate window, and draws
   the request's latency and fault. A refused request comes back with ``ticket.rejection`` already set.
2. After sleeping ``ticket.latency``, one operation (:meth:`Sandbox.publish`, :meth:`Sandbox.list_publications`,
   :meth:`Sandbox.get_campaign` or :meth:`Sandbox.not_found`) answers it and completes the arrival.

Facts about Voucherify cited below come from Voucherify's API documentation ("the reference") and its official
OpenAPI files (voucherifyio/voucherify-openapi, "the spec"); the tests check the answers against those files.

Its parts: :mod:`.model` (the records), :mod:`.store` (the project's records and the rules of publishing),
:mod:`.limits` (rate window, cycle quota, the shop's calls, latency and faults), :mod:`.requests` (reading a
request) and :mod:`.bodies` (the answers' shapes); :class:`Sandbox` admits each request, runs the operation under
its lock and keeps the request log.

All state sits behind one ``threading.Lock``: the server runs in its own thread while tests inspect the state
from theirs. Everything random (latency, faults, codes, ids) comes from one ``random.Random(config.seed)``.
"""
from __future__ import annotations

import collections
import hmac
import json
import random
import threading
import time
from collections.abc import Collection, Mapping
from dataclasses import asdict, replace
from pathlib import Path

from . import bodies
from .limits import Limits, draw_fault, draw_latency, most_in_window
from .model import (
    Arrival,
    Kind,
    Outcome,
    Publication,
    Refusal,
    Reply,
    SandboxConfig,
    Ticket,
)
from .requests import int_parameter, read_publication_request
from .store import Project


class Sandbox:
    """A Voucherify project in memory: campaigns, vouchers, customers, publications, limits and a request log."""

    def __init__(self, config: SandboxConfig | None = None) -> None:
        self.config = config if config is not None else SandboxConfig()
        self._lock = threading.Lock()
        self._clock = self.config.clock or time.monotonic
        self._rng = random.Random(self.config.seed)
        self._started = self._clock()
        # Unix time = clock + offset: keeps wall times and epoch headers consistent with an injected clock.
        self._wall_offset = time.time() - self._started

        self._limits = Limits(self.config, started=self._started, wall_offset=self._wall_offset)
        self._project = Project(self.config, self._rng, now=self._clock, wall=self._wall, started=self._started)
        self._arrivals: list[Arrival] = []

    # ------------------------------------------------------------------ admission: auth, quota, rate window

    def admit(
        self,
        kind: Kind,
        method: str,
        path: str,
        *,
        app_id: str | None,
        app_token: str | None,
        source_id: str | None = None,
        customer: str | None = None,
    ) -> Ticket:
        """Log a request and let it in or refuse it (``ticket.rejection``): keys, then quota, then window."""
        with self._lock:
            now = self._clock()
            self._limits.run_background(now, self._arrivals)
            self._limits.roll_cycle(now)
            self._arrivals.append(
                Arrival(now, self._wall(now), method, path, kind, 0, "pending", source_id, customer)
            )
            ticket = Ticket(len(self._arrivals) - 1, method, path, self._request_id())

            if not (_same(app_id, self.config.app_id) and _same(app_token, self.config.app_token)):
                ticket.headers = self._limits.headers(now)
                # Never echo what was sent: the details name the headers, not their values.
                refusal = Refusal(
                    401, "unauthorized", "Unauthorized",
                    "Cannot authenticate the request: check the X-App-Id and X-App-Token headers",
                )
                return self._reject(ticket, bodies.error_reply(ticket, refusal), "unauthorized")

            refused = self._limits.take_call(now)
            ticket.headers = self._limits.headers(now, refused)
            if refused is not None:
                return self._reject(ticket, self._limits.too_many(ticket, now, refused), refused)

            ticket.latency = draw_latency(self.config, self._rng)
            if kind == "publish":
                ticket.fault = draw_fault(self.config, self._rng)
            return ticket

    # ------------------------------------------------------------------ POST /v1/publications

    def publish(self, ticket: Ticket, payload: object, *, join_once: bool = False) -> Reply:
        """Create a publication (``POST /v1/publications``; ``join_once`` is the query flag)."""
        with self._lock:
            try:
                request = read_publication_request(payload)
                if ticket.fault in ("500", "502", "503"):
                    reply = bodies.fault_reply(ticket)
                    self._finish(ticket, reply, "fault_5xx")
                    return reply
                publication = self._project.publish(request, join_once)
            except Refusal as refusal:
                reply = bodies.error_reply(ticket, refusal)
                self._finish(ticket, reply, "error")
                return reply
            lost = ticket.fault == "lost"
            reply = Reply(200, self._project.publication_body(publication), ticket.headers, drop=lost)
            self._finish(ticket, reply, "lost_answer" if lost else "ok")
            return reply

    # ------------------------------------------------------------------ GET /v1/publications, GET /v1/campaigns

    def list_publications(self, ticket: Ticket, query: Mapping[str, str]) -> Reply:
        """``GET /v1/publications``: filters ``source_id``, ``campaign`` (name or id), ``customer`` (``cust_`` id
        or source_id); ``limit`` (1–100, default 10) and ``page`` (from 1); newest first, as the spec says."""
        with self._lock:
            try:
                limit = int_parameter(query, "limit", 10, 1, 100)
                page = int_parameter(query, "page", 1, 1, None)
            except Refusal as refusal:
                reply = bodies.error_reply(ticket, refusal)
                self._finish(ticket, reply, "error")
                return reply
            matches = self._project.find(query)
            items = [self._project.list_item(p) for p in matches[(page - 1) * limit : page * limit]]
            body = {"object": "list", "data_ref": "publications", "publications": items, "total": len(matches)}
            reply = Reply(200, body, ticket.headers)
            self._finish(ticket, reply, "ok")
            return reply

    def get_campaign(self, ticket: Ticket, campaign_ref: str) -> Reply:
        """``GET /v1/campaigns/{campaignId}`` by id or name."""
        with self._lock:
            try:
                campaign = self._project.campaign(campaign_ref)
            except Refusal as refusal:
                reply = bodies.error_reply(ticket, refusal)
                self._finish(ticket, reply, "error")
                return reply
            reply = Reply(200, self._project.campaign_body(campaign), ticket.headers)
            self._finish(ticket, reply, "ok")
            return reply

    def not_found(self, ticket: Ticket) -> Reply:
        """Any other path or method."""
        with self._lock:
            refusal = Refusal(404, "not_found", "Resource not found", f"No endpoint {ticket.method} {ticket.path}")
            reply = bodies.error_reply(ticket, refusal)
            self._finish(ticket, reply, "error")
            return reply

    # ------------------------------------------------------------------ bookkeeping

    def _finish(self, ticket: Ticket, reply: Reply, outcome: Outcome) -> None:
        if ticket.done:
            raise RuntimeError("a sandbox request was answered twice")
        ticket.done = True
        self._arrivals[ticket.index] = replace(self._arrivals[ticket.index], status=reply.status, outcome=outcome)

    def _reject(self, ticket: Ticket, reply: Reply, outcome: Outcome) -> Ticket:
        ticket.rejection = reply
        self._finish(ticket, reply, outcome)
        return ticket

    def _wall(self, at: float) -> float:
        return self._limits.wall(at)

    def _request_id(self) -> str:
        return f"v-{self._rng.getrandbits(72):018x}"

    # ------------------------------------------------------------------ inspection for tests and benchmarks

    @property
    def arrivals(self) -> list[Arrival]:
        """Every request in arrival order, the shop's background calls included (``kind="background"``)."""
        with self._lock:
            return list(self._arrivals)

    @property
    def publications(self) -> list[Publication]:
        """Stored publications in creation order (an idempotent replay adds none)."""
        with self._lock:
            return self._project.publications

    def publication_for_source_id(self, source_id: str) -> Publication | None:
        with self._lock:
            return self._project.publication_for_source_id(source_id)

    def alter_publication(
        self, source_id: str, *, code: str | None = None, customer_source_id: str | None = None
    ) -> None:
        """Change what the project holds under a publication ``source_id``, as a person editing Voucherify by hand
        (or another tool) might: another ``code``, or another customer.  A test control for ``distributor verify``,
        which must find such a difference (KeyError: no publication under ``source_id``)."""
        with self._lock:
            self._project.alter_publication(source_id, code=code, customer_source_id=customer_source_id)

    def delete_publication(self, source_id: str) -> None:
        """Forget the publication under ``source_id`` (a test control for ``distributor verify``)."""
        with self._lock:
            self._project.delete_publication(source_id)

    def codes_held(self, campaign_id_or_name: str) -> dict[str, set[str]]:
        """Customer source_id → the codes of this campaign published to them (KeyError: no such campaign)."""
        with self._lock:
            return self._project.codes_held(campaign_id_or_name)

    def max_in_window(self, kind_filter: str | Collection[str] | None = None, period: float | None = None) -> int:
        """The most arrivals (refused ones included) in any window of ``period`` seconds (default: the rate
        limit's), counting the given kinds (default: every kind but ``background``)."""
        if period is None:
            if self.config.rate_limit is None:
                raise ValueError("max_in_window needs a period when the sandbox has no rate limit")
            period = self.config.rate_limit.period
        if kind_filter is None:
            times = [a.at for a in self.arrivals if a.kind != "background"]
        else:
            wanted = {kind_filter} if isinstance(kind_filter, str) else set(kind_filter)
            times = [a.at for a in self.arrivals if a.kind in wanted]
        return most_in_window(times, period)

    def stats(self) -> dict[str, int]:
        """Counts of our arrivals per outcome, the shop's background calls, and the stored objects."""
        with self._lock:
            outcomes = collections.Counter(a.outcome for a in self._arrivals if a.kind != "background")
            counts = {
                outcome: outcomes[outcome]
                for outcome in (
                    "ok", "rate_limited", "quota", "fault_5xx", "lost_answer", "error", "unauthorized", "pending"
                )
            }
            return {
                "arrivals": sum(outcomes.values()),
                **counts,
                "background_accepted": self._limits.background["background_accepted"],
                "background_rejected": self._limits.background["background_rejected"],
                "cycle_used": self._limits.cycle_used,
                **self._project.counts(),
            }

    def arrivals_jsonl(self) -> str:
        """The arrival log as JSON lines (one object per request, fields of :class:`Arrival`)."""
        return "".join(json.dumps(asdict(arrival)) + "\n" for arrival in self.arrivals)

    def write_arrivals(self, path: str | Path) -> None:
        Path(path).write_text(self.arrivals_jsonl(), encoding="utf-8")


def _same(sent: str | None, expected: str) -> bool:
    """Compare keys in constant time."""
    return sent is not None and hmac.compare_digest(sent.encode(), expected.encode())


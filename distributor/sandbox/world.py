"""The sandbox's façade: a Voucherify project in memory, without any HTTP.

Every request goes through two steps, so that the HTTP layer (``app.py``) can sleep in between:

1. :meth:`Sandbox.admit` records the arrival, checks the keys, the cycle quota and the rate window, and draws
   the request's latency and fault. A refused request comes back with ``ticket.rejection`` already set.
2. After sleeping ``ticket.latency``, one operation (:meth:`Sandbox.publish`, :meth:`Sandbox.list_publications`,
   :meth:`Sandbox.get_campaign` or :meth:`Sandbox.not_found`) answers it and completes the arrival.

Facts about Voucherify cited below come from Voucherify's API documentation ("the reference") and its official
OpenAPI files (voucherifyio/voucherify-openapi, "the spec"); the tests check the answers against those files.

Its parts: :mod:`.model` (the records), :mod:`.limits` (rate window, cycle quota, the shop's calls, latency and
faults), :mod:`.requests` (reading a request) and :mod:`.bodies` (the answers' shapes); :class:`Sandbox` holds
the state and runs the operations.

All state sits behind one ``threading.Lock``: the server runs in its own thread while tests inspect the state
from theirs. Everything random (latency, faults, codes, ids) comes from one ``random.Random(config.seed)``.
"""
from __future__ import annotations

import collections
import hmac
import json
import random
import string
import threading
import time
from collections.abc import Collection, Mapping
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from . import bodies
from .campaigns import Campaign
from .limits import Limits, draw_fault, draw_latency
from .model import (
    Arrival,
    Customer,
    Kind,
    Outcome,
    Publication,
    Refusal,
    Reply,
    SandboxConfig,
    Ticket,
    Voucher,
)
from .requests import CUSTOMER_FIELDS, PublicationRequest, int_parameter, read_publication_request

_ID_CHARS = string.ascii_letters + string.digits


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

        self._campaigns: dict[str, Campaign] = {}
        self._campaign_by_name: dict[str, str] = {}
        self._pools: dict[str, collections.deque[str]] = {}
        self._all_codes: set[str] = set()  # a code is unique in a project, whichever campaign it belongs to
        for campaign in self.config.campaigns:
            if campaign.id in self._campaigns or campaign.name in self._campaign_by_name:
                raise ConfigError(f"two sandbox campaigns share the id or name of {campaign.name!r}")
            if self._all_codes.intersection(campaign.codes):
                raise ConfigError(f"sandbox campaign {campaign.name!r} reuses codes of another campaign")
            self._campaigns[campaign.id] = campaign
            self._campaign_by_name[campaign.name] = campaign.id
            if campaign.type == "STATIC":
                self._pools[campaign.id] = collections.deque(campaign.codes)
            self._all_codes.update(campaign.codes)

        self._vouchers: dict[str, Voucher] = {}  # by code
        self._generated: collections.Counter[str] = collections.Counter()  # AUTO_UPDATE vouchers per campaign
        self._customers: dict[str, Customer] = {}
        self._customer_by_source: dict[str, str] = {}
        self._publications: list[Publication] = []
        self._publication_by_source: dict[str, Publication] = {}
        self._holdings: dict[tuple[str, str], str] = {}  # (campaign id, customer id) -> first code held

        self._arrivals: list[Arrival] = []
        self._limits = Limits(self.config, started=self._started, wall_offset=self._wall_offset)

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
                publication = self._publish(request, join_once)
            except Refusal as refusal:
                reply = bodies.error_reply(ticket, refusal)
                self._finish(ticket, reply, "error")
                return reply
            lost = ticket.fault == "lost"
            reply = Reply(200, self._publication_body(publication), ticket.headers, drop=lost)
            self._finish(ticket, reply, "lost_answer" if lost else "ok")
            return reply

    def _publish(self, request: PublicationRequest, join_once_flag: bool) -> Publication:
        campaign = self._campaign(request.campaign_ref)
        refused = self.config.refuse_customers.get(str(request.customer.get("source_id")))
        if refused is not None:
            raise Refusal(
                400, refused, "Voucher cannot be published", "This customer cannot receive a code of this campaign"
            )
        customer_id = self._resolve_customer(request.customer)

        if request.source_id is not None:
            original = self._publication_by_source.get(request.source_id)
            if original is not None:
                # The reference: the same source_id "will always return the same code"; the spec also
                # documents 400 duplicate_source_id, here for a reuse with another customer or campaign
                # (or any reuse in strict mode).
                same_request = original.campaign_id == campaign.id and original.customer_id == customer_id
                if self.config.strict_source_id or not same_request:
                    raise Refusal(
                        400, "duplicate_source_id", "Duplicate source_id",
                        f"Publication with source_id: '{request.source_id}' already exists",
                        resource_type="publication",
                    )
                return original

        if not campaign.active:
            # The spec: "A voucher is suitable for publication when it's active and hasn't been published yet."
            raise _no_voucher(campaign)
        held = self._holdings.get((campaign.id, customer_id)) if customer_id is not None else None
        if held is not None and (campaign.join_once or join_once_flag):
            # join_once: "a particular person gets only one and always the same code" (spec, query flag).
            voucher = self._vouchers[held]
        else:
            voucher = self._take_voucher(campaign)
        customer = self._upsert_customer(request.customer, customer_id)

        publication = Publication(
            id=self._new_id("pub_", 32),
            source_id=request.source_id,
            campaign_id=campaign.id,
            campaign_name=campaign.name,
            customer_id=customer.id,
            customer_source_id=customer.source_id,
            code=voucher.code,
            voucher_id=voucher.id,
            created_at=self._wall(self._clock()),
            metadata=request.metadata,
        )
        self._publications.append(publication)
        if request.source_id is not None:
            self._publication_by_source[request.source_id] = publication
        voucher.publish_count += 1
        if voucher.holder_id is None:
            voucher.holder_id = customer.id
        self._holdings.setdefault((campaign.id, customer.id), voucher.code)
        return publication

    def _campaign(self, ref: str) -> Campaign:
        """A campaign by ``camp_`` id or by name (the reference: ``campaign.name`` takes either)."""
        campaign_id = ref if ref in self._campaigns else self._campaign_by_name.get(ref)
        if campaign_id is None:
            raise Refusal(
                404, "not_found", "Resource not found", f"Cannot find campaign with id {ref}",
                resource_id=ref, resource_type="campaign",
            )
        return self._campaigns[campaign_id]

    def _resolve_customer(self, customer: Mapping[str, Any]) -> str | None:
        """The existing customer's ``cust_`` id, or None for a new one. An unknown ``customer.id`` is a 404
        (reference: "Unknown customer.id → 404")."""
        if "id" in customer:
            if customer["id"] not in self._customers:
                raise Refusal(
                    404, "not_found", "Resource not found", f"Cannot find customer with id {customer['id']}",
                    resource_id=customer["id"], resource_type="customer",
                )
            return str(customer["id"])
        return self._customer_by_source.get(customer["source_id"])

    def _take_voucher(self, campaign: Campaign) -> Voucher:
        """AUTO_UPDATE makes a fresh code; STATIC hands out the next unpublished code of its pool."""
        if campaign.type == "STATIC":
            pool = self._pools[campaign.id]
            if not pool:
                raise _no_voucher(campaign)
            code, created_at = pool.popleft(), self._wall(self._started)
        else:
            generated = self._new_code(campaign)
            if generated is None:
                raise _no_voucher(campaign)
            code, created_at = generated, self._wall(self._clock())
            self._generated[campaign.id] += 1
        voucher = Voucher(self._new_id("v_", 32), code, campaign.id, created_at)
        self._vouchers[code] = voucher
        return voucher

    def _new_code(self, campaign: Campaign) -> str | None:
        """A code no voucher has yet, or None when the pattern seems used up (a tiny pattern, e.g. ``"##"``)."""
        for _ in range(1000):
            code = campaign.code_prefix + "".join(
                self._rng.choice(campaign.code_charset) if char == "#" else char for char in campaign.code_pattern
            )
            if code not in self._all_codes:
                self._all_codes.add(code)
                return code
        return None

    def _upsert_customer(self, fields: Mapping[str, Any], customer_id: str | None) -> Customer:
        """A publication creates the customer, or updates the fields it sends (reference: "upserted")."""
        now = self._wall(self._clock())
        profile = {name: fields[name] for name in CUSTOMER_FIELDS if name in fields}
        if customer_id is None:
            customer = Customer(self._new_id("cust_", 24), fields["source_id"], now, profile)
            self._customers[customer.id] = customer
            self._customer_by_source[customer.source_id] = customer.id
            return customer
        customer = self._customers[customer_id]
        if profile:
            customer.profile.update(profile)
            customer.updated_at = now
        return customer

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
            if "source_id" in query:  # the common case (recovering a lost answer): one dictionary look-up
                found = self._publication_by_source.get(query["source_id"])
                candidates = [found] if found is not None else []
            else:
                candidates = self._publications
            matches = [p for p in reversed(candidates) if self._matches(p, query)]
            items = [self._list_item(p) for p in matches[(page - 1) * limit : page * limit]]
            body = {"object": "list", "data_ref": "publications", "publications": items, "total": len(matches)}
            reply = Reply(200, body, ticket.headers)
            self._finish(ticket, reply, "ok")
            return reply

    def _matches(self, publication: Publication, query: Mapping[str, str]) -> bool:
        if "campaign" in query and query["campaign"] not in (publication.campaign_id, publication.campaign_name):
            return False
        return "customer" not in query or query["customer"] in (
            publication.customer_id, publication.customer_source_id
        )

    def get_campaign(self, ticket: Ticket, campaign_ref: str) -> Reply:
        """``GET /v1/campaigns/{campaignId}`` by id or name."""
        with self._lock:
            try:
                campaign = self._campaign(campaign_ref)
            except Refusal as refusal:
                reply = bodies.error_reply(ticket, refusal)
                self._finish(ticket, reply, "error")
                return reply
            reply = Reply(200, self._campaign_body(campaign), ticket.headers)
            self._finish(ticket, reply, "ok")
            return reply

    def not_found(self, ticket: Ticket) -> Reply:
        """Any other path or method."""
        with self._lock:
            refusal = Refusal(404, "not_found", "Resource not found", f"No endpoint {ticket.method} {ticket.path}")
            reply = bodies.error_reply(ticket, refusal)
            self._finish(ticket, reply, "error")
            return reply
    # ------------------------------------------------------------------ response bodies (shapes: bodies.py)

    def _publication_body(self, publication: Publication) -> dict[str, Any]:
        voucher = self._vouchers[publication.code]
        customer = self._customers[publication.customer_id]
        return bodies.publication_body(publication, customer, voucher, self._campaigns[voucher.campaign_id])

    def _list_item(self, publication: Publication) -> dict[str, Any]:
        customer = self._customers[publication.customer_id]
        return bodies.list_item(publication, customer, self._campaigns[publication.campaign_id])

    def _campaign_body(self, campaign: Campaign) -> dict[str, Any]:
        vouchers_count = len(campaign.codes) if campaign.type == "STATIC" else self._generated[campaign.id]
        return bodies.campaign_body(campaign, vouchers_count, self._wall(self._started))

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

    def _new_id(self, prefix: str, length: int) -> str:
        return prefix + "".join(self._rng.choice(_ID_CHARS) for _ in range(length))

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
            return list(self._publications)

    def publication_for_source_id(self, source_id: str) -> Publication | None:
        with self._lock:
            return self._publication_by_source.get(source_id)

    def alter_publication(
        self, source_id: str, *, code: str | None = None, customer_source_id: str | None = None
    ) -> None:
        """Change what the project holds under a publication ``source_id``, as a person editing Voucherify by hand
        (or another tool) might: another ``code``, or another customer.  A test control for ``distributor verify``,
        which must find such a difference (KeyError: no publication under ``source_id``)."""
        with self._lock:
            original = self._publication_by_source[source_id]
            changed = original
            if code is not None:
                stand_in = Voucher(self._new_id("v_", 24), code, original.campaign_id, original.created_at)
                self._vouchers.setdefault(code, stand_in)
                changed = replace(changed, code=code, voucher_id=self._vouchers[code].id)
            if customer_source_id is not None:
                known = self._customer_by_source.get(customer_source_id)
                customer = self._upsert_customer({"source_id": customer_source_id}, known)
                changed = replace(changed, customer_id=customer.id, customer_source_id=customer.source_id)
            self._publications[self._publications.index(original)] = changed
            self._publication_by_source[source_id] = changed

    def delete_publication(self, source_id: str) -> None:
        """Forget the publication under ``source_id`` (a test control for ``distributor verify``)."""
        with self._lock:
            self._publications.remove(self._publication_by_source.pop(source_id))

    def codes_held(self, campaign_id_or_name: str) -> dict[str, set[str]]:
        """Customer source_id → the codes of this campaign published to them (KeyError: no such campaign)."""
        with self._lock:
            try:
                campaign_id = self._campaign(campaign_id_or_name).id
            except Refusal:
                raise KeyError(campaign_id_or_name) from None
            held: dict[str, set[str]] = {}
            for publication in self._publications:
                if publication.campaign_id == campaign_id:
                    held.setdefault(publication.customer_source_id, set()).add(publication.code)
            return held

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
        best, first = 0, 0
        for last, at in enumerate(times):
            while at - times[first] >= period:
                first += 1
            best = max(best, last - first + 1)
        return best

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
                "publications": len(self._publications),
                "customers": len(self._customers),
                "vouchers": len(self._vouchers),
            }

    def arrivals_jsonl(self) -> str:
        """The arrival log as JSON lines (one object per request, fields of :class:`Arrival`)."""
        return "".join(json.dumps(asdict(arrival)) + "\n" for arrival in self.arrivals)

    def write_arrivals(self, path: str | Path) -> None:
        Path(path).write_text(self.arrivals_jsonl(), encoding="utf-8")


def _same(sent: str | None, expected: str) -> bool:
    """Compare keys in constant time."""
    return sent is not None and hmac.compare_digest(sent.encode(), expected.encode())


def _no_voucher(campaign: Campaign) -> Refusal:
    # Wording of Voucherify's SDK documentation for this key.
    return Refusal(
        400, "no_voucher_suitable_for_publication", "Couldn't find any voucher suitable for publication.",
        "Use auto-update campaigns if you want Voucherify to generate vouchers automatically.",
        resource_id=campaign.id, resource_type="campaign",
    )

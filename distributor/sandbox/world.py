"""The sandbox's state and rules: a Voucherify project in memory, without any HTTP.

Every request goes through two steps, so that the HTTP layer (``app.py``) can sleep in between:

1. :meth:`Sandbox.admit` records the arrival, checks the keys, the cycle quota and the rate window, and draws
   the request's latency and fault. A refused request comes back with ``ticket.rejection`` already set.
2. After sleeping ``ticket.latency``, one operation (:meth:`Sandbox.publish`, :meth:`Sandbox.list_publications`,
   :meth:`Sandbox.get_campaign` or :meth:`Sandbox.not_found`) answers it and completes the arrival.

Facts about Voucherify cited below come from Voucherify's API documentation ("the reference") and its official
OpenAPI files (voucherifyio/voucherify-openapi, "the spec"); the tests check the answers against those files.

All state sits behind one ``threading.Lock``: the server runs in its own thread while tests inspect the state
from theirs. Everything random (latency, faults, codes, ids) comes from one ``random.Random(config.seed)``.
"""

from __future__ import annotations

import collections
import hmac
import json
import math
import random
import string
import threading
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote

from ..errors import ConfigError
from ..units import Rate, parse_duration
from .campaigns import Campaign, default_campaigns, iso_utc

DEMO_APP_ID = "sandbox-app-id"
DEMO_APP_TOKEN = "sandbox-app-token"

#: The billing cycle (reference: "API calls per billing cycle"); a cycle is modelled as 30 days.
CYCLE_SECONDS = 30 * 86400

#: Log-normal quantile: the 99th percentile lies 2.326 standard deviations above the median.
_Z99 = 2.326

Kind = Literal["publish", "lookup", "campaign", "background", "other"]
Outcome = Literal[
    "pending", "ok", "rate_limited", "quota", "fault_5xx", "lost_answer", "error", "unauthorized"
]
_Fault = Literal["500", "502", "503", "lost"]

_ID_CHARS = string.ascii_letters + string.digits

#: Voucherify's 429 body, exactly (reference, Errors table): no key, no request_id.
RATE_LIMITED_BODY = {"code": 429, "message": "Too many requests hit the API too quickly."}

#: What a load balancer in front of Voucherify answers on a 502: HTML, not JSON.
BAD_GATEWAY_HTML = (
    "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    "<center><h1>502 Bad Gateway</h1></center>\r\n</body>\r\n</html>\r\n"
)


class _InvalidJson:
    """Marks a request body that is not JSON at all (the HTTP layer passes it instead of a payload)."""

    def __repr__(self) -> str:
        return "INVALID_JSON"


INVALID_JSON = _InvalidJson()


@dataclass
class SandboxConfig:
    """How the stand-in Voucherify behaves. ``None`` disables a limit.

    ``latency_median``, ``latency_p99``, ``error_rate``, ``lost_answer_rate`` and ``strict_source_id`` are read
    at every request, so a test may change them on a running sandbox (``sandbox.config.error_rate = 0``).
    """

    app_id: str = DEMO_APP_ID
    app_token: str = DEMO_APP_TOKEN
    #: Sliding window of ``rate_limit.period`` seconds holding at most ``rate_limit.calls`` accepted calls.
    rate_limit: Rate | None = None
    #: Accepted calls allowed in the billing cycle, which ends at ``cycle_resets_at`` (Unix time;
    #: default: 30 days after the sandbox starts) and then starts again for another 30 days.
    cycle_quota: int | None = None
    cycle_resets_at: float | None = None
    #: Other clients of the same project (the live shop) spending the same window and quota.
    background_rate: Rate | None = None
    #: Seconds the shop had already been calling when the sandbox started (its steady share of the window is
    #: there from the first request); 0: it starts with the sandbox.
    background_since: float = 0.0
    #: Seconds; each admitted request waits a log-normal delay with this median and 99th percentile.
    latency_median: float = 0.0
    latency_p99: float | None = None
    #: Fraction of publications that fail with a 5xx before committing anything.
    error_rate: float = 0.0
    #: Fraction of publications that commit, then lose their answer (the connection drops).
    lost_answer_rate: float = 0.0
    #: True: any reuse of a publication source_id is ``400 duplicate_source_id``.
    strict_source_id: bool = False
    seed: int | None = None
    #: Customers (by source_id) whose publications are refused with ``400 <key>``, e.g.
    #: ``{"cust-1": "voucher_cannot_be_published"}``: a per-member refusal, for tests of the errors report.
    refuse_customers: Mapping[str, str] = field(default_factory=dict)
    campaigns: list[Campaign] = field(default_factory=default_campaigns)
    #: A ``time.monotonic``-like clock (seconds); inject one to test the rules without sleeping.
    clock: Callable[[], float] | None = None

    def __post_init__(self) -> None:
        for name in ("error_rate", "lost_answer_rate"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ConfigError(f"sandbox {name} must be between 0 and 1, not {value}")
        if self.latency_median < 0 or (self.latency_p99 is not None and self.latency_p99 < 0):
            raise ConfigError("sandbox latency must not be negative")
        if self.cycle_quota is not None and self.cycle_quota < 0:
            raise ConfigError("sandbox cycle_quota must not be negative")

    @classmethod
    def parse(
        cls,
        *,
        rate_limit: str | None = None,
        background_rate: str | None = None,
        background_since: str | float = 0.0,
        latency_median: str | float = 0.0,
        latency_p99: str | float | None = None,
        **options: Any,
    ) -> SandboxConfig:
        """Build a config from command-line text: ``rate_limit="100/min"``, ``latency_median="150ms"``."""
        return cls(
            rate_limit=Rate.parse(rate_limit) if rate_limit is not None else None,
            background_rate=Rate.parse(background_rate) if background_rate is not None else None,
            background_since=parse_duration(background_since),
            latency_median=parse_duration(latency_median),
            latency_p99=parse_duration(latency_p99) if latency_p99 is not None else None,
            **options,
        )


@dataclass(frozen=True)
class Arrival:
    """One request as the server saw it. ``at`` is the sandbox clock when it arrived (before any latency),
    ``wall`` the matching Unix time. ``status`` is 0 and ``outcome`` ``"pending"`` while it is in flight."""

    at: float
    wall: float
    method: str
    path: str
    kind: Kind
    status: int
    outcome: Outcome
    source_id: str | None = None
    customer: str | None = None


@dataclass(frozen=True)
class Publication:
    """A stored publication: ``code`` was given to the customer under the publication ``source_id``."""

    id: str
    source_id: str | None
    campaign_id: str
    campaign_name: str
    customer_id: str
    customer_source_id: str
    code: str
    voucher_id: str
    created_at: float  # Unix time
    metadata: dict[str, Any]


@dataclass(frozen=True)
class Reply:
    """An answer for the HTTP layer. ``body`` is JSON-able, or a ``str`` of HTML. ``drop``: send the status
    line and headers, then cut the connection before the body (the answer is lost)."""

    status: int
    body: dict[str, Any] | str
    headers: dict[str, str]
    drop: bool = False


@dataclass
class Ticket:
    """A request between admission and its answer."""

    index: int  # position of its arrival in the log
    method: str
    path: str
    request_id: str
    headers: dict[str, str] = field(default_factory=dict)  # the X-Rate-Limit-* headers of its answer
    rejection: Reply | None = None  # set when refused at admission (401, 429)
    latency: float = 0.0
    fault: _Fault | None = None
    done: bool = False


@dataclass
class _Customer:
    id: str
    source_id: str
    created_at: float
    profile: dict[str, Any]  # CustomerBase fields as sent: name, email, phone, metadata, ...
    updated_at: float | None = None


@dataclass
class _Voucher:
    id: str
    code: str
    campaign_id: str
    created_at: float
    holder_id: str | None = None
    publish_count: int = 0


class _Refusal(Exception):
    """An error answer decided deep inside an operation (turned into a ``Reply`` by the caller)."""

    def __init__(self, status: int, key: str, message: str, details: str, **extra: str) -> None:
        super().__init__(details)
        self.status, self.key, self.message, self.details, self.extra = status, key, message, details, extra


@dataclass(frozen=True)
class _PublicationRequest:
    campaign_ref: str
    customer: dict[str, Any]
    source_id: str | None
    metadata: dict[str, Any]


# CustomerBase fields a publication may set on the customer, with their JSON types (spec: CustomerBase).
_CUSTOMER_FIELDS: dict[str, type | tuple[type, ...]] = {
    "name": str,
    "email": str,
    "phone": str,
    "birthday": str,
    "birthdate": str,
    "address": (dict, type(None)),
    "metadata": dict,
}


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

        self._vouchers: dict[str, _Voucher] = {}  # by code
        self._generated: collections.Counter[str] = collections.Counter()  # AUTO_UPDATE vouchers per campaign
        self._customers: dict[str, _Customer] = {}
        self._customer_by_source: dict[str, str] = {}
        self._publications: list[Publication] = []
        self._publication_by_source: dict[str, Publication] = {}
        self._holdings: dict[tuple[str, str], str] = {}  # (campaign id, customer id) -> first code held

        self._arrivals: list[Arrival] = []
        self._window: collections.deque[float] = collections.deque()  # accepted calls, oldest first
        self._cycle_used = 0
        self._cycle_resets_at = (
            self.config.cycle_resets_at
            if self.config.cycle_resets_at is not None
            else self._wall(self._started) + CYCLE_SECONDS
        )
        self._background_calls = 0  # the shop's calls replayed so far
        self._background: collections.Counter[str] = collections.Counter()

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
            self._run_background(now)
            self._roll_cycle(now)
            self._arrivals.append(
                Arrival(now, self._wall(now), method, path, kind, 0, "pending", source_id, customer)
            )
            ticket = Ticket(len(self._arrivals) - 1, method, path, self._request_id())

            if not (_same(app_id, self.config.app_id) and _same(app_token, self.config.app_token)):
                ticket.headers = self._limit_headers(now)
                # Never echo what was sent: the details name the headers, not their values.
                refusal = _Refusal(
                    401, "unauthorized", "Unauthorized",
                    "Cannot authenticate the request: check the X-App-Id and X-App-Token headers",
                )
                return self._reject(ticket, self._error_reply(ticket, refusal), "unauthorized")

            refused = self._take_call(now)
            ticket.headers = self._limit_headers(now, refused)
            if refused is not None:
                return self._reject(ticket, self._too_many(ticket, now, refused), refused)

            ticket.latency = self._draw_latency()
            if kind == "publish":
                ticket.fault = self._draw_fault()
            return ticket

    def _take_call(self, now: float) -> Literal["quota", "rate_limited"] | None:
        """Count one call against the cycle quota and the window, or say which limit refuses it.

        A refused call is not counted: only accepted calls fill the window and spend the quota."""
        quota = self.config.cycle_quota
        if quota is not None and self._cycle_used >= quota:
            return "quota"
        limit = self.config.rate_limit
        if limit is not None:
            self._prune(now, limit)
            if len(self._window) >= limit.calls:
                return "rate_limited"
            self._window.append(now)
        self._cycle_used += 1
        return None

    def _prune(self, now: float, limit: Rate) -> None:
        """Drop calls that have left the window: the window holds the calls of the last ``period`` seconds,
        ``(now - period, now]``."""
        while self._window and self._window[0] <= now - limit.period:
            self._window.popleft()

    def _limit_headers(self, now: float, refused: str | None = None) -> dict[str, str]:
        """``X-Rate-Limit-Limit/-Remaining/-Retry`` (reference: "Every response carries ...")."""
        limit = self.config.rate_limit
        if limit is None:
            return {}
        self._prune(now, limit)
        remaining = max(0, limit.calls - len(self._window))
        if refused == "quota":
            retry = math.ceil(self._cycle_resets_at)
        elif remaining > 0:
            retry = math.floor(self._wall(now))
        else:
            retry = math.ceil(self._wall(self._window[0] + limit.period))
        return {
            "X-Rate-Limit-Limit": str(limit.calls),
            "X-Rate-Limit-Remaining": str(remaining),
            "X-Rate-Limit-Retry": str(retry),
        }

    def _too_many(self, ticket: Ticket, now: float, refused: str) -> Reply:
        """429 with ``Retry-After`` (whole seconds, rounded up) and ``X-Rate-Limit-Type`` (reference)."""
        if refused == "quota":
            wait, limit_type = self._cycle_resets_at - self._wall(now), "api_calls_cycle"
        else:
            assert self.config.rate_limit is not None
            wait, limit_type = self._window[0] + self.config.rate_limit.period - now, "api_calls"
        headers = {**ticket.headers, "Retry-After": str(max(1, math.ceil(wait))), "X-Rate-Limit-Type": limit_type}
        return Reply(429, dict(RATE_LIMITED_BODY), headers)

    def _roll_cycle(self, now: float) -> None:
        """A new billing cycle starts with an unspent quota."""
        while self._wall(now) >= self._cycle_resets_at:
            self._cycle_resets_at += CYCLE_SECONDS
            self._cycle_used = 0

    def _run_background(self, now: float) -> None:
        """Replay, up to ``now``, the shop's calls at ``background_rate``, evenly spaced since the start (or since
        ``background_since`` seconds before it).

        They spend the same window and quota as ours (reference: "the same quota serves the live shop");
        one that finds no room is a checkout call that failed (counted as ``background_rejected``)."""
        rate = self.config.background_rate
        if rate is None:
            return
        interval = rate.period / rate.calls
        first = self._started - self.config.background_since
        while (at := first + (self._background_calls + 1) * interval) <= now:
            self._background_calls += 1
            self._roll_cycle(at)
            refused = self._take_call(at)
            outcome: Outcome = "ok" if refused is None else refused
            status = 200 if refused is None else 429
            self._background["background_accepted" if refused is None else "background_rejected"] += 1
            # A shop calls the validation endpoint at checkout; the path only labels the log line.
            self._arrivals.append(Arrival(at, self._wall(at), "POST", "/v1/validations", "background", status, outcome))

    def _draw_latency(self) -> float:
        median, p99 = self.config.latency_median, self.config.latency_p99
        if median <= 0:
            return 0.0
        if p99 is None or p99 <= median:
            return median
        return self._rng.lognormvariate(math.log(median), math.log(p99 / median) / _Z99)

    def _draw_fault(self) -> _Fault | None:
        if self._rng.random() < self.config.error_rate:
            fault: _Fault = self._rng.choice(("500", "502", "503"))
            return fault
        if self._rng.random() < self.config.lost_answer_rate:
            return "lost"
        return None

    # ------------------------------------------------------------------ POST /v1/publications

    def publish(self, ticket: Ticket, payload: object, *, join_once: bool = False) -> Reply:
        """Create a publication (``POST /v1/publications``; ``join_once`` is the query flag)."""
        with self._lock:
            try:
                request = _read_publication_request(payload)
                if ticket.fault in ("500", "502", "503"):
                    reply = self._fault_reply(ticket)
                    self._finish(ticket, reply, "fault_5xx")
                    return reply
                publication = self._publish(request, join_once)
            except _Refusal as refusal:
                reply = self._error_reply(ticket, refusal)
                self._finish(ticket, reply, "error")
                return reply
            lost = ticket.fault == "lost"
            reply = Reply(200, self._publication_body(publication), ticket.headers, drop=lost)
            self._finish(ticket, reply, "lost_answer" if lost else "ok")
            return reply

    def _publish(self, request: _PublicationRequest, join_once_flag: bool) -> Publication:
        campaign = self._campaign(request.campaign_ref)
        refused = self.config.refuse_customers.get(str(request.customer.get("source_id")))
        if refused is not None:
            raise _Refusal(
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
                    raise _Refusal(
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
            raise _Refusal(
                404, "not_found", "Resource not found", f"Cannot find campaign with id {ref}",
                resource_id=ref, resource_type="campaign",
            )
        return self._campaigns[campaign_id]

    def _resolve_customer(self, customer: Mapping[str, Any]) -> str | None:
        """The existing customer's ``cust_`` id, or None for a new one. An unknown ``customer.id`` is a 404
        (reference: "Unknown customer.id → 404")."""
        if "id" in customer:
            if customer["id"] not in self._customers:
                raise _Refusal(
                    404, "not_found", "Resource not found", f"Cannot find customer with id {customer['id']}",
                    resource_id=customer["id"], resource_type="customer",
                )
            return str(customer["id"])
        return self._customer_by_source.get(customer["source_id"])

    def _take_voucher(self, campaign: Campaign) -> _Voucher:
        """AUTO_UPDATE makes a fresh code; STATIC hands out the next unpublished code of its pool."""
        if campaign.type == "STATIC":
            pool = self._pools[campaign.id]
            if not pool:
                raise _no_voucher(campaign)
            code, created_at = pool.popleft(), self._wall(self._started)
        else:
            code, created_at = self._new_code(campaign), self._wall(self._clock())
            if code is None:
                raise _no_voucher(campaign)
            self._generated[campaign.id] += 1
        voucher = _Voucher(self._new_id("v_", 32), code, campaign.id, created_at)
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

    def _upsert_customer(self, fields: Mapping[str, Any], customer_id: str | None) -> _Customer:
        """A publication creates the customer, or updates the fields it sends (reference: "upserted")."""
        now = self._wall(self._clock())
        profile = {name: fields[name] for name in _CUSTOMER_FIELDS if name in fields}
        if customer_id is None:
            customer = _Customer(self._new_id("cust_", 24), fields["source_id"], now, profile)
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
                limit = _int_parameter(query, "limit", 10, 1, 100)
                page = _int_parameter(query, "page", 1, 1, None)
            except _Refusal as refusal:
                reply = self._error_reply(ticket, refusal)
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
        if "customer" in query and query["customer"] not in (
            publication.customer_id, publication.customer_source_id
        ):
            return False
        return True

    def get_campaign(self, ticket: Ticket, campaign_ref: str) -> Reply:
        """``GET /v1/campaigns/{campaignId}`` by id or name."""
        with self._lock:
            try:
                campaign = self._campaign(campaign_ref)
            except _Refusal as refusal:
                reply = self._error_reply(ticket, refusal)
                self._finish(ticket, reply, "error")
                return reply
            reply = Reply(200, self._campaign_body(campaign), ticket.headers)
            self._finish(ticket, reply, "ok")
            return reply

    def not_found(self, ticket: Ticket) -> Reply:
        """Any other path or method."""
        with self._lock:
            refusal = _Refusal(404, "not_found", "Resource not found", f"No endpoint {ticket.method} {ticket.path}")
            reply = self._error_reply(ticket, refusal)
            self._finish(ticket, reply, "error")
            return reply

    # ------------------------------------------------------------------ response bodies (shapes: the spec)

    def _publication_body(self, publication: Publication) -> dict[str, Any]:
        """``PublicationsCreateVoucherResponseBody``. ``channel`` is ``"API"``, the only value the schema's enum
        allows, whatever channel the request named."""
        voucher = self._vouchers[publication.code]
        return {
            **self._publication_base(publication),
            "result": "SUCCESS",
            "voucher": self._voucher_body(voucher),
        }

    def _list_item(self, publication: Publication) -> dict[str, Any]:
        """``ListPublicationsItemValidSingleVoucher`` (no ``vouchers`` key: that would also match the
        multiple-vouchers item of the spec's ``oneOf``)."""
        campaign = self._campaigns[publication.campaign_id]
        return {
            **self._publication_base(publication),
            "result": "SUCCESS",
            "voucher": {
                "code": publication.code,
                "object": "voucher",
                "campaign": campaign.name,
                **_voucher_value(campaign),
                "is_referral_code": campaign.is_referral,
            },
        }

    def _publication_base(self, publication: Publication) -> dict[str, Any]:
        return {
            "id": publication.id,
            "object": "publication",
            "created_at": iso_utc(publication.created_at),
            "customer_id": publication.customer_id,
            "tracking_id": publication.customer_source_id,
            "metadata": publication.metadata,
            "channel": "API",
            "source_id": publication.source_id,
            "customer": self._customer_body(self._customers[publication.customer_id]),
            "vouchers_id": [publication.voucher_id],
        }

    def _voucher_body(self, voucher: _Voucher) -> dict[str, Any]:
        campaign = self._campaigns[voucher.campaign_id]
        code = quote(voucher.code, safe="")
        body: dict[str, Any] = {
            "id": voucher.id,
            "code": voucher.code,
            "campaign": campaign.name,
            "campaign_id": campaign.id,
            "type": campaign.voucher_type,
            **_voucher_value(campaign),
            **_validity(campaign),
            "active": campaign.active,
            "metadata": {},
            "is_referral_code": campaign.is_referral,
            "created_at": iso_utc(voucher.created_at),
            "redemption": {
                "redeemed_quantity": 0,
                "object": "list",
                "url": f"/v1/vouchers/{code}/redemptions?page=1&limit=10",
            },
            "publish": {
                "object": "list",
                "count": voucher.publish_count,
                "url": f"/v1/vouchers/{code}/publications?page=1&limit=10",
            },
            "object": "voucher",
        }
        if voucher.holder_id is not None:
            body["holder_id"] = voucher.holder_id
        return body

    def _customer_body(self, customer: _Customer) -> dict[str, Any]:
        """``CustomerWithSummaryLoyaltyReferrals``: a customer who has never redeemed or ordered anything."""
        body: dict[str, Any] = {
            "id": customer.id,
            "source_id": customer.source_id,
            **customer.profile,
            "metadata": customer.profile.get("metadata", {}),
            "summary": {
                "redemptions": {
                    "total_redeemed": 0, "total_failed": 0, "total_succeeded": 0, "total_rolled_back": 0,
                    "total_rollback_failed": 0, "total_rollback_succeeded": 0,
                    "gift": {"redeemed_amount": 0, "amount_to_go": 0},
                    "loyalty_card": {"redeemed_points": 0, "points_to_go": 0},
                },
                "orders": {"total_amount": 0, "total_count": 0, "average_amount": 0, "last_order_amount": 0},
            },
            "loyalty": {"points": 0, "referred_customers": 0, "campaigns": {}},
            "referrals": {"total": 0, "campaigns": []},
            "system_metadata": {},
            "created_at": iso_utc(customer.created_at),
            "object": "customer",
        }
        if customer.updated_at is not None:
            body["updated_at"] = iso_utc(customer.updated_at)
        return body

    def _campaign_body(self, campaign: Campaign) -> dict[str, Any]:
        """``CampaignsGetResponseBody``."""
        if campaign.type == "STATIC":
            vouchers_count = len(campaign.codes)
        else:
            vouchers_count = self._generated[campaign.id]
        voucher_value = _voucher_value(campaign)
        if "loyalty_card" in voucher_value:  # CampaignLoyaltyCard has points, no balance
            voucher_value = {"loyalty_card": {"points": campaign.loyalty_points}}
        return {
            "id": campaign.id,
            "name": campaign.name,
            "campaign_type": campaign.campaign_type,
            "type": campaign.type,
            "voucher": {
                "type": campaign.voucher_type,
                **voucher_value,
                "redemption": {"quantity": None},
                "code_config": {
                    "length": campaign.code_pattern.count("#"),
                    "charset": campaign.code_charset,
                    "pattern": campaign.code_pattern,
                    "prefix": campaign.code_prefix,
                },
                "is_referral_code": campaign.is_referral,
                **_validity(campaign),
            },
            "auto_join": False,
            "join_once": campaign.join_once,
            "use_voucher_metadata_schema": False,
            "vouchers_count": vouchers_count,
            **_validity(campaign),
            "active": campaign.active,
            "metadata": campaign.metadata,
            "created_at": iso_utc(self._wall(self._started)),
            "creation_status": "DONE",
            "vouchers_generation_status": "DONE",
            "protected": False,
            "category_id": None,
            "categories": [],
            "object": "campaign",
            "validation_rules_assignments": {"object": "list", "data_ref": "data", "data": [], "total": 0},
        }

    def _error_reply(self, ticket: Ticket, refusal: _Refusal) -> Reply:
        """Voucherify's ``Error`` body (reference, Errors)."""
        body = {
            "code": refusal.status,
            "key": refusal.key,
            "message": refusal.message,
            "details": refusal.details,
            "request_id": ticket.request_id,
            **refusal.extra,
        }
        return Reply(refusal.status, body, ticket.headers)

    def _fault_reply(self, ticket: Ticket) -> Reply:
        """A transient server failure before anything was committed: 500 and 503 as JSON errors, 502 as the
        HTML page of a gateway (clients must not assume JSON)."""
        if ticket.fault == "502":
            return Reply(502, BAD_GATEWAY_HTML, ticket.headers)
        status, key, message = (
            (500, "internal_server_error", "Internal Server Error")
            if ticket.fault == "500"
            else (503, "service_unavailable", "Service Unavailable")
        )
        details = "The request failed before anything was saved (sandbox fault injection)"
        return self._error_reply(ticket, _Refusal(status, key, message, details))

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
        return at + self._wall_offset

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
                self._vouchers.setdefault(code, _Voucher(self._new_id("v_", 24), code, original.campaign_id, original.created_at))
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
            except _Refusal:
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
                "background_accepted": self._background["background_accepted"],
                "background_rejected": self._background["background_rejected"],
                "cycle_used": self._cycle_used,
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


def _no_voucher(campaign: Campaign) -> _Refusal:
    # Wording of Voucherify's SDK documentation for this key.
    return _Refusal(
        400, "no_voucher_suitable_for_publication", "Couldn't find any voucher suitable for publication.",
        "Use auto-update campaigns if you want Voucherify to generate vouchers automatically.",
        resource_id=campaign.id, resource_type="campaign",
    )


def _voucher_value(campaign: Campaign) -> dict[str, Any]:
    """What the voucher is worth: ``discount``, ``gift`` or ``loyalty_card`` (spec: VoucherBase)."""
    if campaign.voucher_type == "GIFT_VOUCHER":
        amount = campaign.gift_amount or 0
        return {"gift": {"amount": amount, "balance": amount, "effect": "APPLY_TO_ORDER"}}
    if campaign.voucher_type == "LOYALTY_CARD":
        return {"loyalty_card": {"points": campaign.loyalty_points, "balance": campaign.loyalty_points}}
    return {"discount": dict(campaign.discount or {})}


def _validity(campaign: Campaign) -> dict[str, str]:
    """``start_date``/``expiration_date`` when set (the schemas do not allow null)."""
    dates = {"start_date": campaign.start_date, "expiration_date": campaign.expiration_date}
    return {name: value for name, value in dates.items() if value is not None}


def _read_publication_request(payload: object) -> _PublicationRequest:
    """Check a ``PublicationsCreateRequestBody`` and pick out what the sandbox uses."""

    def invalid(details: str, key: str = "invalid_payload", message: str = "Invalid payload") -> _Refusal:
        return _Refusal(400, key, message, details)

    if payload is INVALID_JSON:
        raise invalid("The request body is not valid JSON")
    if not isinstance(payload, dict):
        raise invalid("The request body must be a JSON object")
    if "voucher" in payload:
        raise invalid("Publishing a specific voucher code is not modelled by the sandbox; publish from a campaign")
    if payload.get("campaign") is None:
        # The spec's example for a body without a source of codes.
        raise invalid("Either Campaign or Voucher is required", "missing_vouchers", "Missing vouchers")
    campaign = payload["campaign"]
    if isinstance(campaign, dict):
        campaign_ref, count = campaign.get("name"), campaign.get("count")
    else:
        campaign_ref, count = campaign, None
    if not isinstance(campaign_ref, str) or not campaign_ref:
        raise invalid("campaign.name must be the campaign's name or id")

    source_id = payload.get("source_id")
    if source_id is not None and (not isinstance(source_id, str) or not source_id):
        raise invalid("source_id must be a non-empty string")
    if count is not None:
        # The reference: count (1–50) "is not allowed together with a publication source_id".
        if not isinstance(count, int) or isinstance(count, bool) or not 1 <= count <= 50:
            raise invalid("campaign.count must be an integer from 1 to 50")
        if source_id is not None:
            raise invalid("campaign.count cannot be used together with source_id")
        if count > 1:
            raise invalid("campaign.count above 1 (several codes at once) is not modelled by the sandbox")

    customer = payload.get("customer")
    if not isinstance(customer, dict):
        raise invalid("customer is required (an object with source_id and/or id)")
    for name in ("id", "source_id"):
        if name in customer and (not isinstance(customer[name], str) or not customer[name]):
            raise invalid(f"customer.{name} must be a non-empty string", "invalid_customer", "Invalid customer")
    if "id" not in customer and "source_id" not in customer:
        raise invalid("customer needs a source_id or an id", "invalid_customer", "Invalid customer")
    for name, kind in _CUSTOMER_FIELDS.items():
        if name in customer and not isinstance(customer[name], kind):
            raise invalid(f"customer.{name} has the wrong type", "invalid_customer", "Invalid customer")

    metadata = payload.get("metadata")
    if metadata is not None and not isinstance(metadata, dict):
        raise invalid("metadata must be an object")
    channel = payload.get("channel")
    if channel is not None and not isinstance(channel, str):
        raise invalid("channel must be a string")
    return _PublicationRequest(campaign_ref, customer, source_id, metadata or {})


def _int_parameter(query: Mapping[str, str], name: str, default: int, low: int, high: int | None) -> int:
    text = query.get(name)
    if text is None:
        return default
    try:
        value = int(text)
    except ValueError:
        value = low - 1
    if value < low or (high is not None and value > high):
        bounds = f"from {low} to {high}" if high is not None else f"at least {low}"
        raise _Refusal(400, "invalid_payload", "Invalid payload", f"{name} must be an integer {bounds}")
    return value

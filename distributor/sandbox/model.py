"""The sandbox's data: how it is configured, what it logs, what it stores and what it answers.

Plain records, no rules: :mod:`.limits` (admission), :mod:`.requests` (reading a request), :mod:`.bodies` (the
answers' shapes) and :class:`~.world.Sandbox` (the operations, behind one lock) work on them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from ..errors import ConfigError
from ..units import Rate, parse_duration
from .campaigns import Campaign, default_campaigns

DEMO_APP_ID = "sandbox-app-id"
DEMO_APP_TOKEN = "sandbox-app-token"

#: The billing cycle (reference: "API calls per billing cycle"); a cycle is modelled as 30 days.
CYCLE_SECONDS = 30 * 86400

Kind = Literal["publish", "lookup", "campaign", "background", "other"]
Outcome = Literal[
    "pending", "ok", "rate_limited", "quota", "fault_5xx", "lost_answer", "error", "unauthorized"
]
Fault = Literal["500", "502", "503", "lost"]


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
    fault: Fault | None = None
    done: bool = False


@dataclass
class Customer:
    id: str
    source_id: str
    created_at: float
    profile: dict[str, Any]  # CustomerBase fields as sent: name, email, phone, metadata, ...
    updated_at: float | None = None


@dataclass
class Voucher:
    id: str
    code: str
    campaign_id: str
    created_at: float
    holder_id: str | None = None
    publish_count: int = 0


class Refusal(Exception):
    """An error answer decided deep inside an operation (turned into a ``Reply`` by the caller)."""

    def __init__(self, status: int, key: str, message: str, details: str, **extra: str) -> None:
        super().__init__(details)
        self.status, self.key, self.message, self.details, self.extra = status, key, message, details, extra

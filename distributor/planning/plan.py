"""What ``distributor plan`` returns: a :class:`Plan` (the figures of the run it foresees) and its
:class:`Finding` s (what would stop it, what to weigh)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from ..errors import EXIT_OK, EXIT_STOPPED
from ..voucherify import Campaign

PROBLEM = "problem"
WARNING = "warning"
NOTE = "note"


@dataclass(frozen=True)
class Finding:
    """Something the plan found: ``level`` is ``problem`` (run would fail), ``warning`` or ``note``."""

    level: str
    code: str
    message: str


@dataclass(frozen=True)
class Plan:
    """What ``distributor run`` would do with the same options (``to_dict()`` for ``--json``)."""

    distribution: str
    campaign: str
    segment: str
    segment_description: str
    key: str
    journal: str
    journal_exists: bool
    #: the segment: rows read, valid distinct members, invalid rows by reason, repeated identities
    rows: int
    members: int
    invalid: dict[str, int]
    duplicates: int
    #: the members, against the journal
    already_served: int
    failed_before: int
    #: left pending or in flight by an earlier, unfinished run
    unfinished: int
    new: int
    left_segment: int
    retry_failed: bool
    to_serve: int
    #: the cost
    retry_share: float
    retry_share_source: str
    calls_minimum: int
    calls_expected: int
    #: the rate the job may spend: ``rate_limit`` less the ``headroom`` left to the shop
    budget: str
    budget_per_minute: float
    rate_limit: str
    headroom: float
    seconds_at_budget: float
    cycle_quota: int | None
    cycle_used: int
    #: the campaign as Voucherify described it (``None`` when not checked), and the API calls the plan made
    campaign_checked: Campaign | None
    api_calls: int
    findings: list[Finding] = field(default_factory=list)
    #: deliver_to=leavers: who gets a code, the watched members absent from this segment, the leavers recorded
    #: earlier and still without a code, and the run whose segment is the watch list (0: none yet)
    deliver_to: str = "members"
    leaving: int = 0
    owed_before: int = 0
    watch_baseline: int = 0

    @property
    def problems(self) -> list[Finding]:
        return [f for f in self.findings if f.level == PROBLEM]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.level == WARNING]

    @property
    def notes(self) -> list[Finding]:
        return [f for f in self.findings if f.level == NOTE]

    @property
    def exit_code(self) -> int:
        """0: run would work (perhaps with warnings); 3: run would certainly fail."""
        return EXIT_STOPPED if self.problems else EXIT_OK

    @property
    def cycle_left(self) -> int | None:
        return None if self.cycle_quota is None else max(0, self.cycle_quota - self.cycle_used)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["exit_code"] = self.exit_code
        data["cycle_left"] = self.cycle_left
        return data

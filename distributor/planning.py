"""``distributor plan``: what a run would do and what it would cost, found out before any quota is spent.

:func:`make_plan` reads the segment and the journal exactly as a run would (the same rules for invalid and
duplicate rows, the same journal checks), asks Voucherify one question — ``GET /v1/campaigns/{id}``, which also
proves the keys and the region — and returns a :class:`Plan`: who would be served, how many calls that takes, how
long at the budget, and what would stop the run.  It writes nothing: the journal is opened read-only (it may not
exist yet) and its lock is only looked at.

What "would certainly fail" means (a *problem*, exit 3, like the run's own exit code for it): the keys are refused
(401) or the plan forbids the call (402), the campaign does not exist, is switched off or has expired, the
billing-cycle quota is already spent, a STATIC campaign's pool is smaller than the members still to serve, or a
run of this distribution is in progress (a second run refuses to start), or Voucherify could not be reached at all
(no answer twice: nothing was proved).  Anything a run copes with or a person should weigh — a quota the run would
exceed, Voucherify answering 5xx right now, a campaign that starts later — is a *warning*: the plan still exits 0.
"""

from __future__ import annotations

import math
import sqlite3
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from operator import itemgetter
from typing import Any

import anyio
import httpx

from .config import JobConfig, refuse_stand_in_codes_for_real_profiles
from .credentials import Credentials
from .errors import EXIT_OK, EXIT_STOPPED, StopRun
from .journal import DONE, FAILED, PENDING, SENDING, Journal
from .pacing.retry import Action, decide
from .paths import check_destinations
from .run.campaign import (
    check_same_campaign,
    describe,
    distribution_name,
    expires_at,
    is_switched_off,
    starts_at,
    unpublished_at_most,
)
from .segment import Segment, open_segment, refuse_unusable, validated_batches
from .status import run_in_progress
from .target import api_host, project_digest, voucherify_target
from .voucherify import ApiError, Campaign, TransportError, VoucherifyClient

PROBLEM = "problem"
WARNING = "warning"
NOTE = "note"

#: Share of extra calls (retries after timeouts and 5xx, look-ups after lost answers) assumed before the journal
#: has seen enough publications to tell its own: a pessimistic round figure for a healthy Voucherify.
ASSUMED_RETRY_SHARE = 0.05
#: Members a journal must have served before its own retry share is trusted.
_HISTORY_MINIMUM = 100
_READ_BATCH = 20_000
#: Seconds before the second (and last) attempt of the campaign check after no answer or a 5xx.
_SECOND_ATTEMPT_AFTER = 1.0


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


def make_plan(
    config: JobConfig,
    *,
    cycle_quota: int | None = None,
    cycle_used: int = 0,
    transport: httpx.AsyncBaseTransport | None = None,
    now: float | None = None,
) -> Plan:
    """Plan ``config``'s run.  Raises what the run would raise before its first call (:class:`InputError`,
    :class:`JournalError`: exit 2); everything else is reported in the plan's findings."""
    now = time.time() if now is None else now
    check_destinations(config, probe=False)
    refuse_stand_in_codes_for_real_profiles(config)
    segment = open_segment(config.segment, config.id_column)
    journal = Journal.open(config.layout.journal, readonly=True) if config.layout.journal.exists() else None
    try:
        if journal is not None:
            # the checks a run makes before loading the segment, with the same messages
            journal.check_project(host=api_host(config), project=project_digest(config))
            journal.check_belongs(
                key=segment.key, distribution=config.distribution, campaign=config.campaign, segment=segment.name
            )
            journal.check_delivery(config.deliver_to)
        with _SegmentTally() as tally:
            tally.read(segment)
            standing = journal.compare_segment(tally.identities()) if journal is not None else None
            leavers = _leavers_stand(config, journal, tally)
        return _plan(config, segment, journal, tally, standing, cycle_quota, cycle_used, transport, now, leavers)
    finally:
        if journal is not None:
            journal.close()


def _leavers_stand(config: JobConfig, journal: Journal | None, tally: _SegmentTally) -> dict[str, int] | None:
    """deliver_to=leavers: what a run would find (``Journal.compare_leavers``); ``None`` when delivering to members."""
    if not config.delivers_to_leavers:
        return None
    if journal is None:
        return {"leaving": 0, "owed": 0, "failed": 0, "baseline": 0}
    return journal.compare_leavers(tally.identities())


# ---------------------------------------------------------------------- the segment and the journal
class _SegmentTally:
    """The segment's valid members, de-duplicated in a private temporary SQLite file (bounded memory whatever the
    size of the export), counted the way a run counts them."""

    def __init__(self) -> None:
        self._db = sqlite3.connect("", isolation_level=None)  # "": a private temporary database, removed on close
        self._db.execute("CREATE TABLE members (identity TEXT PRIMARY KEY) WITHOUT ROWID")  # h13-reader: one B-tree
        self.rows = 0
        self.members = 0
        self.duplicates = 0
        self.invalid: Counter[str] = Counter()

    def __enter__(self) -> _SegmentTally:
        return self

    def __exit__(self, *exc: object) -> None:
        self._db.close()

    def read(self, segment: Segment) -> None:
        for rows, valid, skipped in validated_batches(segment, _READ_BATCH):  # h13-reader: judged a batch at a time
            self.rows += rows
            self.invalid.update(reason for _, _, reason, _ in skipped)
            before = self._db.total_changes
            self._db.execute("BEGIN")
            self._db.executemany("INSERT OR IGNORE INTO members VALUES (?)", zip(map(itemgetter(2), valid)))
            self._db.execute("COMMIT")
            added = self._db.total_changes - before
            self.members += added
            self.duplicates += len(valid) - added
        refuse_unusable(segment, rows=self.rows, members=self.members, skipped=self.invalid)

    def identities(self) -> Iterator[str]:
        for (identity,) in self._db.execute("SELECT identity FROM members"):
            yield identity


# ---------------------------------------------------------------------- putting it together
def _plan(
    config: JobConfig,
    segment: Segment,
    journal: Journal | None,
    tally: _SegmentTally,
    standing: dict[str, int] | None,
    cycle_quota: int | None,
    cycle_used: int,
    transport: httpx.AsyncBaseTransport | None,
    now: float,
    leavers: dict[str, int] | None = None,
) -> Plan:
    findings: list[Finding] = []
    standing = standing or {PENDING: 0, SENDING: 0, DONE: 0, FAILED: 0, "new": tally.members, "left": 0}
    unfinished = standing[PENDING] + standing[SENDING]
    to_serve = standing["new"] + unfinished + (standing[FAILED] if config.retry_failed else 0)
    if leavers is not None:
        to_serve = leavers["leaving"] + leavers["owed"] + (leavers["failed"] if config.retry_failed else 0)
        findings += _leavers_findings(leavers, tally.members)
    if config.limit is not None and to_serve > config.limit:
        findings.append(Finding(
            NOTE, "limit",
            f"--limit {config.limit}: a run would serve the first {config.limit:,} of the {to_serve:,} members without "
            "a code and stop (exit 3); the same command without --limit serves the rest",
        ))
        to_serve = config.limit

    held_in_journal = journal.state_counts()[DONE] if journal is not None else 0
    knows_campaign = (
        journal is not None and bool(journal.meta("campaign_id")) and journal.meta("join_once") in ("0", "1")
    )
    retry_share, share_source = _retry_share(journal)
    preflight = 0 if knows_campaign or not to_serve else 1
    calls_minimum = to_serve + preflight
    calls_expected = math.ceil(to_serve * (1 + retry_share)) + preflight
    budget = config.budget
    seconds = calls_expected / budget.per_second

    if journal is not None:
        holder = run_in_progress(journal)
        if holder is not None:
            findings.append(Finding(
                PROBLEM, "journal_in_use",
                f"a run of this distribution is in progress ({holder}): a second run would refuse to start "
                "(exit 3) until it ends; see distributor status",
            ))

    campaign: Campaign | None = None
    api_calls = 0
    if to_serve:
        campaign, api_calls, found = anyio.run(_check_campaign, config, transport, backend="asyncio")
        findings += found
    elif leavers is None:
        findings.append(Finding(
            NOTE, "nothing_to_publish",
            "every valid member already holds a code: a run would make no API call (the campaign was not checked)",
        ))
    if config.clevertap is not None:
        findings += _check_clevertap(config)
    known_id = journal.meta("campaign_id") if journal is not None else None
    if campaign is not None:
        check_same_campaign(config.layout.journal, known_id, config.campaign, campaign)
    if campaign is not None:
        findings += _campaign_findings(campaign, to_serve, held_in_journal, now, now + seconds)

    left_quota = None if cycle_quota is None else max(0, cycle_quota - cycle_used)
    if left_quota is not None and to_serve:
        if calls_minimum > left_quota:
            findings.append(Finding(
                WARNING, "quota_exceeded",
                f"at least {calls_minimum:,} calls are needed but {left_quota:,} are left in the billing cycle: "
                "the run would stop when the quota is spent (exit 3) and could resume next cycle — "
                "and the shop's checkout would have no calls left meanwhile",
            ))
        elif calls_expected > left_quota:
            findings.append(Finding(
                WARNING, "quota_may_be_exceeded",
                f"about {calls_expected:,} calls are expected (at least {calls_minimum:,}) and {left_quota:,} are left "
                "in the billing cycle: retries could spend it all, leaving the shop's checkout nothing",
            ))
    if standing[FAILED] and not config.retry_failed:
        findings.append(Finding(
            NOTE, "failed_not_retried",
            f"{standing[FAILED]:,} members failed in earlier runs and would not be tried again: add --retry-failed "
            "to include them",
        ))
    if standing["left"] and leavers is None:
        findings.append(Finding(
            NOTE, "left_segment",
            f"{standing['left']:,} members of earlier runs are not in this segment: they keep their codes, are not "
            f"touched, and are listed in {config.layout.left}",
        ))

    distribution = distribution_name(
        config.distribution,
        journal.meta("distribution") if journal is not None else None,
        campaign.id if campaign is not None else None,
        config.campaign,
    )
    return Plan(
        distribution=distribution,
        campaign=config.campaign,
        segment=str(config.segment),
        segment_description=segment.describe(),
        key=segment.key,
        journal=str(config.layout.journal),
        journal_exists=journal is not None,
        rows=tally.rows,
        members=tally.members,
        invalid=dict(tally.invalid),
        duplicates=tally.duplicates,
        already_served=standing[DONE],
        failed_before=standing[FAILED],
        unfinished=unfinished,
        new=standing["new"],
        left_segment=standing["left"],
        retry_failed=config.retry_failed,
        to_serve=to_serve,
        retry_share=round(retry_share, 4),
        retry_share_source=share_source,
        calls_minimum=calls_minimum,
        calls_expected=calls_expected,
        budget=str(budget),
        budget_per_minute=round(budget.per_second * 60, 3),
        rate_limit=str(config.rate_limit),
        headroom=config.headroom,
        seconds_at_budget=round(seconds, 1),
        cycle_quota=cycle_quota,
        cycle_used=cycle_used,
        campaign_checked=campaign,
        api_calls=api_calls,
        findings=findings,
        deliver_to=config.deliver_to,
        leaving=leavers["leaving"] if leavers else 0,
        owed_before=leavers["owed"] if leavers else 0,
        watch_baseline=leavers["baseline"] if leavers else 0,
    )


def _check_clevertap(config: JobConfig) -> list[Finding]:
    """``--clevertap``: the one cheap authenticated call a run makes before publishing, so that wrong CleverTap
    credentials or region show here (exit 3) rather than at 3 a.m.  No Voucherify quota is spent."""
    from .push import connect

    async def prove() -> None:
        async with connect(config):
            pass

    try:
        anyio.run(prove, backend="asyncio")
    except StopRun as refused:
        return [Finding(PROBLEM, "clevertap_refused", str(refused))]
    return [Finding(NOTE, "clevertap", f"CleverTap accepted the account and passcode ({config.clevertap})")]


def _leavers_findings(leavers: dict[str, int], watched: int) -> list[Finding]:
    if not leavers["baseline"]:
        return [Finding(
            NOTE, "leavers_baseline",
            f"first run of a leavers distribution: it would record the {watched:,} members of this segment as the "
            "watch list and publish nothing; the next run publishes to those who have left",
        )]
    if not leavers["leaving"] and not leavers["owed"]:
        return [Finding(
            NOTE, "nothing_to_publish",
            f"no member of run {leavers['baseline']}'s segment (the previous complete run) is missing from this one "
            "without a code: a run would make no API call (the campaign was not checked)",
        )]
    return []


def _retry_share(journal: Journal | None) -> tuple[float, str]:
    """Extra calls per member served: the journal's own history once it is long enough, else the assumption."""
    if journal is not None:
        calls, served = journal.publication_history()
        if served >= _HISTORY_MINIMUM:
            return min(2.0, max(0.0, calls / served - 1.0)), "journal"
    return ASSUMED_RETRY_SHARE, "assumed"


# ---------------------------------------------------------------------- the campaign
async def _check_campaign(
    config: JobConfig, transport: httpx.AsyncBaseTransport | None
) -> tuple[Campaign | None, int, list[Finding]]:
    """``GET /v1/campaigns/{id}``, a second time only after no answer or a 5xx.  Returns the campaign (or
    ``None``), the calls made, and what the answers mean for a run."""
    with voucherify_target(config) as target:
        return await _ask(config, target.url, target.credentials, transport)


async def _ask(
    config: JobConfig, url: str, credentials: Credentials, transport: httpx.AsyncBaseTransport | None
) -> tuple[Campaign | None, int, list[Finding]]:
    calls = 0
    async with VoucherifyClient(
        url, credentials, timeout=config.timeout, max_connections=2, transport=transport
    ) as api:
        for attempt in (1, 2):
            calls += 1
            try:
                return await api.get_campaign(config.campaign), calls, []
            except (ApiError, TransportError) as error:
                decision = decide(error, campaign=config.campaign)
                if decision.action is Action.RETRY and decision.reason != "rate_limited" and attempt == 1:
                    await anyio.sleep(_SECOND_ATTEMPT_AFTER)
                    continue
                return None, calls, [_refusal(decision.action, decision.reason, decision.message, error)]
    raise AssertionError("unreachable")  # pragma: no cover


def _refusal(action: Action, reason: str, message: str, error: Exception) -> Finding:
    if action is Action.STOP and reason == "forbidden":
        return Finding(
            WARNING, "campaign_unchecked",
            f"{message}; a run skips this check too, and publishing may still be allowed",
        )
    if action is Action.STOP:
        return Finding(PROBLEM, reason, message)
    if action is Action.RETRY and reason == "rate_limited":
        return Finding(
            WARNING, "campaign_unchecked",
            "Voucherify answered 429: the project's rate limit is used up right now (by the shop or another job); "
            "the campaign was not checked. A run would wait its turn",
        )
    if action is Action.RETRY and reason in ("timeout", "connection"):
        return Finding(
            PROBLEM, "unreachable",
            f"Voucherify could not be reached ({error}): neither the keys, the region nor the campaign were proved; "
            "check --api-url and the network, then plan again",
        )
    if action is Action.RETRY:
        return Finding(
            WARNING, "campaign_unchecked",
            f"no usable answer from Voucherify ({error}): the campaign was not checked. A run retries for a minute "
            "before it gives up",
        )
    # any other refusal of the campaign call stops a run at once
    return Finding(PROBLEM, "refused", f"Voucherify refused the campaign check: {error}")


def _campaign_findings(
    campaign: Campaign, to_serve: int, held_in_journal: int, now: float, finish: float
) -> list[Finding]:
    findings: list[Finding] = []
    name = describe(campaign)
    if is_switched_off(campaign):
        findings.append(Finding(
            PROBLEM, "campaign_inactive",
            f"{name} is switched off in Voucherify: it publishes no code while inactive; activate it first",
        ))
    expires = expires_at(campaign)
    if expires is not None and expires <= now:
        findings.append(Finding(
            PROBLEM, "campaign_expired",
            f"{name} expired on {_day(expires)}: its codes could not be redeemed; extend its expiration date or "
            "choose another campaign",
        ))
    elif expires is not None and expires <= finish:
        findings.append(Finding(
            WARNING, "expires_during_run",
            f"{name} expires on {_day(expires)}, before the run would end (about {_day(finish)}): the last "
            "members would get codes they cannot redeem",
        ))
    starts = starts_at(campaign)
    if starts is not None and starts > now:
        findings.append(Finding(
            WARNING, "campaign_not_started",
            f"{name} starts on {_day(starts)}: the codes can be redeemed only from then",
        ))
    unpublished = unpublished_at_most(campaign, held_in_journal)
    if unpublished is not None:
        if to_serve > unpublished:
            detail = (
                f"{name} holds {campaign.vouchers_count:,} codes in all"
                + (f", {held_in_journal:,} of them held by this distribution's members" if held_in_journal else "")
                + f", but {to_serve:,} members still need one"
            )
            if campaign.join_once:
                findings.append(Finding(
                    WARNING, "pool_may_be_too_small",
                    f"{detail}: it runs out unless enough of them already hold a code of it (join-once campaigns "
                    "give those the same code again)",
                ))
            else:
                findings.append(Finding(
                    PROBLEM, "pool_too_small",
                    f"{detail}: the run would stop when the pool runs out (exit 3) after at most "
                    f"{unpublished:,} codes; add codes to the campaign (or serve a smaller segment)",
                ))
        else:
            findings.append(Finding(
                NOTE, "static_pool",
                f"{name} is a STATIC pool of {campaign.vouchers_count:,} codes: at most {unpublished:,} are "
                "unpublished (codes published by others are not visible to this check)",
            ))
    if campaign.join_once:
        findings.append(Finding(
            NOTE, "join_once",
            f"{name} is join-once: a member who already holds a code of it gets that same code",
        ))
    return findings


def _day(unix: float) -> str:
    return datetime.fromtimestamp(unix, UTC).strftime("%Y-%m-%d %H:%M UTC")


"""Putting a plan together: the segment and the journal read as a run reads them, the figures (who would be
served, how many calls, how long at the budget), and the findings of the checks."""

from __future__ import annotations

import math
import time

import anyio
import httpx

from ..config import JobConfig, refuse_stand_in_codes_for_real_profiles
from ..journal import DONE, FAILED, PENDING, SENDING, Journal
from ..paths import check_destinations
from ..run.campaign import check_same_campaign, distribution_name
from ..segment import Segment, open_segment
from ..status import run_in_progress
from ..target import api_host, project_digest
from ..voucherify import Campaign
from .findings import (
    NOTHING_TO_PUBLISH,
    campaign_findings,
    failed_not_retried,
    journal_in_use,
    leavers_findings,
    left_segment,
    limited,
    quota_findings,
)
from .plan import Finding, Plan
from .preflight import check_campaign, check_clevertap
from .tally import SegmentTally

#: Share of extra calls (retries after timeouts and 5xx, look-ups after lost answers) assumed before the journal
#: has seen enough publications to tell its own: a pessimistic round figure for a healthy Voucherify.
ASSUMED_RETRY_SHARE = 0.05
#: Members a journal must have served before its own retry share is trusted.
_HISTORY_MINIMUM = 100


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
        with SegmentTally() as tally:
            tally.read(segment)
            standing = journal.compare_segment(tally.identities()) if journal is not None else None
            leavers = _leavers_stand(config, journal, tally)
        return _plan(config, segment, journal, tally, standing, cycle_quota, cycle_used, transport, now, leavers)
    finally:
        if journal is not None:
            journal.close()


def _leavers_stand(config: JobConfig, journal: Journal | None, tally: SegmentTally) -> dict[str, int] | None:
    """deliver_to=leavers: what a run would find (``Journal.compare_leavers``); ``None`` when delivering to members."""
    if not config.delivers_to_leavers:
        return None
    if journal is None:
        return {"leaving": 0, "owed": 0, "failed": 0, "baseline": 0}
    return journal.compare_leavers(tally.identities())


def _plan(
    config: JobConfig,
    segment: Segment,
    journal: Journal | None,
    tally: SegmentTally,
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
        findings += leavers_findings(leavers, tally.members)
    if config.limit is not None and to_serve > config.limit:
        findings.append(limited(config.limit, to_serve))
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

    holder = run_in_progress(journal) if journal is not None else None
    if holder is not None:
        findings.append(journal_in_use(holder))

    campaign: Campaign | None = None
    api_calls = 0
    if to_serve:
        campaign, api_calls, found = anyio.run(check_campaign, config, transport, backend="asyncio")
        findings += found
    elif leavers is None:
        findings.append(NOTHING_TO_PUBLISH)
    if config.clevertap is not None:
        findings += check_clevertap(config)
    known_id = journal.meta("campaign_id") if journal is not None else None
    if campaign is not None:
        check_same_campaign(config.layout.journal, known_id, config.campaign, campaign)
    if campaign is not None:
        findings += campaign_findings(campaign, to_serve, held_in_journal, now, now + seconds)

    left_quota = None if cycle_quota is None else max(0, cycle_quota - cycle_used)
    if left_quota is not None and to_serve:
        findings += quota_findings(calls_minimum, calls_expected, left_quota)
    if standing[FAILED] and not config.retry_failed:
        findings.append(failed_not_retried(standing[FAILED]))
    if standing["left"] and leavers is None:
        findings.append(left_segment(standing["left"], config.layout.left))

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


def _retry_share(journal: Journal | None) -> tuple[float, str]:
    """Extra calls per member served: the journal's own history once it is long enough, else the assumption."""
    if journal is not None:
        calls, served = journal.publication_history()
        if served >= _HISTORY_MINIMUM:
            return min(2.0, max(0.0, calls / served - 1.0)), "journal"
    return ASSUMED_RETRY_SHARE, "assumed"

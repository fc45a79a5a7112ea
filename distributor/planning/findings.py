"""What the campaign, the leavers' watch list and the billing cycle mean for the run ``plan`` foresees: the rules
that turn figures into :class:`~.plan.Finding` s."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from ..run.campaign import describe, expires_at, is_switched_off, starts_at, unpublished_at_most
from ..voucherify import Campaign
from .plan import NOTE, PROBLEM, WARNING, Finding

NOTHING_TO_PUBLISH = Finding(
    NOTE, "nothing_to_publish",
    "every valid member already holds a code: a run would make no API call (the campaign was not checked)",
)


def limited(limit: int, to_serve: int) -> Finding:
    return Finding(
        NOTE, "limit",
        f"--limit {limit}: a run would serve the first {limit:,} of the {to_serve:,} members without "
        "a code and stop (exit 3); the same command without --limit serves the rest",
    )


def journal_in_use(holder: str) -> Finding:
    return Finding(
        PROBLEM, "journal_in_use",
        f"a run of this distribution is in progress ({holder}): a second run would refuse to start "
        "(exit 3) until it ends; see distributor status",
    )


def quota_findings(calls_minimum: int, calls_expected: int, left_quota: int) -> list[Finding]:
    """What the calls a run needs mean for what is left of the billing cycle's quota."""
    if calls_minimum > left_quota:
        return [Finding(
            WARNING, "quota_exceeded",
            f"at least {calls_minimum:,} calls are needed but {left_quota:,} are left in the billing cycle: "
            "the run would stop when the quota is spent (exit 3) and could resume next cycle — "
            "and the shop's checkout would have no calls left meanwhile",
        )]
    if calls_expected > left_quota:
        return [Finding(
            WARNING, "quota_may_be_exceeded",
            f"about {calls_expected:,} calls are expected (at least {calls_minimum:,}) and {left_quota:,} are left "
            "in the billing cycle: retries could spend it all, leaving the shop's checkout nothing",
        )]
    return []


def failed_not_retried(failed: int) -> Finding:
    return Finding(
        NOTE, "failed_not_retried",
        f"{failed:,} members failed in earlier runs and would not be tried again: add --retry-failed "
        "to include them",
    )


def left_segment(left: int, report: Path) -> Finding:
    return Finding(
        NOTE, "left_segment",
        f"{left:,} members of earlier runs are not in this segment: they keep their codes, are not "
        f"touched, and are listed in {report}",
    )


def campaign_findings(
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


def leavers_findings(leavers: dict[str, int], watched: int) -> list[Finding]:
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


def _day(unix: float) -> str:
    return datetime.fromtimestamp(unix, UTC).strftime("%Y-%m-%d %H:%M UTC")

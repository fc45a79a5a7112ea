"""What the campaign, the leavers' watch list and the billing cycle mean for the run ``plan`` foresees: the rules
that turn figures into :class:`~.plan.Finding` s."""

from __future__ import annotations

from datetime import UTC, datetime

from ..run.campaign import describe, expires_at, is_switched_off, starts_at, unpublished_at_most
from ..voucherify import Campaign
from .plan import NOTE, PROBLEM, WARNING, Finding


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

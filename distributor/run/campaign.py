"""The campaign rules a run applies and a plan predicts, in one place so the two cannot drift apart.

* :func:`check_same_campaign`: a journal is bound to the campaign its first run resolved; a campaign option that
  now resolves to another campaign is refused (:class:`JournalError`) with the same text by ``run`` and ``plan``.
* :func:`distribution_name`: by default the distribution is the campaign's id, so that one customer gets one code
  per campaign even if the journal is lost; the journal pins whatever name its first run used.
* the campaign's state as Voucherify describes it — switched off, expired, not started yet, a STATIC pool too small
  for the members still to serve — which a run logs as warnings and a plan reports as findings.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from ..errors import JournalError
from ..voucherify import Campaign


def check_same_campaign(journal_path: Path, known_id: str | None, configured: str, campaign: Campaign) -> None:
    """Refuse ``campaign`` (what ``configured`` names now) when the journal already belongs to ``known_id``."""
    if known_id and known_id != campaign.id:
        raise JournalError(
            f"journal {journal_path} belongs to campaign {known_id}, but {configured!r} is {campaign.id}"
        )


def distribution_name(configured: str | None, pinned: str | None, campaign_id: str | None, campaign: str) -> str:
    """The distribution's name: as configured, else as the journal pinned it, else the campaign's id (or, when
    Voucherify did not tell it, the campaign as configured)."""
    return configured or pinned or campaign_id or campaign


def describe(campaign: Campaign) -> str:
    return f"campaign {campaign.name!r} ({campaign.id})"


def is_switched_off(campaign: Campaign) -> bool:
    """Voucherify publishes no code of an inactive campaign."""
    return campaign.active is False


def expires_at(campaign: Campaign) -> float | None:
    return timestamp(campaign.expiration_date)


def starts_at(campaign: Campaign) -> float | None:
    return timestamp(campaign.start_date)


def has_expired(campaign: Campaign, now: float) -> bool:
    expires = expires_at(campaign)
    return expires is not None and expires <= now


def unpublished_at_most(campaign: Campaign, held: int = 0) -> int | None:
    """A STATIC campaign's codes not yet published, at most: its size (every code it has, published or not — the
    campaigns schema) less the ``held`` codes known published; ``None`` for a campaign that generates its codes."""
    if campaign.type != "STATIC" or campaign.vouchers_count is None:
        return None
    return max(0, campaign.vouchers_count - held)


def timestamp(value: str | None) -> float | None:
    """An ISO 8601 date of Voucherify's as a Unix time (UTC when it names no zone); ``None`` if absent or unreadable."""
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()

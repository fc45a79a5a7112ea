"""What one code becomes in CleverTap's Upload Profiles API: a record carrying only the identifier and the code
property (and, with ``--expiry-property``, the voucher's expiration as a CleverTap date) — never Email, Phone or
Name, which would merge profiles."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

log = logging.getLogger("distributor")


@dataclass(frozen=True)
class Item:
    member_id: int
    identity: str
    code: str
    expires_at: float | None = None


def profile_record(item: Item, *, key: str, property_name: str, expiry_property: str | None) -> dict[str, Any]:
    """The upload record: the identifier and the code property, nothing else."""
    data: dict[str, Any] = {property_name: item.code}
    if expiry_property is not None and item.expires_at is not None:  # no expiry: the property is left out
        data[expiry_property] = f"$D_{int(item.expires_at)}"
    return {key: item.identity, "type": "profile", "profileData": data}


def expiry_epoch(iso: str | None) -> float | None:
    """Voucherify's ``expiration_date`` (ISO 8601; UTC when it names no zone) as Unix time; ``None`` if absent or
    unreadable."""
    if not iso:
        return None
    try:
        moment = datetime.fromisoformat(iso)
    except ValueError:
        log.warning("voucher expiration_date %r is not an ISO date: left out", iso)
        return None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()

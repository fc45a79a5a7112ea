"""Reading a request to the sandbox: a publication's body (``PublicationsCreateRequestBody``) checked as
Voucherify checks it, and a list's query parameters.  A request that breaks the rules raises :class:`Refusal`
with Voucherify's ``400`` key and wording.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .model import Refusal


class _InvalidJson:
    """Marks a request body that is not JSON at all (the HTTP layer passes it instead of a payload)."""

    def __repr__(self) -> str:
        return "INVALID_JSON"


INVALID_JSON = _InvalidJson()


@dataclass(frozen=True)
class PublicationRequest:
    campaign_ref: str
    customer: dict[str, Any]
    source_id: str | None
    metadata: dict[str, Any]


# CustomerBase fields a publication may set on the customer, with their JSON types (spec: CustomerBase).
CUSTOMER_FIELDS: dict[str, type | tuple[type, ...]] = {
    "name": str,
    "email": str,
    "phone": str,
    "birthday": str,
    "birthdate": str,
    "address": (dict, type(None)),
    "metadata": dict,
}


def read_publication_request(payload: object) -> PublicationRequest:
    """Check a ``PublicationsCreateRequestBody`` and pick out what the sandbox uses."""

    def invalid(details: str, key: str = "invalid_payload", message: str = "Invalid payload") -> Refusal:
        return Refusal(400, key, message, details)

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
    for name, kind in CUSTOMER_FIELDS.items():
        if name in customer and not isinstance(customer[name], kind):
            raise invalid(f"customer.{name} has the wrong type", "invalid_customer", "Invalid customer")

    metadata = payload.get("metadata")
    if metadata is not None and not isinstance(metadata, dict):
        raise invalid("metadata must be an object")
    channel = payload.get("channel")
    if channel is not None and not isinstance(channel, str):
        raise invalid("channel must be a string")
    return PublicationRequest(campaign_ref, customer, source_id, metadata or {})


def int_parameter(query: Mapping[str, str], name: str, default: int, low: int, high: int | None) -> int:
    text = query.get(name)
    if text is None:
        return default
    try:
        value = int(text)
    except ValueError:
        value = low - 1
    if value < low or (high is not None and value > high):
        bounds = f"from {low} to {high}" if high is not None else f"at least {low}"
        raise Refusal(400, "invalid_payload", "Invalid payload", f"{name} must be an integer {bounds}")
    return value

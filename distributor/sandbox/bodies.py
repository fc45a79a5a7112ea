"""The sandbox's answers, shaped as Voucherify's (the shapes: the official OpenAPI files, "the spec").

Pure functions of the stored records (:mod:`.model`): what a publication, voucher, customer or campaign looks
like in an answer, Voucherify's error body, and a gateway's HTML page on a 502.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from .campaigns import Campaign, iso_utc
from .model import Customer, Publication, Refusal, Reply, Ticket, Voucher

#: Voucherify's 429 body, exactly (reference, Errors table): no key, no request_id.
RATE_LIMITED_BODY = {"code": 429, "message": "Too many requests hit the API too quickly."}

#: What a load balancer in front of Voucherify answers on a 502: HTML, not JSON.
BAD_GATEWAY_HTML = (
    "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    "<center><h1>502 Bad Gateway</h1></center>\r\n</body>\r\n</html>\r\n"
)


def publication_body(
    publication: Publication, customer: Customer, voucher: Voucher, campaign: Campaign
) -> dict[str, Any]:
    """``PublicationsCreateVoucherResponseBody``. ``channel`` is ``"API"``, the only value the schema's enum
    allows, whatever channel the request named.  ``campaign``: the voucher's."""
    return {
        **publication_base(publication, customer),
        "result": "SUCCESS",
        "voucher": voucher_body(voucher, campaign),
    }


def list_item(publication: Publication, customer: Customer, campaign: Campaign) -> dict[str, Any]:
    """``ListPublicationsItemValidSingleVoucher`` (no ``vouchers`` key: that would also match the
    multiple-vouchers item of the spec's ``oneOf``)."""
    return {
        **publication_base(publication, customer),
        "result": "SUCCESS",
        "voucher": {
            "code": publication.code,
            "object": "voucher",
            "campaign": campaign.name,
            **voucher_value(campaign),
            "is_referral_code": campaign.is_referral,
        },
    }


def publication_base(publication: Publication, customer: Customer) -> dict[str, Any]:
    return {
        "id": publication.id,
        "object": "publication",
        "created_at": iso_utc(publication.created_at),
        "customer_id": publication.customer_id,
        "tracking_id": publication.customer_source_id,
        "metadata": publication.metadata,
        "channel": "API",
        "source_id": publication.source_id,
        "customer": customer_body(customer),
        "vouchers_id": [publication.voucher_id],
    }


def voucher_body(voucher: Voucher, campaign: Campaign) -> dict[str, Any]:
    code = quote(voucher.code, safe="")
    body: dict[str, Any] = {
        "id": voucher.id,
        "code": voucher.code,
        "campaign": campaign.name,
        "campaign_id": campaign.id,
        "type": campaign.voucher_type,
        **voucher_value(campaign),
        **validity(campaign),
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


def customer_body(customer: Customer) -> dict[str, Any]:
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


def campaign_body(campaign: Campaign, vouchers_count: int, created_at: float) -> dict[str, Any]:
    """``CampaignsGetResponseBody``; ``created_at``: Unix time."""
    value = voucher_value(campaign)
    if "loyalty_card" in value:  # CampaignLoyaltyCard has points, no balance
        value = {"loyalty_card": {"points": campaign.loyalty_points}}
    return {
        "id": campaign.id,
        "name": campaign.name,
        "campaign_type": campaign.campaign_type,
        "type": campaign.type,
        "voucher": {
            "type": campaign.voucher_type,
            **value,
            "redemption": {"quantity": None},
            "code_config": {
                "length": campaign.code_pattern.count("#"),
                "charset": campaign.code_charset,
                "pattern": campaign.code_pattern,
                "prefix": campaign.code_prefix,
            },
            "is_referral_code": campaign.is_referral,
            **validity(campaign),
        },
        "auto_join": False,
        "join_once": campaign.join_once,
        "use_voucher_metadata_schema": False,
        "vouchers_count": vouchers_count,
        **validity(campaign),
        "active": campaign.active,
        "metadata": campaign.metadata,
        "created_at": iso_utc(created_at),
        "creation_status": "DONE",
        "vouchers_generation_status": "DONE",
        "protected": False,
        "category_id": None,
        "categories": [],
        "object": "campaign",
        "validation_rules_assignments": {"object": "list", "data_ref": "data", "data": [], "total": 0},
    }


def error_reply(ticket: Ticket, refusal: Refusal) -> Reply:
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


def fault_reply(ticket: Ticket) -> Reply:
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
    return error_reply(ticket, Refusal(status, key, message, details))


def voucher_value(campaign: Campaign) -> dict[str, Any]:
    """What the voucher is worth: ``discount``, ``gift`` or ``loyalty_card`` (spec: VoucherBase)."""
    if campaign.voucher_type == "GIFT_VOUCHER":
        amount = campaign.gift_amount or 0
        return {"gift": {"amount": amount, "balance": amount, "effect": "APPLY_TO_ORDER"}}
    if campaign.voucher_type == "LOYALTY_CARD":
        return {"loyalty_card": {"points": campaign.loyalty_points, "balance": campaign.loyalty_points}}
    return {"discount": dict(campaign.discount or {})}


def validity(campaign: Campaign) -> dict[str, str]:
    """``start_date``/``expiration_date`` when set (the schemas do not allow null)."""
    dates = {"start_date": campaign.start_date, "expiration_date": campaign.expiration_date}
    return {name: value for name, value in dates.items() if value is not None}

"""The sandbox's campaigns: what a Voucherify project would have configured in its dashboard.

A campaign says how codes are made (``AUTO_UPDATE`` generates one per publication, ``STATIC`` hands out a fixed
pool), whether a customer may hold several (``join_once``), and what the voucher is worth (a discount, a gift
balance or a loyalty card). See Voucherify's campaign documentation and the schemas ``CampaignBase``
and ``VoucherBase`` of its official OpenAPI files.

Campaigns can be written in a TOML file, one ``[[campaign]]`` table each::

    [[campaign]]
    id = "camp_spring"
    name = "spring-15"
    campaign_type = "DISCOUNT_COUPONS"
    type = "AUTO_UPDATE"
    code_prefix = "SPRING-"
    discount = { type = "PERCENT", percent_off = 15, effect = "APPLY_TO_ORDER" }

    [[campaign]]
    id = "camp_vip"
    name = "vip-codes"
    type = "STATIC"
    codes_count = 20          # or: codes = ["VIP-A", "VIP-B"]
    discount = { type = "AMOUNT", amount_off = 1000 }
"""

from __future__ import annotations

import datetime as dt
import string
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from ..errors import ConfigError

CAMPAIGN_TYPES = ("DISCOUNT_COUPONS", "REFERRAL_PROGRAM", "LOYALTY_PROGRAM", "GIFT_VOUCHERS")
#: ``STANDALONE`` (codes outside any campaign) is not modelled: the distributor always publishes from a campaign.
GENERATION_TYPES = ("AUTO_UPDATE", "STATIC")
VOUCHER_TYPES = ("DISCOUNT_VOUCHER", "LOYALTY_CARD", "GIFT_VOUCHER")
DISCOUNT_TYPES = ("AMOUNT", "PERCENT", "FIXED", "UNIT")
#: Voucherify's default code charset (``code_config.charset`` in its campaign example).
ALPHANUMERIC = string.digits + string.ascii_letters

# What a campaign of each type publishes unless told otherwise.
_DEFAULT_VOUCHER_TYPE = {
    "DISCOUNT_COUPONS": "DISCOUNT_VOUCHER",
    "REFERRAL_PROGRAM": "DISCOUNT_VOUCHER",
    "LOYALTY_PROGRAM": "LOYALTY_CARD",
    "GIFT_VOUCHERS": "GIFT_VOUCHER",
}


@dataclass
class Campaign:
    """One Voucherify campaign.

    ``code_pattern`` follows Voucherify's ``code_config.pattern``: each ``#`` is replaced by a random character
    of ``code_charset``, and ``code_prefix`` is put in front. ``codes`` is the fixed pool of a ``STATIC``
    campaign (empty for ``AUTO_UPDATE``). ``discount`` is a Voucherify ``Discount`` object as-is, e.g.
    ``{"type": "PERCENT", "percent_off": 20, "effect": "APPLY_TO_ORDER"}``; ``gift_amount`` (in cents) and
    ``loyalty_points`` describe gift and loyalty-card vouchers.
    """

    id: str
    name: str
    campaign_type: str = "DISCOUNT_COUPONS"
    type: str = "AUTO_UPDATE"
    join_once: bool = False
    active: bool = True
    start_date: str | None = None
    expiration_date: str | None = None
    code_prefix: str = ""
    code_pattern: str = "########"
    code_charset: str = ALPHANUMERIC
    codes: list[str] = field(default_factory=list)
    voucher_type: str = ""  # "" = the usual one for campaign_type (LOYALTY_PROGRAM -> LOYALTY_CARD, ...)
    discount: dict[str, Any] | None = None
    gift_amount: int | None = None
    loyalty_points: int = 0
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        where = f"campaign {self.name or self.id!r}"
        if not self.id.startswith("camp_"):
            raise ConfigError(f"{where}: id {self.id!r} must start with 'camp_' like Voucherify's ids")
        if not self.name:
            raise ConfigError(f"campaign {self.id!r}: name must not be empty")
        _check_choice(where, "campaign_type", self.campaign_type, CAMPAIGN_TYPES)
        _check_choice(where, "type", self.type, GENERATION_TYPES)
        if not self.voucher_type:
            self.voucher_type = _DEFAULT_VOUCHER_TYPE[self.campaign_type]
        _check_choice(where, "voucher_type", self.voucher_type, VOUCHER_TYPES)
        if self.type == "STATIC" and not self.codes:
            raise ConfigError(f"{where}: a STATIC campaign needs codes (codes = [...] or codes_count = N)")
        if self.type == "AUTO_UPDATE" and self.codes:
            raise ConfigError(f"{where}: codes are only for STATIC campaigns; AUTO_UPDATE generates its own")
        if len(set(self.codes)) != len(self.codes):
            raise ConfigError(f"{where}: the codes pool contains duplicates")
        if self.type == "AUTO_UPDATE" and ("#" not in self.code_pattern or not self.code_charset):
            raise ConfigError(f"{where}: code_pattern needs at least one '#' and code_charset characters")
        if self.voucher_type == "DISCOUNT_VOUCHER" and (
            not isinstance(self.discount, dict) or self.discount.get("type") not in DISCOUNT_TYPES
        ):
            raise ConfigError(
                f"{where}: a DISCOUNT_VOUCHER needs discount = {{ type = one of {', '.join(DISCOUNT_TYPES)}, ... }}"
            )
        if self.voucher_type == "GIFT_VOUCHER" and (self.gift_amount is None or self.gift_amount < 0):
            raise ConfigError(f"{where}: a GIFT_VOUCHER needs gift_amount (in cents, >= 0)")
        for name in ("start_date", "expiration_date"):
            value = getattr(self, name)
            if value is not None:
                setattr(self, name, _iso_datetime(where, name, value))

    @property
    def is_referral(self) -> bool:
        return self.campaign_type == "REFERRAL_PROGRAM"


def default_campaigns() -> list[Campaign]:
    """The demo project: one campaign of each kind the distributor may be pointed at."""
    return [
        Campaign(
            id="camp_demo_reactivation",
            name="reactivation-20",
            campaign_type="DISCOUNT_COUPONS",
            type="AUTO_UPDATE",
            code_prefix="REACT-",
            discount={"type": "PERCENT", "percent_off": 20, "effect": "APPLY_TO_ORDER"},
        ),
        Campaign(
            id="camp_demo_referral",
            name="referral-program",
            campaign_type="REFERRAL_PROGRAM",
            type="AUTO_UPDATE",
            join_once=True,
            code_prefix="REF-",
            discount={"type": "AMOUNT", "amount_off": 1000, "effect": "APPLY_TO_ORDER"},
        ),
        Campaign(
            id="camp_demo_loyalty",
            name="loyalty-card",
            campaign_type="LOYALTY_PROGRAM",
            type="AUTO_UPDATE",
            join_once=True,  # Voucherify: always true for loyalty programs
            code_prefix="LOY-",
        ),
        Campaign(
            id="camp_demo_static",
            name="static-50",
            campaign_type="DISCOUNT_COUPONS",
            type="STATIC",
            code_prefix="STATIC50-",
            code_pattern="####",
            code_charset=string.digits,
            codes=numbered_codes("STATIC50-", 50),
            discount={"type": "AMOUNT", "amount_off": 500, "effect": "APPLY_TO_ORDER"},
        ),
        Campaign(
            id="camp_demo_gift",
            name="gift-card-50",
            campaign_type="GIFT_VOUCHERS",
            type="AUTO_UPDATE",
            code_prefix="GIFT-",
            gift_amount=5000,
        ),
    ]


def numbered_codes(prefix: str, count: int) -> list[str]:
    """A STATIC pool as a shop would import it: ``PREFIX0001`` ... ``PREFIXnnnn``."""
    width = max(4, len(str(count)))
    return [f"{prefix}{i:0{width}d}" for i in range(1, count + 1)]


def load_campaigns(path: str | Path) -> list[Campaign]:
    """Read ``[[campaign]]`` tables from a TOML file (keys: the fields of :class:`Campaign`, plus
    ``codes_count = N`` to generate a STATIC pool ``<code_prefix>0001`` ...)."""
    path = Path(path)
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise ConfigError(f"cannot read campaigns file {path}: {error.strerror or error}") from error
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"campaigns file {path} is not valid TOML: {error}") from error
    tables = document.get("campaign")
    if not isinstance(tables, list) or not tables:
        raise ConfigError(f"campaigns file {path} has no [[campaign]] tables")
    known = {f.name for f in fields(Campaign)}
    campaigns = []
    for number, table in enumerate(tables, start=1):
        where = f"{path}: campaign #{number}"
        options = dict(table)
        if "codes_count" in options:
            count = options.pop("codes_count")
            if "codes" in options:
                raise ConfigError(f"{where}: give either codes or codes_count, not both")
            if not isinstance(count, int) or count < 1:
                raise ConfigError(f"{where}: codes_count must be a positive integer")
            options["codes"] = numbered_codes(str(options.get("code_prefix", "")), count)
        unknown = sorted(set(options) - known)
        if unknown:
            raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}")
        for name in ("id", "name"):
            if name not in options:
                raise ConfigError(f"{where}: {name} is required")
        for name, value in options.items():
            expected = _TOML_TYPES[name]
            # bool is an int in Python: do not let `gift_amount = true` through.
            if not isinstance(value, expected) or (isinstance(value, bool) and expected is int):
                raise ConfigError(f"{where}: {name} = {value!r} has the wrong type")
        if not all(isinstance(code, str) for code in options.get("codes", [])):
            raise ConfigError(f"{where}: codes must be strings")
        campaigns.append(Campaign(**options))
    return campaigns


# The TOML value types of the Campaign fields (dates may be TOML date-times or ISO strings); a test keeps
# this table in step with the dataclass.
_TOML_TYPES: dict[str, type | tuple[type, ...]] = {
    "id": str,
    "name": str,
    "campaign_type": str,
    "type": str,
    "join_once": bool,
    "active": bool,
    "start_date": (str, dt.date),
    "expiration_date": (str, dt.date),
    "code_prefix": str,
    "code_pattern": str,
    "code_charset": str,
    "codes": list,
    "voucher_type": str,
    "discount": dict,
    "gift_amount": int,
    "loyalty_points": int,
    "metadata": dict,
}


def _check_choice(where: str, name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"{where}: {name} {value!r} is not one of {', '.join(choices)}")


def _iso_datetime(where: str, name: str, value: object) -> str:
    """Normalise a date (TOML datetime or ISO string) to Voucherify's ``2026-01-31T23:59:59.000Z`` form."""
    if isinstance(value, str):
        try:
            value = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError as error:
            raise ConfigError(f"{where}: {name} {value!r} is not an ISO date-time") from error
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        value = dt.datetime(value.year, value.month, value.day)
    if not isinstance(value, dt.datetime):
        raise ConfigError(f"{where}: {name} must be an ISO date-time")
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return iso_utc(value.timestamp())


def iso_utc(timestamp: float) -> str:
    """Unix time → ``2026-01-31T23:59:59.123Z``, the form of every Voucherify timestamp."""
    moment = dt.datetime.fromtimestamp(timestamp, tz=dt.UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")

"""The project the sandbox holds: campaigns and their codes, vouchers, customers and publications, and the rules
by which a publication is made (idempotent ``source_id``, join-once, STATIC pools, upserted customers), as
Voucherify's reference and spec describe them.

:class:`Project` knows nothing of HTTP, keys, limits or threads: the :class:`~.world.Sandbox` façade admits each
request and calls it under its lock.
"""

from __future__ import annotations

import collections
import random
import string
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

from ..errors import ConfigError
from . import bodies
from .campaigns import Campaign
from .model import Customer, Publication, Refusal, SandboxConfig, Voucher
from .requests import CUSTOMER_FIELDS, PublicationRequest

_ID_CHARS = string.ascii_letters + string.digits


class Project:
    """A Voucherify project's records in memory.  ``rng`` is the sandbox's one seeded generator (codes and ids);
    ``now`` the current time and ``wall`` the Unix time of a clock reading; ``started`` the clock at the start."""

    def __init__(
        self,
        config: SandboxConfig,
        rng: random.Random,
        *,
        now: Callable[[], float],
        wall: Callable[[float], float],
        started: float,
    ) -> None:
        self.config = config
        self._rng = rng
        self._now = now
        self._wall = wall
        self._started = started
        self._campaigns: dict[str, Campaign] = {}
        self._campaign_by_name: dict[str, str] = {}
        self._pools: dict[str, collections.deque[str]] = {}
        self._all_codes: set[str] = set()  # a code is unique in a project, whichever campaign it belongs to
        for campaign in config.campaigns:
            if campaign.id in self._campaigns or campaign.name in self._campaign_by_name:
                raise ConfigError(f"two sandbox campaigns share the id or name of {campaign.name!r}")
            if self._all_codes.intersection(campaign.codes):
                raise ConfigError(f"sandbox campaign {campaign.name!r} reuses codes of another campaign")
            self._campaigns[campaign.id] = campaign
            self._campaign_by_name[campaign.name] = campaign.id
            if campaign.type == "STATIC":
                self._pools[campaign.id] = collections.deque(campaign.codes)
            self._all_codes.update(campaign.codes)

        self._vouchers: dict[str, Voucher] = {}  # by code
        self._generated: collections.Counter[str] = collections.Counter()  # AUTO_UPDATE vouchers per campaign
        self._customers: dict[str, Customer] = {}
        self._customer_by_source: dict[str, str] = {}
        self._publications: list[Publication] = []
        self._publication_by_source: dict[str, Publication] = {}
        self._holdings: dict[tuple[str, str], str] = {}  # (campaign id, customer id) -> first code held


    # ------------------------------------------------------------------ publishing
    def publish(self, request: PublicationRequest, join_once_flag: bool) -> Publication:
        """Make (or, for a known ``source_id``, find) the publication ``request`` asks for; :class:`Refusal`
        when Voucherify would refuse it."""
        campaign = self.campaign(request.campaign_ref)
        refused = self.config.refuse_customers.get(str(request.customer.get("source_id")))
        if refused is not None:
            raise Refusal(
                400, refused, "Voucher cannot be published", "This customer cannot receive a code of this campaign"
            )
        customer_id = self._resolve_customer(request.customer)

        if request.source_id is not None:
            original = self._publication_by_source.get(request.source_id)
            if original is not None:
                # The reference: the same source_id "will always return the same code"; the spec also
                # documents 400 duplicate_source_id, here for a reuse with another customer or campaign
                # (or any reuse in strict mode).
                same_request = original.campaign_id == campaign.id and original.customer_id == customer_id
                if self.config.strict_source_id or not same_request:
                    raise Refusal(
                        400, "duplicate_source_id", "Duplicate source_id",
                        f"Publication with source_id: '{request.source_id}' already exists",
                        resource_type="publication",
                    )
                return original

        if not campaign.active:
            # The spec: "A voucher is suitable for publication when it's active and hasn't been published yet."
            raise _no_voucher(campaign)
        held = self._holdings.get((campaign.id, customer_id)) if customer_id is not None else None
        if held is not None and (campaign.join_once or join_once_flag):
            # join_once: "a particular person gets only one and always the same code" (spec, query flag).
            voucher = self._vouchers[held]
        else:
            voucher = self._take_voucher(campaign)
        customer = self._upsert_customer(request.customer, customer_id)

        publication = Publication(
            id=self._new_id("pub_", 32),
            source_id=request.source_id,
            campaign_id=campaign.id,
            campaign_name=campaign.name,
            customer_id=customer.id,
            customer_source_id=customer.source_id,
            code=voucher.code,
            voucher_id=voucher.id,
            created_at=self._wall(self._now()),
            metadata=request.metadata,
        )
        self._publications.append(publication)
        if request.source_id is not None:
            self._publication_by_source[request.source_id] = publication
        voucher.publish_count += 1
        if voucher.holder_id is None:
            voucher.holder_id = customer.id
        self._holdings.setdefault((campaign.id, customer.id), voucher.code)
        return publication

    def campaign(self, ref: str) -> Campaign:
        """A campaign by ``camp_`` id or by name (the reference: ``campaign.name`` takes either)."""
        campaign_id = ref if ref in self._campaigns else self._campaign_by_name.get(ref)
        if campaign_id is None:
            raise Refusal(
                404, "not_found", "Resource not found", f"Cannot find campaign with id {ref}",
                resource_id=ref, resource_type="campaign",
            )
        return self._campaigns[campaign_id]

    def _resolve_customer(self, customer: Mapping[str, Any]) -> str | None:
        """The existing customer's ``cust_`` id, or None for a new one. An unknown ``customer.id`` is a 404
        (reference: "Unknown customer.id → 404")."""
        if "id" in customer:
            if customer["id"] not in self._customers:
                raise Refusal(
                    404, "not_found", "Resource not found", f"Cannot find customer with id {customer['id']}",
                    resource_id=customer["id"], resource_type="customer",
                )
            return str(customer["id"])
        return self._customer_by_source.get(customer["source_id"])

    def _take_voucher(self, campaign: Campaign) -> Voucher:
        """AUTO_UPDATE makes a fresh code; STATIC hands out the next unpublished code of its pool."""
        if campaign.type == "STATIC":
            pool = self._pools[campaign.id]
            if not pool:
                raise _no_voucher(campaign)
            code, created_at = pool.popleft(), self._wall(self._started)
        else:
            generated = self._new_code(campaign)
            if generated is None:
                raise _no_voucher(campaign)
            code, created_at = generated, self._wall(self._now())
            self._generated[campaign.id] += 1
        voucher = Voucher(self._new_id("v_", 32), code, campaign.id, created_at)
        self._vouchers[code] = voucher
        return voucher

    def _new_code(self, campaign: Campaign) -> str | None:
        """A code no voucher has yet, or None when the pattern seems used up (a tiny pattern, e.g. ``"##"``)."""
        for _ in range(1000):
            code = campaign.code_prefix + "".join(
                self._rng.choice(campaign.code_charset) if char == "#" else char for char in campaign.code_pattern
            )
            if code not in self._all_codes:
                self._all_codes.add(code)
                return code
        return None

    def _upsert_customer(self, fields: Mapping[str, Any], customer_id: str | None) -> Customer:
        """A publication creates the customer, or updates the fields it sends (reference: "upserted")."""
        now = self._wall(self._now())
        profile = {name: fields[name] for name in CUSTOMER_FIELDS if name in fields}
        if customer_id is None:
            customer = Customer(self._new_id("cust_", 24), fields["source_id"], now, profile)
            self._customers[customer.id] = customer
            self._customer_by_source[customer.source_id] = customer.id
            return customer
        customer = self._customers[customer_id]
        if profile:
            customer.profile.update(profile)
            customer.updated_at = now
        return customer

    # ------------------------------------------------------------------ reading
    def find(self, query: Mapping[str, str]) -> list[Publication]:
        """The publications matching ``GET /v1/publications``'s filters, newest first."""
        if "source_id" in query:  # the common case (recovering a lost answer): one dictionary look-up
            found = self._publication_by_source.get(query["source_id"])
            candidates = [found] if found is not None else []
        else:
            candidates = self._publications
        return [p for p in reversed(candidates) if self._matches(p, query)]

    def _matches(self, publication: Publication, query: Mapping[str, str]) -> bool:
        if "campaign" in query and query["campaign"] not in (publication.campaign_id, publication.campaign_name):
            return False
        return "customer" not in query or query["customer"] in (
            publication.customer_id, publication.customer_source_id
        )

    def publication_body(self, publication: Publication) -> dict[str, Any]:
        voucher = self._vouchers[publication.code]
        customer = self._customers[publication.customer_id]
        return bodies.publication_body(publication, customer, voucher, self._campaigns[voucher.campaign_id])

    def list_item(self, publication: Publication) -> dict[str, Any]:
        customer = self._customers[publication.customer_id]
        return bodies.list_item(publication, customer, self._campaigns[publication.campaign_id])

    def campaign_body(self, campaign: Campaign) -> dict[str, Any]:
        vouchers_count = len(campaign.codes) if campaign.type == "STATIC" else self._generated[campaign.id]
        return bodies.campaign_body(campaign, vouchers_count, self._wall(self._started))

    def _new_id(self, prefix: str, length: int) -> str:
        return prefix + "".join(self._rng.choice(_ID_CHARS) for _ in range(length))

    # ------------------------------------------------------------------ test controls and counts (under the lock)
    @property
    def publications(self) -> list[Publication]:
        return list(self._publications)

    def counts(self) -> dict[str, int]:
        return {
            "publications": len(self._publications),
            "customers": len(self._customers),
            "vouchers": len(self._vouchers),
        }

    def publication_for_source_id(self, source_id: str) -> Publication | None:
        return self._publication_by_source.get(source_id)

    def alter_publication(
        self, source_id: str, *, code: str | None = None, customer_source_id: str | None = None
    ) -> None:
        """Change what the project holds under a publication ``source_id``, as a person editing Voucherify by hand
        (or another tool) might: another ``code``, or another customer.  A test control for ``distributor verify``,
        which must find such a difference (KeyError: no publication under ``source_id``)."""
        original = self._publication_by_source[source_id]
        changed = original
        if code is not None:
            stand_in = Voucher(self._new_id("v_", 24), code, original.campaign_id, original.created_at)
            self._vouchers.setdefault(code, stand_in)
            changed = replace(changed, code=code, voucher_id=self._vouchers[code].id)
        if customer_source_id is not None:
            known = self._customer_by_source.get(customer_source_id)
            customer = self._upsert_customer({"source_id": customer_source_id}, known)
            changed = replace(changed, customer_id=customer.id, customer_source_id=customer.source_id)
        self._publications[self._publications.index(original)] = changed
        self._publication_by_source[source_id] = changed

    def delete_publication(self, source_id: str) -> None:
        """Forget the publication under ``source_id`` (a test control for ``distributor verify``)."""
        self._publications.remove(self._publication_by_source.pop(source_id))

    def codes_held(self, campaign_id_or_name: str) -> dict[str, set[str]]:
        """Customer source_id → the codes of this campaign published to them (KeyError: no such campaign)."""
        try:
            campaign_id = self.campaign(campaign_id_or_name).id
        except Refusal:
            raise KeyError(campaign_id_or_name) from None
        held: dict[str, set[str]] = {}
        for publication in self._publications:
            if publication.campaign_id == campaign_id:
                held.setdefault(publication.customer_source_id, set()).add(publication.code)
        return held


def _no_voucher(campaign: Campaign) -> Refusal:
    # Wording of Voucherify's SDK documentation for this key.
    return Refusal(
        400, "no_voucher_suitable_for_publication", "Couldn't find any voucher suitable for publication.",
        "Use auto-update campaigns if you want Voucherify to generate vouchers automatically.",
        resource_id=campaign.id, resource_type="campaign",
    )

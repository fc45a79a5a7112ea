"""Names derived from a distribution's name: the idempotency key of each publication, and the slug that names the
default output.  Pure functions of their arguments, shared by the run, the journal and ``verify``."""

from __future__ import annotations

import hashlib
import re


def slugify(text: str) -> str:
    """``Spring Sale 2027`` → ``spring-sale-2027``: lower-case letters, digits and dashes (``distribution`` when
    nothing is left)."""
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return slug or "distribution"


def default_output_name(distribution_or_campaign: str) -> str:
    """The output's name when none is given: ``<slug>-codes.csv``, after the distribution (or the campaign)."""
    return f"{slugify(distribution_or_campaign)}-codes.csv"


def publication_source_id(distribution: str, campaign: str, identity: str) -> str:
    """The idempotency key of one customer's publication of one campaign in one distribution.

    Deterministic, so a retry or a rerun asks Voucherify for the same publication and gets the same code back;
    different for another campaign (even under the same distribution name: Voucherify would otherwise answer
    ``duplicate_source_id`` and the look-up would find the other campaign's code) and for another distribution.
    ``campaign`` is the campaign's ``camp_…`` id when the pre-flight resolved it, else the configured campaign;
    the journal pins the choice on its first run (meta ``key_campaign``) and each member's key on its first call.
    Identities can be 1023 characters of anything, so the key carries a hash, prefixed with a readable slug.
    """
    material = b"\x00".join((b"v2", distribution.encode(), campaign.encode(), identity.encode()))
    digest = hashlib.sha256(material).hexdigest()[:32]
    return f"{slugify(distribution)[:40]}-{digest}"


def publication_source_id_v1(distribution: str, identity: str) -> str:
    """The key of journals before schema 5 (distribution and customer only): kept for their members' calls."""
    digest = hashlib.sha256(distribution.encode() + b"\x00" + identity.encode()).hexdigest()[:32]
    return f"{slugify(distribution)[:40]}-{digest}"

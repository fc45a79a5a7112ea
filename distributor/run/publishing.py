"""Publishing: know the campaign (the pre-flight), then dispatch the members without a code in segment order, as
many in flight as the latency needs, and save each code — fresh, replayed or looked up — only if it is this
customer's code of this campaign."""

from __future__ import annotations

import logging
import time

import anyio

from ..config import JobConfig, publication_source_id
from ..errors import StopRun, StorageError
from ..journal import Journal, Member
from ..journal.batch import SavedCode
from ..push import expiry_epoch
from ..voucherify import Campaign, Publication
from .calls import Calls
from .campaign import check_same_campaign, distribution_name, has_expired, is_switched_off, unpublished_at_most
from .pace import Pace
from .stats import RunStats
from .stopping import Stopping

log = logging.getLogger("distributor")

_WORK_BATCH = 500


class Publisher:
    """The publishing part of one run, over its :class:`Calls`."""

    def __init__(self, config: JobConfig, journal: Journal, run_id: int, calls: Calls) -> None:
        self.config, self.journal, self.run_id, self.calls = config, journal, run_id, calls
        self.stats: RunStats = calls.stats
        self.pace: Pace = calls.pace
        self.stopping: Stopping = calls.stopping
        self.campaign_ref = config.campaign  # the campaign's id once known
        #: what a publication's voucher must name to be this campaign's (``camp_…`` id, name), when known
        self._campaign_id: str | None = None
        self._campaign_name: str | None = None
        #: the campaign part of new publication keys (pinned by the journal's first run)
        self._key_campaign = config.campaign
        #: the distribution's name, once the pre-flight made it known ("" before)
        self.distribution = ""
        self._join_once = False
        #: --limit stopped the dispatch
        self.limit_reached = False

    # ------------------------------------------------------------------ the campaign
    async def preflight(self) -> None:
        """Know the campaign before publishing.

        A new journal costs one ``GET /v1/campaigns/{id}``: bad keys or an unknown campaign stop the run after that
        single call, and it tells the campaign's id and whether it is join-once.  A resumed journal already knows
        both; its first publication, sent alone, would reveal bad keys just as cheaply.
        """
        config, journal = self.config, self.journal
        known_id = journal.meta("campaign_id") or None
        known_join_once = journal.meta("join_once")
        if known_id and known_join_once in ("0", "1"):
            self.campaign_ref, self._join_once = known_id, known_join_once == "1"
        else:
            campaign = await self.calls.make("campaign", None, lambda: self.calls.api.get_campaign(config.campaign))
            if self.stopping.is_set():
                return
            if isinstance(campaign, Campaign):
                check_same_campaign(journal.path, known_id, config.campaign, campaign)
                self.campaign_ref, self._join_once, known_id = campaign.id, campaign.join_once, campaign.id
                journal.set_meta(
                    join_once="1" if campaign.join_once else "0", campaign_type=campaign.type or "",
                    campaign_name=campaign.name,
                )
                self._warn_about(campaign)
        # By default the distribution is the campaign's id, so one customer gets one code per campaign even if
        # this journal is lost; the journal pins whatever name its first run used.
        self.distribution = distribution_name(
            config.distribution, journal.meta("distribution"), known_id, config.campaign
        )
        # New keys bind the campaign: its camp_… id when known, else the configured campaign (pre-flight
        # forbidden).  The journal's first run pins the choice, so that a later run that can resolve the id does
        # not give a new key to members not yet called; members already called keep their own key anyway.
        self._key_campaign = journal.meta("key_campaign") or known_id or config.campaign
        journal.set_meta(
            distribution=self.distribution, campaign=config.campaign, campaign_id=known_id or "",
            key_campaign=self._key_campaign,
        )
        self._expect_campaign(known_id, journal.meta("campaign_name") or None)
        log.info(
            "distribution %r of campaign %s%s", self.distribution, config.campaign,
            " (join-once)" if self._join_once else "",
        )

    def _expect_campaign(self, campaign_id: str | None, name: str | None) -> None:
        """What a publication's voucher must name to be this campaign's.  Without the pre-flight, the configured
        campaign is its id if it looks like one (``camp_…``), else its name."""
        configured = self.config.campaign
        looks_like_id = configured.startswith("camp_")
        self._campaign_id = campaign_id or (configured if looks_like_id else None)
        self._campaign_name = name or (None if looks_like_id else configured)

    def _warn_about(self, campaign: Campaign) -> None:
        if is_switched_off(campaign):
            log.warning("campaign %s is not active: customers may not be able to redeem the codes", campaign.name)
        if has_expired(campaign, time.time()):
            log.warning("campaign %s expired on %s", campaign.name, campaign.expiration_date)
        pool = unpublished_at_most(campaign)
        if pool is not None and pool < self.stats.to_publish:
            log.warning(
                "campaign %s holds %d codes in all but %d members still need one: it will run out",
                campaign.name, campaign.vouchers_count, self.stats.to_publish,
            )

    # ------------------------------------------------------------------ the members
    async def publish_all(self) -> None:
        """Dispatch the members without a code in segment order, as many in flight as the latency needs."""
        config = self.config
        slots = anyio.CapacityLimiter(1)
        room = config.limit  # --limit: members this run may still dispatch (None: all)
        async with anyio.create_task_group() as work:
            after = 0
            while not self.stopping.is_set():
                if room is not None and room <= 0:
                    self.limit_reached = True
                    break
                size = _WORK_BATCH if room is None else min(room, _WORK_BATCH)
                if config.delivers_to_leavers:
                    batch = self.journal.leaver_work(after_id=after, limit=size, retry_failed=config.retry_failed)
                else:
                    batch = self.journal.work(
                        self.run_id, after_seq=after, limit=size, retry_failed=config.retry_failed
                    )
                if not batch:
                    break
                if room is not None:
                    room -= len(batch)
                for member in batch:
                    slots.total_tokens = self.pace.target_in_flight()
                    await slots.acquire_on_behalf_of(member)
                    if self.stopping.is_set():
                        slots.release_on_behalf_of(member)
                        break
                    work.start_soon(self._serve, member, slots)
                after = batch[-1].id if config.delivers_to_leavers else batch[-1].seen_seq

    async def _serve(self, member: Member, slots: anyio.CapacityLimiter) -> None:
        """Get this member's code, retrying transient failures with the same ``source_id``."""
        self.stats.in_flight += 1
        # a member once called keeps the key of its first call: a new key could get it a second code
        source_id = member.source_id or publication_source_id(self.distribution, self._key_campaign, member.identity)
        try:
            publication = await self.calls.make(
                "publish",
                member,
                lambda: self.calls.api.publish(
                    campaign=self.campaign_ref,
                    customer_source_id=member.identity,
                    source_id=source_id,
                    join_once=self._join_once,
                    metadata={"distribution": self.distribution},
                ),
                source_id=source_id,
                look_up=lambda: self.calls.look_up(member, source_id),
            )
            if publication is not None:
                self._save_code(member, publication)
        except StorageError as error:
            # the journal cannot be written: stop; the member stays `sending`, re-sent with the same source_id
            self.stopping.request(StopRun(str(error), reason="storage_failure"))
        finally:
            self.stats.in_flight -= 1
            slots.release_on_behalf_of(member)

    def _save_code(self, member: Member, publication: Publication) -> None:
        """Save the code — fresh, replayed or looked up — only if it is this customer's code of this campaign."""
        mismatch = self._mismatch(member, publication)
        if mismatch is not None:
            key, message = mismatch
            # Our source_id came back holding another customer's or another campaign's publication: never hand
            # that code out.
            log.warning("member at row %s: %s", member.seen_row, message)
            self.journal.fail(member.id, status=None, key=key, message=message, request_id=None)
            self.stats.failed += 1
            return
        self._learn_campaign_name(publication)
        # committed with the answers around it, and counted as published then (.recording)
        self.calls.recorder.save_code(SavedCode(
            member.id, self.run_id, publication.code, publication.id,
            expires_at=expiry_epoch(publication.expiration_date),  # h7-clevertap: --expiry-property
        ))

    def _mismatch(self, member: Member, publication: Publication) -> tuple[str, str] | None:
        """``(error key, message)`` when ``publication`` is not ``member``'s publication of this campaign."""
        where = f"publication {publication.id or '(no id)'} under this member's source_id"
        if publication.customer_source_id != member.identity:
            holder = "no customer" if publication.customer_source_id is None else "another customer"
            return "customer_mismatch", f"{where} belongs to {holder}: its code was not saved"
        if publication.campaign_id is None and publication.campaign is None:
            return "campaign_mismatch", f"{where} names no campaign: its code was not saved"
        if publication.campaign_id is not None and self._campaign_id is not None:
            same = publication.campaign_id == self._campaign_id
        elif publication.campaign is not None and self._campaign_name is not None:
            same = publication.campaign == self._campaign_name
        else:
            same = True  # only what we do not know is named; the key itself binds the campaign
        if same:
            return None
        found = publication.campaign or publication.campaign_id
        expected = self._campaign_name or self._campaign_id
        return "campaign_mismatch", f"{where} holds a code of campaign {found!r}, not {expected!r}: it was not saved"

    def _learn_campaign_name(self, publication: Publication) -> None:
        """Without the pre-flight, a fresh answer tells the campaign's name, which look-ups' answers carry alone."""
        if self._campaign_name is None and publication.campaign and publication.campaign_id == self._campaign_id:
            self._campaign_name = publication.campaign
            self.journal.set_meta(campaign_name=publication.campaign)

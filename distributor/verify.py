"""``distributor verify``: prove that what the journal says was delivered is what Voucherify holds.

For each member checked, the publication is looked up by its key (``GET /v1/publications?source_id=…``, the key a
run publishes under) and its code, customer and campaign are compared with the journal.  The members checked are
those the journal says hold a code or were ever sent a publication (Voucherify may hold a code for a member whose
answer was lost); ``--all`` checks every one of them, ``--sample N`` a seeded random sample.

The calls go through the same :class:`~distributor.pacing.throttle.Throttle` and budget as a run, seeded with the calls
the journal logged in the current window, and the same retry policy (:func:`~distributor.pacing.retry.decide`).  The
journal is opened read-only and never written: a verification logs no call (so a run started meanwhile would not
count them; verify therefore refuses while a run is in progress).  Mismatches go to a CSV report.

With ``--clevertap`` each member found to match is also read back from its CleverTap profile
(``GET /1/profile.json``), which must hold the same code in the run's property: the check that the codes reached
the customers' profiles.  Profile reads are few at a time (CleverTap caps concurrent requests per account) and
retried when CleverTap answers 429 or 5xx.
"""

from __future__ import annotations

import csv
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import anyio
import anyio.abc

from . import outputs
from .clevertap import CleverTapAuthError, CleverTapClient, CleverTapRefused, CleverTapTransient
from .config import JobConfig, publication_source_id
from .errors import (
    EXIT_MEMBER_FAILURES,
    EXIT_OK,
    EXIT_STOPPED,
    JournalError,
    JournalLocked,
    StopRun,
)
from .journal import DONE, Journal, MemberRecord
from .pacing.retry import Action, backoff, decide
from .pacing.throttle import Throttle
from .status import no_journal, run_in_progress
from .target import Target, api_host, project_digest, remote_target
from .voucherify import (
    ApiError,
    Publication,
    RateLimitHeaders,
    TransportError,
    VoucherifyClient,
)

DEFAULT_SAMPLE = 100
#: Look-ups in flight at once when ``--concurrency`` is not given (the throttle paces them).
DEFAULT_CONCURRENCY = 8
_BACKOFF_BASE = 0.25
_BACKOFF_CAP = 30.0

#: Why a member does not match.
MISSING = "missing"
CODE_DIFFERS = "code_differs"
CUSTOMER_DIFFERS = "customer_differs"
CAMPAIGN_DIFFERS = "campaign_differs"
UNRECORDED = "unrecorded_publication"
NOT_IN_CLEVERTAP = "not_in_clevertap"
CLEVERTAP_DIFFERS = "clevertap_differs"
#: Profile reads in flight at once: CleverTap answers 429 to more than a few concurrent requests per account.
PROFILE_READS = 3
_PROFILE_ATTEMPTS = 6

#: Called for each checked member that holds a code, with its identity and the code, it returns a :class:`Mismatch`
#: when the CleverTap profile does not hold it (``--clevertap``: :func:`clevertap_profile_check`; a library user may
#: bring their own).
ProfileCheck = Callable[[str, str], Awaitable["Mismatch | None"]]


@dataclass(frozen=True)
class Mismatch:
    identity: str
    journal_code: str | None
    voucherify_code: str | None
    why: str
    detail: str


@dataclass(frozen=True)
class AuditCost:
    """What a full audit would cost, and what this check will (``plan``-style figures, shown before any call)."""

    distribution: str
    campaign: str
    journal: str
    holding_code: int
    sent_without_code: int
    full_audit_calls: int
    full_audit_seconds: float
    checked: int
    seconds: float
    budget: str
    sample: int | None
    seed: int | None


@dataclass
class Audit:
    cost: AuditCost
    report: Path
    matched: int = 0
    mismatches: list[Mismatch] = field(default_factory=list)
    #: members whose look-up got no usable answer (after the retries)
    unchecked: list[str] = field(default_factory=list)
    calls: int = 0

    @property
    def exit_code(self) -> int:
        if self.mismatches:
            return EXIT_MEMBER_FAILURES
        return EXIT_STOPPED if self.unchecked else EXIT_OK

    @property
    def message(self) -> str:
        checked = self.matched + len(self.mismatches)
        if self.mismatches:
            return (
                f"{len(self.mismatches)} of {checked} checked members do not match Voucherify: see {self.report}"
                + (f" ({len(self.unchecked)} could not be checked)" if self.unchecked else "")
            )
        if self.unchecked:
            return (
                f"{len(self.unchecked)} members could not be checked (no usable answer from Voucherify); "
                f"the {checked} checked match: run verify again"
            )
        return f"all {checked} checked members match Voucherify"


def publication_key(distribution: str, key_campaign: str, member: MemberRecord) -> str:
    """The key a member's publication was made under: the one the journal stored with the member's first call
    (older journals' members keep their pre-campaign key), else the one a run would use now."""
    stored = member.source_id
    if stored:
        return str(stored)
    return publication_source_id(distribution, key_campaign, member.identity)


def verify(
    config: JobConfig,
    *,
    sample: int | None = DEFAULT_SAMPLE,
    seed: int | None = None,
    report: Path | None = None,
    on_cost: Callable[[AuditCost], None] = lambda cost: None,
    profile_check: ProfileCheck | None = None,
) -> Audit:
    """Check ``config``'s journal against Voucherify: every published member (``sample=None``) or a random sample
    of ``sample`` (``seed`` picks it).  ``on_cost`` is told what the audit will cost before the first call.
    Raises :class:`ConfigError` / :class:`JournalError` (exit 2), :class:`JournalLocked` or :class:`StopRun`
    (exit 3: a run in progress, bad keys, unreachable …)."""
    target = remote_target(config, refusal=(
        "verify needs the Voucherify the runs published to, but the embedded sandbox (api_url 'sandbox') "
        "forgets everything when a run ends: serve one with `distributor sandbox` and give its --api-url"
    ))
    if not config.layout.journal.exists():
        raise JournalError(no_journal(config.layout.journal))
    report = report or config.layout.verify_report
    with Journal.open(config.layout.journal, readonly=True) as journal:
        # the codes exist only in the project the journal was made against: checking another would find none
        journal.check_project(host=api_host(config), project=project_digest(config))
        holder = run_in_progress(journal)
        if holder is not None:
            raise JournalLocked(
                f"a run of this distribution is in progress ({holder}): verify would spend the same budget; "
                "run it when the run has ended"
            )
        with journal.snapshot():
            members, cost = _choose(config, journal, sample, seed)
            campaigns = _campaign_names(journal)
            history = journal.calls_since(time.time() - 2 * config.budget.period)
            profile = ProfileKey(journal.meta("key") or "identity", journal.meta("property") or config.property_name)
    on_cost(cost)
    audit = Audit(cost, report)
    try:
        anyio.run(_check_all, config, target, members, campaigns, history, audit, profile_check, profile,
                  backend="asyncio")
    finally:
        _write_report(report, audit.mismatches)
    return audit


def _choose(
    config: JobConfig, journal: Journal, sample: int | None, seed: int | None
) -> tuple[list[tuple[str, MemberRecord]], AuditCost]:
    """The members to check, each with its publication key, and what the audit costs."""
    distribution = journal.meta("distribution") or ""
    population = journal.published_member_ids()
    if sample is None:
        chosen = population
    else:
        chosen = sorted(random.Random(seed).sample(population, min(sample, len(population))))
    rows = journal.members_by_id(chosen)
    holding = journal.state_counts()[DONE]
    per_second = config.budget.per_second
    cost = AuditCost(
        distribution=distribution or "-",
        campaign=journal.meta("campaign") or config.campaign,
        journal=str(journal.path),
        holding_code=holding,
        sent_without_code=len(population) - holding,
        full_audit_calls=len(population),
        full_audit_seconds=round(len(population) / per_second, 1),
        checked=len(rows),
        seconds=round(len(rows) / per_second, 1),
        budget=str(config.budget),
        sample=sample,
        seed=seed if sample is not None else None,
    )
    key_campaign = journal.meta("key_campaign") or journal.meta("campaign_id") or config.campaign
    return [(publication_key(distribution, key_campaign, row), row) for row in rows], cost


def _campaign_names(journal: Journal) -> frozenset[str]:
    """The journal's campaign, by the name the runs were given and by its id."""
    return frozenset(name for name in (journal.meta("campaign"), journal.meta("campaign_id")) if name)


async def _check_all(
    config: JobConfig,
    target: Target,
    members: Sequence[tuple[str, MemberRecord]],
    campaigns: frozenset[str],
    history: Sequence[float],
    audit: Audit,
    profile_check: ProfileCheck | None,
    profile: ProfileKey,
) -> None:
    if profile_check is None and config.clevertap is not None:
        from .push import connect  # proves the CleverTap account, passcode and region with one cheap call

        async with connect(config) as clevertap:
            check = clevertap_profile_check(clevertap, profile)
            await _check_all(config, target, members, campaigns, history, audit, check, profile)
        return
    throttle = Throttle(config.budget, history=history)

    def observe(rate: RateLimitHeaders, status: int, sent_at: float, latency: float) -> None:
        throttle.observe(rate, status, sent_at)

    workers = min(config.concurrency or DEFAULT_CONCURRENCY, max(1, len(members)))
    queue = iter(members)
    async with VoucherifyClient(
        target.url, target.credentials, timeout=config.timeout, max_connections=workers + 2, observer=observe
    ) as client:

        stops: list[StopRun] = []

        async def worker(group: anyio.abc.TaskGroup) -> None:
            try:
                for key, member in queue:
                    await _check_one(config, client, throttle, key, member, campaigns, audit, profile_check)
            except StopRun as stop:  # dooms every further call: the first one stops the others at once
                stops.append(stop)
                group.cancel_scope.cancel()

        async with anyio.create_task_group() as group:
            for _ in range(workers):
                group.start_soon(worker, group)
        if stops:
            raise stops[0]
    audit.mismatches.sort(key=lambda mismatch: mismatch.identity)


@dataclass(frozen=True)
class ProfileKey:
    """How the runs wrote the codes into CleverTap: keyed on ``identity`` or ``objectId``, into ``property``."""

    kind: str
    property: str


def clevertap_profile_check(clevertap: CleverTapClient, profile: ProfileKey) -> ProfileCheck:
    """A :data:`ProfileCheck` reading each member's profile with ``clevertap``: at most :data:`PROFILE_READS` at a
    time, 429s and 5xx retried with backoff; a profile CleverTap cannot be read for is reported, never guessed."""
    reads = anyio.Semaphore(PROFILE_READS)

    async def check(identity: str, code: str) -> Mismatch | None:
        for attempt in range(1, _PROFILE_ATTEMPTS + 1):
            try:
                async with reads:
                    held = await clevertap.profile(identity, key=profile.kind)
                break
            except CleverTapAuthError as error:  # the passcode was revoked meanwhile: every further read fails too
                raise StopRun(f"CleverTap refused the profile read: {error}", reason="clevertap_unauthorized") from None
            except (CleverTapTransient, CleverTapRefused) as error:
                if attempt == _PROFILE_ATTEMPTS or isinstance(error, CleverTapRefused):
                    return Mismatch(identity, code, code, NOT_IN_CLEVERTAP, f"CleverTap did not answer: {error}")
                await anyio.sleep(backoff(attempt, base=_BACKOFF_BASE, cap=_BACKOFF_CAP))
        value = None if held is None else held.get(profile.property)
        if value is None:
            where = "no such profile" if held is None else f"the profile has no property {profile.property!r}"
            return Mismatch(identity, code, code, NOT_IN_CLEVERTAP, f"CleverTap: {where}")
        if str(value) != code:
            return Mismatch(identity, code, code, CLEVERTAP_DIFFERS,
                            f"the CleverTap profile's {profile.property} is {value!r}")
        return None

    return check


_NO_ANSWER = object()


async def _check_one(
    config: JobConfig,
    client: VoucherifyClient,
    throttle: Throttle,
    key: str,
    member: MemberRecord,
    campaigns: frozenset[str],
    audit: Audit,
    profile_check: ProfileCheck | None,
) -> None:
    found = await _look_up(config, client, throttle, key, audit)
    if found is _NO_ANSWER:
        audit.unchecked.append(member.identity)
        return
    mismatch = compare(member, found if isinstance(found, Publication) else None, campaigns)
    if mismatch is None and profile_check is not None and member.state == DONE:
        mismatch = await profile_check(member.identity, str(member.code))
    if mismatch is None:
        audit.matched += 1
    else:
        audit.mismatches.append(mismatch)


async def _look_up(
    config: JobConfig, client: VoucherifyClient, throttle: Throttle, key: str, audit: Audit
) -> Publication | object | None:
    """The publication under ``key`` (``None``: Voucherify has none), or ``_NO_ANSWER`` after ``max_attempts``.
    Raises :class:`StopRun` for a condition that dooms every further call (bad keys, quota spent …)."""
    for attempt in range(1, config.max_attempts + 1):
        await throttle.acquire()
        audit.calls += 1
        try:
            return await client.find_publication(key)
        except (ApiError, TransportError) as error:
            decision = decide(error, campaign=config.campaign)
            if decision.action is Action.STOP:
                raise StopRun(decision.message, reason=decision.reason, resume_at=decision.not_before) from None
            if decision.action is not Action.RETRY:
                return _NO_ANSWER
            if decision.reason != "rate_limited":  # a 429 already paused the throttle until the server's hint
                await anyio.sleep(backoff(attempt, base=_BACKOFF_BASE, cap=_BACKOFF_CAP))
    return _NO_ANSWER


def compare(member: MemberRecord, found: Publication | None, campaigns: frozenset[str]) -> Mismatch | None:
    """How the journal's ``member`` and the publication Voucherify holds under its key differ, if they do
    (``campaigns``: the journal's campaign, by name and id)."""
    identity, code = member.identity, member.code if member.state == DONE else None
    if code is None:
        if found is None:
            return None  # no code in the journal, none in Voucherify: consistent
        return Mismatch(
            identity, None, found.code, UNRECORDED,
            f"Voucherify holds a code the journal does not (journal: {member.state}): the customer may not know "
            "it; a rerun (--retry-failed for a failed member) records it",
        )
    if found is None:
        return Mismatch(identity, code, None, MISSING, "Voucherify holds no publication under this member's key")
    if found.code != code:
        return Mismatch(identity, code, found.code, CODE_DIFFERS, "Voucherify holds another code under this key")
    if found.customer_source_id not in (None, identity):
        return Mismatch(
            identity, code, found.code, CUSTOMER_DIFFERS,
            f"the publication belongs to customer {found.customer_source_id!r}",
        )
    campaign = found.campaign_id or found.campaign
    if campaign is not None and campaigns and campaign not in campaigns:
        return Mismatch(identity, code, found.code, CAMPAIGN_DIFFERS, f"the publication is of campaign {campaign!r}")
    return None


def _write_report(path: Path, mismatches: Sequence[Mismatch]) -> None:
    with outputs.atomic_write(path, newline="") as handle:
        writer = csv.writer(handle, lineterminator="\r\n")
        writer.writerow(["identity", "journal_code", "voucherify_code", "why", "detail"])
        for mismatch in mismatches:
            writer.writerow([
                mismatch.identity, mismatch.journal_code or "", mismatch.voucherify_code or "", mismatch.why,
                mismatch.detail,
            ])

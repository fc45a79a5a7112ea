"""``distributor plan``: what a run would do and what it would cost, found out before any quota is spent.

:func:`make_plan` reads the segment and the journal exactly as a run would (the same rules for invalid and
duplicate rows, the same journal checks), asks Voucherify one question — ``GET /v1/campaigns/{id}``, which also
proves the keys and the region — and returns a :class:`Plan`: who would be served, how many calls that takes, how
long at the budget, and what would stop the run.  It writes nothing: the journal is opened read-only (it may not
exist yet) and its lock is only looked at.

What "would certainly fail" means (a *problem*, exit 3, like the run's own exit code for it): the keys are refused
(401) or the plan forbids the call (402), the campaign does not exist, is switched off or has expired, the
billing-cycle quota is already spent, a STATIC campaign's pool is smaller than the members still to serve, or a
run of this distribution is in progress (a second run refuses to start), or Voucherify could not be reached at all
(no answer twice: nothing was proved).  Anything a run copes with or a person should weigh — a quota the run would
exceed, Voucherify answering 5xx right now, a campaign that starts later — is a *warning*: the plan still exits 0.
"""

from .making import ASSUMED_RETRY_SHARE, make_plan
from .plan import NOTE, PROBLEM, WARNING, Finding, Plan

__all__ = ["ASSUMED_RETRY_SHARE", "NOTE", "PROBLEM", "WARNING", "Finding", "Plan", "make_plan"]

"""Pacing: when a call may be sent (``throttle``), how many may be in flight (``in_flight``) and what to do about
a failed one (``retry``).  Pure policy: no HTTP, time from an injected clock, Voucherify's answers read as data
(``voucherify.models``)."""

from .in_flight import InFlightTarget
from .retry import (
    DEFAULT_MAX_PAUSE,
    TRANSIENT_STATUSES,
    Action,
    Decision,
    backoff,
    backoff_testing,
    decide,
    is_testing,
    set_testing,
)
from .throttle import Throttle, default_margin

__all__ = [
    "DEFAULT_MAX_PAUSE",
    "TRANSIENT_STATUSES",
    "Action",
    "Decision",
    "InFlightTarget",
    "Throttle",
    "backoff",
    "backoff_testing",
    "decide",
    "default_margin",
    "is_testing",
    "set_testing",
]

"""Pushing the journal's codes to CleverTap profiles (Upload User Profiles API), for ``run --clevertap`` and
``distributor push``.

The journal says which codes CleverTap has confirmed (``pushes``); the :class:`Pusher` sends the others in
batches of at most ``--clevertap-batch`` records, at most ``--clevertap-concurrency`` requests in flight, and
records each member's outcome as soon as CleverTap answers:

* a record CleverTap processed → ``pushed`` (never sent again, unless ``push --all``);
* a transient failure (5xx, 429, no answer, a lost answer, a per-record server error) → sent again after a
  capped, jittered backoff; a 429 also holds back every other request for that time (no storm);
* a final refusal (e.g. 523: identity missing) → ``failed`` with CleverTap's code and message, listed in
  ``<name>.push-errors.csv``; each later run or ``distributor push`` tries it once more.

Uploads are upserts, so sending a record twice (after a kill -9, or a lost answer) is harmless.  Records carry
only the identifier (``identity`` or ``objectId``, as the CSV) and the code property: never Email, Phone or Name,
which would merge profiles.
"""

from .connection import connect
from .outcome import PushOutcome, conclude, write_push_errors
from .pusher import DEFAULT_BATCH, DEFAULT_CONCURRENCY, FLUSH_INTERVAL, MAX_CONCURRENCY, Pusher, PushStats
from .records import Item, expiry_epoch, profile_record
from .session import RunPush, new_pusher, push_journal, run_push
from .settings import PushSettings

__all__ = [
    "DEFAULT_BATCH",
    "DEFAULT_CONCURRENCY",
    "FLUSH_INTERVAL",
    "MAX_CONCURRENCY",
    "Item",
    "PushOutcome",
    "PushSettings",
    "PushStats",
    "Pusher",
    "RunPush",
    "conclude",
    "connect",
    "expiry_epoch",
    "new_pusher",
    "profile_record",
    "push_journal",
    "run_push",
    "write_push_errors",
]

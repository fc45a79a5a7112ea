"""CleverTap: the server API client (``client``), its credentials and regions.  What the run does with it lives
above: pushing the codes (:mod:`distributor.push`) and reading the audience of a profiles query
(:mod:`distributor.audience`)."""

from ..credentials import (
    ENV_ACCOUNT_ID,
    ENV_PASSCODE,
    REGIONS,
    SANDBOX,
    CleverTapCredentials,
    describe_target,
    resolve_url,
)
from .client import (
    TRANSIENT_RECORD_CODES,
    CleverTapAuthError,
    CleverTapClient,
    CleverTapError,
    CleverTapRefused,
    CleverTapTransient,
    RecordError,
    UploadOutcome,
)

__all__ = [
    "ENV_ACCOUNT_ID",
    "ENV_PASSCODE",
    "REGIONS",
    "SANDBOX",
    "TRANSIENT_RECORD_CODES",
    "CleverTapAuthError",
    "CleverTapClient",
    "CleverTapCredentials",
    "CleverTapError",
    "CleverTapRefused",
    "CleverTapTransient",
    "RecordError",
    "UploadOutcome",
    "describe_target",
    "resolve_url",
]

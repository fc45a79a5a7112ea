"""CleverTap: the server API client (``client``) and the audience read from its profiles query (``audience``,
imported as ``distributor.clevertap.audience``: it pages through the run's own connection, so it is not loaded
with the client)."""

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

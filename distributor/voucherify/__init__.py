"""Voucherify: the data it answers with (``models``, at the bottom) and the HTTP client that calls it (``client``)."""

from .client import API_VERSION, MAX_BODY_BYTES, REDACTED, RateObserver, VoucherifyClient
from .models import ApiError, Campaign, Publication, RateLimitHeaders, TransportError

__all__ = [
    "API_VERSION",
    "MAX_BODY_BYTES",
    "REDACTED",
    "ApiError",
    "Campaign",
    "Publication",
    "RateLimitHeaders",
    "RateObserver",
    "TransportError",
    "VoucherifyClient",
]

"""Where the two APIs are and with which keys: Voucherify's app keys, CleverTap's account and region.

Keys come only from the environment (``VOUCHERIFY_APP_ID`` / ``VOUCHERIFY_APP_TOKEN``, ``CLEVERTAP_ACCOUNT_ID`` /
``CLEVERTAP_PASSCODE``), always as a pair; the secret half is never shown (``repr``, messages, logs).  This module
sits at the bottom with the errors: the configuration checks ``--clevertap`` with it, and each API client uses it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Self
from urllib.parse import urlsplit

from .errors import ConfigError

ENV_APP_ID = "VOUCHERIFY_APP_ID"
ENV_APP_TOKEN = "VOUCHERIFY_APP_TOKEN"
ENV_ACCOUNT_ID = "CLEVERTAP_ACCOUNT_ID"
ENV_PASSCODE = "CLEVERTAP_PASSCODE"
#: Hosts a plain-http URL may name: a stand-in on this machine, where no secret travels over a network.
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
#: ``--clevertap sandbox``: the embedded CleverTap stand-in.
SANDBOX = "sandbox"
#: CleverTap's regions; Europe is ``api.clevertap.com``.
REGIONS = {
    "eu1": "https://api.clevertap.com",
    "in1": "https://in1.api.clevertap.com",
    "sg1": "https://sg1.api.clevertap.com",
    "us1": "https://us1.api.clevertap.com",
    "aps3": "https://aps3.api.clevertap.com",
    "mec1": "https://mec1.api.clevertap.com",
}


def _pair_from_env(env: Mapping[str, str], public: str, secret: str) -> tuple[str, str] | None:
    """Both variables, or neither (``None``); one without the other is a :class:`ConfigError` naming it."""
    first, second = env.get(public, "").strip(), env.get(secret, "").strip()
    if not first and not second:
        return None
    if not first or not second:
        missing = public if not first else secret
        raise ConfigError(f"{missing} is not set: both {public} and {secret} are needed")
    return first, second


@dataclass(frozen=True)
class Credentials:
    """Voucherify server-side keys.  The token is never shown: not in ``repr``, logs or files."""

    app_id: str
    app_token: str = field(repr=False)

    def __repr__(self) -> str:
        return f"Credentials(app_id={self.app_id!r}, app_token='***')"

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Self | None:
        pair = _pair_from_env(env, ENV_APP_ID, ENV_APP_TOKEN)
        return None if pair is None else cls(*pair)


@dataclass(frozen=True)
class CleverTapCredentials:
    """CleverTap's account id and passcode.  The passcode is never shown."""

    account_id: str
    passcode: str = field(repr=False)

    def __repr__(self) -> str:
        return f"CleverTapCredentials(account_id={self.account_id!r}, passcode='***')"

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Self | None:
        pair = _pair_from_env(env, ENV_ACCOUNT_ID, ENV_PASSCODE)
        return None if pair is None else cls(*pair)


def resolve_url(value: str) -> str:
    """The base URL for ``--clevertap`` (``sandbox`` stays ``sandbox``).  Raises :class:`ConfigError`."""
    text = value.strip()
    if text.lower() == SANDBOX:
        return SANDBOX
    if text.lower() in REGIONS:
        return REGIONS[text.lower()]
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"clevertap {value!r} is neither a region ({', '.join(REGIONS)}), a URL, nor 'sandbox'")
    if parts.scheme == "http" and parts.hostname not in LOOPBACK_HOSTS:
        raise ConfigError(f"clevertap {value!r} is plain http: the passcode would travel unencrypted; use https")
    return text.rstrip("/")


def describe_target(value: str) -> str:
    """How a message names the CleverTap region in use: ``region eu1 (https://api.clevertap.com)``."""
    url = resolve_url(value)
    region = next((name for name, known in REGIONS.items() if known == url), None)
    if url == SANDBOX:
        return "the embedded CleverTap sandbox"
    return f"region {region} ({url})" if region else url

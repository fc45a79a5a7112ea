"""Which Voucherify a command talks to: the real API at ``api_url``, or the embedded stand-in (``api_url
"sandbox"``), served in-process for the length of one command.

``run`` and ``plan`` accept either; ``verify`` refuses the embedded stand-in, which forgets everything when the run
that used it ends.  This is the one place that decides, so the three cannot drift apart.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from .config import SANDBOX, JobConfig
from .credentials import Credentials
from .errors import ConfigError

if TYPE_CHECKING:
    from .sandbox import Sandbox


@dataclass(frozen=True)
class Target:
    """Where to send Voucherify calls: a base ``url``, the ``credentials`` it accepts, and (embedded stand-in
    only) its live state, which tests and the demo read after a run."""

    url: str
    credentials: Credentials
    sandbox: Sandbox | None = None


@contextmanager
def voucherify_target(config: JobConfig) -> Iterator[Target]:
    """The Voucherify ``config`` names, for the length of the block (the embedded stand-in is served meanwhile)."""
    if config.uses_sandbox:
        from .sandbox import embedded_sandbox

        with embedded_sandbox(config) as (url, credentials, sandbox):
            yield Target(url, credentials, sandbox)
        return
    yield remote_target(config)


def api_host(config: JobConfig) -> str:
    """The Voucherify host a journal is bound to: ``scheme://host[:port]``, or ``sandbox`` (the embedded one)."""
    if config.uses_sandbox:
        return SANDBOX
    parts = urlsplit(config.api_url)
    return f"{parts.scheme}://{parts.netloc}".lower()


def project_digest(config: JobConfig) -> str:
    """A digest of the app id ``config`` runs with (the embedded sandbox's own for ``sandbox``): it names the
    Voucherify project in the journal without writing the app id, and never involves the token."""
    if config.uses_sandbox:
        from .sandbox import DEMO_APP_ID

        app_id = DEMO_APP_ID
    else:
        app_id = config.credentials.app_id if config.credentials is not None else ""
    return "sha256:" + hashlib.sha256(app_id.encode()).hexdigest()[:16]


def remote_target(config: JobConfig, *, refusal: str | None = None) -> Target:
    """The real (or separately served) Voucherify ``config`` names.  With ``refusal``, the embedded stand-in is
    refused with that message (:class:`ConfigError`)."""
    if config.uses_sandbox:
        raise ConfigError(refusal or "this command needs a Voucherify served apart from it, not api_url 'sandbox'")
    assert config.credentials is not None  # JobConfig.load insists on keys for a real Voucherify
    return Target(config.api_url, config.credentials)

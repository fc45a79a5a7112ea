"""A local stand-in for Voucherify: the publications and campaigns endpoints, with its rate limits, quota,
latency, faults and idempotency rules, for the demo, the tests and the benchmarks (no real Voucherify here).

Example::

    from distributor.sandbox import DEMO_APP_ID, DEMO_APP_TOKEN, SandboxConfig, SandboxServer
    from distributor.units import Rate

    with SandboxServer(SandboxConfig(rate_limit=Rate(100, 60.0), seed=1)) as server:
        ...  # point the client at server.url with DEMO_APP_ID / DEMO_APP_TOKEN
        assert server.sandbox.max_in_window() <= 100

Production code imports the stand-in from here only (this package's names), never from its modules.
"""

from .campaigns import Campaign, default_campaigns, load_campaigns
from .clevertap import CleverTapConfig, CleverTapWorld
from .embedded import OPTIONS, check_tables, clevertap_config, embedded_clevertap, embedded_sandbox, sandbox_config
from .model import DEMO_APP_ID, DEMO_APP_TOKEN, Arrival, Publication, SandboxConfig
from .server import SandboxServer, serve
from .world import Sandbox

__all__ = [
    "DEMO_APP_ID",
    "DEMO_APP_TOKEN",
    "OPTIONS",
    "Arrival",
    "Campaign",
    "CleverTapConfig",
    "CleverTapWorld",
    "Publication",
    "Sandbox",
    "SandboxConfig",
    "SandboxServer",
    "check_tables",
    "clevertap_config",
    "default_campaigns",
    "embedded_clevertap",
    "embedded_sandbox",
    "load_campaigns",
    "sandbox_config",
    "serve",
]

"""distributor: hand out one Voucherify code to every member of a CleverTap segment, exactly once.

The library core; ``distributor.cli`` is a thin command-line skin over it::

    from distributor import JobConfig, run_distribution
    result = run_distribution(JobConfig.load(Path("jobs/demo.toml")))
"""

from ._version import __version__
from .config import JobConfig
from .credentials import Credentials
from .errors import (
    ConfigError,
    DistributorError,
    InputError,
    JournalError,
    JournalLocked,
    StopRun,
)
from .run import Distribution, RunResult, RunStats, run_distribution
from .units import Rate

__all__ = [
    "ConfigError",
    "Credentials",
    "Distribution",
    "DistributorError",
    "InputError",
    "JobConfig",
    "JournalError",
    "JournalLocked",
    "Rate",
    "RunResult",
    "RunStats",
    "StopRun",
    "__version__",
    "run_distribution",
]

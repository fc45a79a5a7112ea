"""distributor: hand out one Voucherify code to every member of a CleverTap segment, exactly once.

The library core; ``distributor.cli`` is a thin command-line skin over it::

    from distributor import JobConfig, run_distribution
    result = run_distribution(JobConfig.load(Path("jobs/demo.toml")))
"""

__version__ = "0.1.0"

from .config import Credentials, JobConfig  # noqa: E402
from .engine import Distribution, RunResult, RunStats, run_distribution  # noqa: E402
from .errors import (  # noqa: E402
    ConfigError,
    DistributorError,
    InputError,
    JournalError,
    JournalLocked,
    StopRun,
)
from .units import Rate  # noqa: E402

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

"""The orchestration of one run: :class:`Distribution` takes a :class:`~distributor.config.JobConfig` from the
segment to the files beside the output.

* ``distribution`` — the lifecycle: journal and segment, load, the API, the end and the files;
* ``campaign`` — the campaign rules a run applies and ``plan`` predicts;
* ``publishing`` — the pre-flight, the dispatch of members, the codes saved;
* ``calls`` — one logical call with its retry policy, and a typed outcome;
* ``pace`` — throttle and in-flight target, fed by every answer;
* ``stopping`` — stop requests, signals, the grace period;
* ``stats``, ``ending``, ``summary`` — the live counters, the verdict and next step, the typed summary.
"""

from .distribution import Distribution, RunResult, run_distribution
from .stats import Reporter, RunStats

__all__ = ["Distribution", "Reporter", "RunResult", "RunStats", "run_distribution"]

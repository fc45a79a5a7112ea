"""A seeded, randomized fault campaign: real ``distributor run`` processes against a loopback sandbox, killed with
SIGKILL at random moments, stalled, cut off and served faulty answers, then resumed to completion — and the one
invariant that matters checked at the end: **every member holds exactly the code Voucherify committed for them,
nothing more**.

    report = FaultCampaign(CampaignConfig(seed=7, kills=10, members=300, workdir=Path("/tmp/campaign"))).run()
    assert not report.violations, report.describe()

With several ``campaigns`` the same segment is distributed once per Voucherify campaign under one shared
``--distribution`` name (each with its own CSV and journal), the rounds picking one at random: a code of one
campaign must never be saved as a member's code of another (issue 9, *identity of a code*).

Used by ``tests/test_fault_campaign.py`` (a short campaign in CI) and ``benchmarks/fault_campaign.py`` (hundreds of
kill points). Everything random comes from one ``random.Random(seed)``; the timing of real processes is not
deterministic, so a seed replays the same plan of faults, not the same interleaving.

The sandbox runs in this process (a :class:`SandboxServer` thread) so its state — the publications it committed
— can be read directly; an outage stops that server and starts a new one on the same port over the same
:class:`Sandbox` (its publications survive, as Voucherify's would). Each round starts ``distributor run``, waits
for a random observable moment (publication requests reaching the server, codes saved in the journal), applies
one fault, waits for a second moment and kills the run:

* ``kill`` — nothing more: SIGKILL at the second moment;
* ``stall_run`` — SIGSTOP the run for up to ``max_fault`` seconds, then SIGCONT (its timeouts expire at once);
* ``stall_server`` — every request the server admits meanwhile answers after 3 × ``--timeout``: the client
  gives up, the server commits anyway (answers lost after commit);
* ``outage`` — the server stops: connections are refused, then it comes back on the same port with its state;
* ``drops`` — half of the publications' answers are lost after commit until the kill;
* ``errors`` — 40 % of publications answer 5xx until the kill;
* ``sigterm`` — SIGTERM instead of SIGKILL: the run must stop cleanly, saving what is in flight.

Base faults stay on throughout (3 % of 5xx, 3 % of answers lost after commit, a latency tail). Then the same
command is run again, as an operator would, until it finishes: it must exit 0 (no member may be left ``failed``:
this campaign has no definite refusal, only transient faults). A run that exits 1 (members failed) or 2, prints a
traceback, hangs, or outlives SIGTERM is a violation too.
"""

from __future__ import annotations

import csv
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..errors import EXIT_OK, EXIT_STOPPED, JournalError
from ..journal import Journal
from ..units import Rate
from .fault_checks import CampaignReport, distribution_violations
from .model import DEMO_APP_ID, DEMO_APP_TOKEN, SandboxConfig
from .server import SandboxServer
from .world import Sandbox

CAMPAIGN = "reactivation-20"
#: The second campaign of a two-campaign run: AUTO_UPDATE, not join-once, like the first.
OTHER_CAMPAIGN = "gift-card-50"
DISTRIBUTION = "fault-campaign"
FAULTS = ("kill", "stall_run", "stall_server", "outage", "drops", "errors", "sigterm")
_TIMED_FAULTS = ("stall_run", "stall_server", "outage")
#: The longest a run may make no observable progress before the campaign calls it hung.
PROGRESS_TIMEOUT = 60.0
#: How many times the final resume is run again while it stops resumably (exit 3) with only the base faults on.
FINAL_RESUMES = 3
#: Seconds one final resume may take at the least (a large segment gets 4 × its members' time at the budget).
FINAL_TIMEOUT = 120.0
_POLL = 0.02
_BASE_ERROR_RATE = 0.03
_BASE_LOST_RATE = 0.03


@dataclass(frozen=True)
class CampaignConfig:
    """The size and shape of a campaign. ``rate`` is both the sandbox's limit and the job's budget."""

    seed: int
    workdir: Path
    kills: int = 10
    members: int = 300
    rate: str = "300/s"
    timeout: float = 1.0
    max_fault: float = 2.0
    #: ``--max-attempts`` of every run (``None``: the job's default); few attempts make a short outage exhaust them
    max_attempts: int | None = None
    #: every reused ``source_id`` answers ``400 duplicate_source_id`` (the look-up path); ``None``: the seed picks
    strict_source_id: bool | None = None
    #: the sandbox campaigns the segment is distributed to, all under the one ``--distribution`` name
    campaigns: tuple[str, ...] = (CAMPAIGN,)


@dataclass(frozen=True)
class Target:
    """One distribution of the campaign: the segment to one Voucherify campaign, with its own CSV and journal."""

    campaign: str
    output: Path

    @property
    def journal(self) -> Path:
        return self.output.with_name(f"{self.output.stem}.journal.sqlite")


class FaultCampaign:
    """Plays one seeded campaign; :meth:`run` returns its report (``violations`` empty when all is well)."""

    def __init__(self, config: CampaignConfig) -> None:
        self.config = config
        self._rng = random.Random(config.seed)
        strict = self._rng.random() < 0.5 if config.strict_source_id is None else config.strict_source_id
        self.members = [f"m-{config.seed}-{index:06d}" for index in range(config.members)]
        self.report = CampaignReport(config.seed, config.members, config.campaigns, strict)
        self.sandbox = Sandbox(SandboxConfig(
            rate_limit=Rate.parse(config.rate), latency_median=0.01, latency_p99=0.25,
            error_rate=_BASE_ERROR_RATE, lost_answer_rate=_BASE_LOST_RATE,
            strict_source_id=strict, seed=config.seed,
        ))
        self._server: SandboxServer | None = None
        self._port = 0
        self._runs = 0
        folder = config.workdir
        folder.mkdir(parents=True, exist_ok=True)
        self.segment = folder / "segment.csv"
        self.targets = [Target(name, folder / "out" / f"{name}.csv") for name in config.campaigns]
        self.logs = folder / "logs"
        self.logs.mkdir(exist_ok=True)

    # ------------------------------------------------------------------ the campaign
    def run(self) -> CampaignReport:
        """Play the rounds and the final resume, then check the invariant (into ``report.violations``)."""
        started = time.monotonic()
        self._write_segment()
        self._start_server()
        try:
            for number, fault in enumerate(self._plan_faults(), start=1):
                self._round(number, fault)
            for target in self.targets:
                self._final_resume(target)
        finally:
            self._stop_server()
        self._count_requests()
        self.report.violations += self.check()
        self.report.wall_seconds = time.monotonic() - started
        return self.report

    def _plan_faults(self) -> list[str]:
        """One fault per round, every kind of fault as evenly as the rounds allow, in a seeded random order."""
        rounds = self.config.kills
        plan = (list(FAULTS) * (rounds // len(FAULTS) + 1))[:rounds]
        self._rng.shuffle(plan)
        return plan

    def _round(self, number: int, fault: str) -> None:
        self.report.faults[fault] += 1
        target = self._rng.choice(self.targets)
        process = self._start_run(target)
        first = self._moment(number, target)
        if not self._wait(first, process):
            self._record_exit(process, f"{number}: {target.campaign}: {fault}: the run ended before {first.label}")
            return
        duration = round(self._rng.uniform(0.2, self.config.max_fault), 2)
        self._apply(fault, process, duration)
        second = self._moment(number, target)
        finished = not self._wait(second, process)
        self._restore_base_faults()
        timed = f" for {duration} s" if fault in _TIMED_FAULTS else ""
        plan = f"{number}: {target.campaign}: {fault} at {first.label}{timed}, then stop at {second.label}"
        if finished:
            self._record_exit(process, f"{plan}: the run ended first")
        elif fault == "sigterm":
            self._terminate(process, plan)
        else:
            process.send_signal(signal.SIGKILL)
            process.wait(timeout=30)
            self.report.kill_points += 1
            self._record_exit(process, plan)

    def _apply(self, fault: str, process: subprocess.Popen[bytes], duration: float) -> None:
        settings = self.sandbox.config
        if fault == "stall_run":
            process.send_signal(signal.SIGSTOP)
            time.sleep(duration)  # the stall itself: the run is frozen this long
            process.send_signal(signal.SIGCONT)
        elif fault == "stall_server":
            settings.latency_median, settings.latency_p99 = 3 * self.config.timeout, None
            time.sleep(duration)  # requests admitted meanwhile answer after the client gave up
            settings.latency_median, settings.latency_p99 = 0.01, 0.25
        elif fault == "outage":
            self._stop_server()
            time.sleep(duration)  # connections refused this long
            self._start_server()
        elif fault == "drops":
            settings.lost_answer_rate = 0.5
        elif fault == "errors":
            settings.error_rate = 0.4

    def _restore_base_faults(self) -> None:
        self.sandbox.config.error_rate = _BASE_ERROR_RATE
        self.sandbox.config.lost_answer_rate = _BASE_LOST_RATE

    def _terminate(self, process: subprocess.Popen[bytes], plan: str) -> None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            self.report.violations.append(f"round {plan}: the run did not stop within 30 s of SIGTERM")
        self.report.sigterms += 1
        self._record_exit(process, plan)

    def _final_resume(self, target: Target) -> None:
        """Run the same command again, as the operator is told to, until a run finishes (exit 0 or 1)."""
        self._restore_base_faults()
        for attempt in range(1, FINAL_RESUMES + 1):
            process = self._start_run(target)
            limit = max(FINAL_TIMEOUT, self.config.members / Rate.parse(self.config.rate).per_second * 4)
            try:
                process.wait(timeout=limit)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
                self.report.violations.append(f"the final resume did not finish within {limit:.0f} s")
            self.report.final_exit = process.returncode
            self._record_exit(process, f"final resume {attempt} of {target.campaign}")
            if process.returncode != EXIT_STOPPED:
                return
        self.report.violations.append(
            f"{target.campaign}: {FINAL_RESUMES} final resumes in a row exited 3: {self._last_line(self._runs)}"
        )

    # ------------------------------------------------------------------ moments: observable events
    def _moment(self, number: int, target: Target) -> _Moment:
        """A random point of the run's life, told by what it does: requests the server got, codes it saved."""
        left = max(1, (self.config.kills + 1 - number) // len(self.targets))
        remaining = max(1, self.config.members - self._saved(target))
        step = max(2, remaining // (2 * left))  # two moments a round: about half the remaining share each
        kind = self._rng.choice(("requests", "requests", "saved", "start"))
        if kind == "start":  # as soon as the run reaches the server: loading, the campaign check, first calls
            base = self._requests()
            return _Moment("its first request", lambda: self._requests() > base)
        count = self._rng.randint(1, step)
        if kind == "requests":
            base = self._requests()
            return _Moment(f"{count} more requests", lambda: self._requests() >= base + count)
        base = self._saved(target)
        return _Moment(f"{count} more codes saved", lambda: self._saved(target) >= base + count)

    def _wait(self, moment: _Moment, process: subprocess.Popen[bytes]) -> bool:
        """Poll until ``moment`` happens (``True``) or the run exits (``False``); a run that makes no progress for
        :data:`PROGRESS_TIMEOUT` seconds is a violation (hung) and is killed."""
        deadline = time.monotonic() + PROGRESS_TIMEOUT
        while not moment.reached():
            if process.poll() is not None:
                return False
            if time.monotonic() > deadline:
                self.report.violations.append(f"run {self._runs} hung: {moment.label} did not happen in "
                                              f"{PROGRESS_TIMEOUT:.0f} s")
                process.kill()
                process.wait()
                return False
            time.sleep(_POLL)
        return True

    def _requests(self) -> int:
        return sum(1 for arrival in self.sandbox.arrivals if arrival.kind != "background")

    def _saved(self, target: Target) -> int:
        try:
            with Journal.open(target.journal, readonly=True) as journal:
                return journal.state_counts()["done"]
        except (JournalError, OSError, sqlite3.Error):
            return 0  # not created yet, caught between its creation and its schema, or busy recovering

    # ------------------------------------------------------------------ processes
    def _start_run(self, target: Target) -> subprocess.Popen[bytes]:
        self._runs += 1
        if self._runs > 1:
            self.report.resumes += 1
        command = [
            sys.executable, "-m", "distributor", "run",
            "--segment", str(self.segment), "--campaign", target.campaign, "--distribution", DISTRIBUTION,
            "--api-url", self._url, "--rate-limit", self.config.rate, "--output", str(target.output),
            "--timeout", f"{self.config.timeout}s",
        ]
        if self.config.max_attempts is not None:
            command += ["--max-attempts", str(self.config.max_attempts)]
        environment = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                       "VOUCHERIFY_APP_ID": DEMO_APP_ID, "VOUCHERIFY_APP_TOKEN": DEMO_APP_TOKEN}
        with (self.logs / f"run-{self._runs}.out").open("wb") as out, \
                (self.logs / f"run-{self._runs}.err").open("wb") as err:
            return subprocess.Popen(command, env=environment, stdout=out, stderr=err)

    def _record_exit(self, process: subprocess.Popen[bytes], plan: str) -> None:
        code = process.returncode
        label = "SIGKILL" if code == -signal.SIGKILL else str(code)
        self.report.exit_codes[label] += 1
        self.report.log.append(f"{plan} → run {self._runs} exit {label}")
        errors = (self.logs / f"run-{self._runs}.err").read_text(encoding="utf-8", errors="replace")
        if "Traceback" in errors:
            self.report.violations.append(f"run {self._runs} printed a traceback: {self._last_line(self._runs)}")
        if code not in (EXIT_OK, EXIT_STOPPED, -signal.SIGKILL):
            self.report.violations.append(f"run {self._runs} ({plan}) exited {code}: {self._last_line(self._runs)}")

    def _last_line(self, run: int) -> str:
        """The run's one-line outcome (``exit N: …`` on stdout), else the last line it wrote to stderr."""
        for name in (f"run-{run}.out", f"run-{run}.err"):
            lines = (self.logs / name).read_text(encoding="utf-8", errors="replace").strip().splitlines()
            if lines and (name.endswith(".err") or lines[-1].startswith("exit ")):
                return lines[-1]
        return "(nothing on stdout or stderr)"

    # ------------------------------------------------------------------ the sandbox
    @property
    def _url(self) -> str:
        return f"http://127.0.0.1:{self._port}"

    def _start_server(self) -> None:
        self._server = SandboxServer(self.sandbox, port=self._port).start()
        self._port = self._server.port

    def _stop_server(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None

    def _write_segment(self) -> None:
        with self.segment.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["identity", "Email"])
            writer.writerows([identity, f"{identity}@example.com"] for identity in self.members)

    # ------------------------------------------------------------------ the invariant
    def _count_requests(self) -> None:
        stats = self.sandbox.stats()
        report = self.report
        report.publications, report.requests = stats["publications"], stats["arrivals"]
        report.lost_answers, report.server_errors, report.rate_limited = (
            stats["lost_answer"], stats["fault_5xx"], stats["rate_limited"]
        )

    def check(self) -> list[str]:
        """Every member holds exactly the code the server committed for them, nothing more: one publication per
        member and campaign on the server, each CSV and journal equal to the server's publications of its
        campaign. Returns what is not so."""
        violations: list[str] = []
        expected = len(self.members) * len(self.targets)
        if len(self.sandbox.publications) != expected:
            violations.append(f"the server holds {len(self.sandbox.publications)} publications, not {expected} "
                              f"({len(self.members)} members × {len(self.targets)} campaigns)")
        for target in self.targets:
            violations += self._check_target(target)
        return violations

    def _check_target(self, target: Target) -> list[str]:
        return distribution_violations(
            target.campaign, self.sandbox.codes_held(target.campaign), self.members, target.output, target.journal
        )


@dataclass(frozen=True)
class _Moment:
    label: str
    reached: Callable[[], bool]

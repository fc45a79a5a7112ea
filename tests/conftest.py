"""Shared helpers: a real loopback sandbox, segment files, and running a distribution against them."""

from __future__ import annotations

import csv
import os
import resource
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import anyio
import pytest

from distributor.config import JobConfig
from distributor.errors import JournalError
from distributor.journal import Journal
from distributor.pacing import backoff_testing
from distributor.run import Distribution, RunResult
from distributor.sandbox import DEMO_APP_ID, DEMO_APP_TOKEN, SandboxConfig, SandboxServer

PROJECT = Path(__file__).resolve().parents[1]
SAMPLE_SEGMENT = PROJECT / "sample_data" / "segment.csv"
SANDBOX_ENV = {"VOUCHERIFY_APP_ID": DEMO_APP_ID, "VOUCHERIFY_APP_TOKEN": DEMO_APP_TOKEN}


@pytest.fixture
def sandbox() -> Iterator[Any]:
    """A factory: ``sandbox(rate_limit=Rate(…), …)`` starts a loopback sandbox, stopped after the test."""
    servers: list[SandboxServer] = []

    def start(**options: Any) -> SandboxServer:
        options.setdefault("seed", 1)
        server = SandboxServer(SandboxConfig(**options)).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def no_backoff() -> Iterator[None]:
    """Retries without their backoff waits (the product's testing mode, as stamina's): for in-process tests whose
    point is what the retries achieve, not how long they wait. Scenarios about the waits run on the virtual clock."""
    with backoff_testing():
        yield


def write_segment(path: Path, identities: Sequence[str], *, column: str = "identity", extra: bool = True) -> Path:
    """A CleverTap-style CSV export with ``identities`` in ``column`` (plus an Email column)."""
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow([column, "Email"] if extra else [column])
        for index, identity in enumerate(identities):
            writer.writerow([identity, f"user{index}@example.com"] if extra else [identity])
    return path


def make_config(tmp_path: Path, server: SandboxServer | None, segment: Path, **options: Any) -> JobConfig:
    values: dict[str, Any] = {
        "segment": segment,
        "campaign": "reactivation-20",
        "rate_limit": "6000/min",
        "output": tmp_path / "out" / "codes.csv",
        "api_url": server.url if server is not None else "sandbox",
        "timeout": "5s",
    }
    values.update(options)
    return JobConfig.load(None, values, SANDBOX_ENV)


def run(config: JobConfig, **options: Any) -> RunResult:
    return anyio.run(lambda: Distribution(config, **options).run(), backend="asyncio")


def read_codes(path: Path) -> tuple[list[str], dict[str, str]]:
    """The CleverTap CSV's header and its identity → code rows (asserting no identity appears twice)."""
    with path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    header, body = rows[0], rows[1:]
    codes = {identity: code for identity, code in body}
    assert len(codes) == len(body), "an identity appears twice in the output"
    return header, codes


def start_job(*args: str) -> subprocess.Popen[str]:
    """``distributor run ARGS`` in a real process (it can get real signals), with the sandbox's keys."""
    return subprocess.Popen(
        [sys.executable, "-m", "distributor", "run", *args],
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **SANDBOX_ENV},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def wait_for(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    """Poll ``condition`` (a journal another process writes, a log) until it holds; fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for the run in the subprocess")
        time.sleep(0.02)


def codes_saved(journal_path: Path) -> int:
    """Codes a (possibly running) distribution has saved so far; 0 before its journal exists."""
    try:
        with Journal.open(journal_path, readonly=True) as journal:
            return journal.state_counts()["done"]
    except JournalError:
        return 0


def held_codes(server: SandboxServer, campaign: str = "reactivation-20") -> dict[str, set[str]]:
    return server.sandbox.codes_held(campaign)


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int | None:
    """``-n auto`` (pyproject's addopts): two workers per core. Most of the suite's wall time is waiting — on real
    processes, signals, loopback answers, ``--timeout``s — not computing (its CPU time is about a quarter of the
    sum of its tests' wall times), so one worker per core leaves the cores idle. ``PYTEST_XDIST_AUTO_NUM_WORKERS``
    still decides when set."""
    if os.environ.get("PYTEST_XDIST_AUTO_NUM_WORKERS"):
        return None
    return 2 * len(os.sched_getaffinity(0))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The ``slow`` tests first, the longest of them (``@pytest.mark.slow(seconds=N)``, a rough figure on a quiet
    machine) before the rest, then the others in their own order: xdist hands tests out in this order, so the long
    ones start early on every worker instead of one of them running alone at the end while the others sit idle."""
    items.sort(key=_longest_first)


def _longest_first(item: pytest.Item) -> tuple[bool, float]:
    slow = item.get_closest_marker("slow")
    return slow is None, -float(slow.kwargs.get("seconds", 1.0)) if slow is not None else 0.0


@pytest.fixture(autouse=True)
def _no_real_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never see a developer's real keys."""
    for name in list(os.environ):
        if name.startswith(("VOUCHERIFY_", "CLEVERTAP_")):
            monkeypatch.delenv(name)


#: CPU seconds of reaped child processes above which a test is taken to have run a real process (a ``chattr`` or
#: similar tool costs about a millisecond; the smallest Python process 15 ms or more).
_PROCESS_CPU = 0.01


@pytest.fixture(autouse=True)
def _a_test_that_runs_a_process_is_marked_slow(request: pytest.FixtureRequest) -> Iterator[None]:
    """Keeps the ``slow`` marker true: ``-m "not slow"`` (the quick loop) must not start real processes."""
    before = _children_cpu()
    yield
    if request.node.get_closest_marker("slow") is None and _children_cpu() - before > _PROCESS_CPU:
        pytest.fail(f"{request.node.nodeid} ran a real process: mark it @pytest.mark.slow", pytrace=False)


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime

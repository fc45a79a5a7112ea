"""The sandbox in a process of its own (``distributor sandbox``), as Voucherify would be: for benchmarks and for
tests whose figures must not share an interpreter (and its GIL) with the job they measure.

    with SandboxProcess("--rate-limit", "2000/min", "--latency", "150ms") as sandbox:
        run the job against sandbox.url ...
    sandbox.arrivals    # every request it received (dicts of Arrival's fields), once it has stopped
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from types import TracebackType
from typing import Any

from .limits import most_in_window

_READY = "Voucherify sandbox on "


class SandboxProcess:
    """``python -m distributor sandbox --port 0 OPTIONS`` until the block ends; then its arrival log is read."""

    def __init__(self, *options: str) -> None:
        self.options = options
        self.url = ""
        self.arrivals: list[dict[str, Any]] = []
        self._folder = tempfile.TemporaryDirectory(prefix="sandbox-")
        self._arrivals_path = Path(self._folder.name) / "arrivals.jsonl"
        self._process: subprocess.Popen[str] | None = None

    def __enter__(self) -> SandboxProcess:
        self._process = subprocess.Popen(
            [sys.executable, "-m", "distributor", "sandbox", "--port", "0", "--arrivals", str(self._arrivals_path),
             *self.options],
            stderr=subprocess.PIPE, text=True,
        )
        assert self._process.stderr is not None
        line = self._process.stderr.readline()  # "Voucherify sandbox on http://127.0.0.1:PORT (…)": it is listening
        if _READY not in line:
            self._process.kill()
            raise RuntimeError(f"the sandbox did not start: {line.strip() or self._process.stderr.read().strip()}")
        self.url = line.split(_READY, 1)[1].split()[0]
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        assert self._process is not None
        self._process.send_signal(signal.SIGINT)
        self._process.communicate(timeout=30)
        if self._arrivals_path.exists():
            self.arrivals = [json.loads(line) for line in self._arrivals_path.read_text().splitlines()]
        self._folder.cleanup()

    def max_in_window(self, period: float, *, kinds: tuple[str, ...] = ("publish", "lookup", "campaign")) -> int:
        """The most requests of ``kinds`` it received in any window of ``period`` seconds."""
        times = sorted(a["at"] for a in self.arrivals if a["kind"] in kinds)
        return most_in_window(times, period)

    def count(self, **fields: Any) -> int:
        """How many arrivals have all these field values, e.g. ``count(status=429)``."""
        return sum(1 for a in self.arrivals if all(a.get(k) == v for k, v in fields.items()))

"""The app token never leaves the request header: not in logs (verbose included), exceptions, files or ``repr``.

Real runs against the loopback sandbox configured with a distinctive token — a clean run, a run whose answers are
lost or 5xx, a run with a wrong token (401) — in-process with every logger at DEBUG, and as a real
``python -m distributor run -v`` subprocess.  Then every byte a run wrote (the CSV, the reports, the manifest, the
summary, the SQLite journal with its -wal and lock files) and everything captured is searched for the token.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import PROJECT, write_segment
from virtual import VIRTUAL_URL, run_virtual

from distributor.config import JobConfig
from distributor.errors import EXIT_MEMBER_FAILURES, EXIT_OK, EXIT_STOPPED
from distributor.sandbox import SandboxConfig

TOKEN = "tok-ZX81-very-secret"
WRONG = "tok-ZX81-wrong-secret"
APP_ID = "sandbox-app-id"
#: The loggers a run can write to; "" is the root, which also receives warnings of any other library.
LOGGERS = ["", "distributor", "httpx", "httpcore", "anyio", "asyncio", "uvicorn", "uvicorn.error", "uvicorn.access"]


class Captured(logging.Handler):
    """Every record of every logger, formatted with its traceback, as one text."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record) + repr(record.args))

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


@pytest.fixture
def captured() -> Iterator[Captured]:
    """DEBUG logging of everything into one handler (attached to each logger: the CLI stops propagation)."""
    handler = Captured()
    saved = {}
    for name in LOGGERS:
        logger = logging.getLogger(name)
        saved[name] = logger.level
        logger.setLevel(logging.DEBUG)
        logger.addHandler(handler)
    yield handler
    for name in LOGGERS:
        logger = logging.getLogger(name)
        logger.removeHandler(handler)
        logger.setLevel(saved[name])


def config_with(tmp_path: Path, url: str, token: str) -> JobConfig:
    """A verbose job against the Voucherify at ``url`` with the keys in the environment, as a user sets them."""
    segment = write_segment(tmp_path / "segment.csv", [f"cust-{i:03d}" for i in range(30)] + ["", "null", "cust-000"])
    options = {"segment": segment, "campaign": "reactivation-20", "rate_limit": "6000/min", "api_url": url,
               "output": tmp_path / "out" / "codes.csv", "timeout": "5s", "verbose": True}
    return JobConfig.load(None, options, {"VOUCHERIFY_APP_ID": APP_ID, "VOUCHERIFY_APP_TOKEN": token})


def assert_no_secret_in_files(folder: Path, *secrets: str) -> list[str]:
    """Search every file below ``folder`` for each secret (as bytes); returns the names searched."""
    names = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        data = path.read_bytes()
        for secret in secrets:
            assert secret.encode() not in data, f"{secret!r} is in {path}"
        names.append(path.name)
    return names


def test_repr_and_str_of_the_configuration_mask_the_token(tmp_path: Path, sandbox) -> None:
    config = config_with(tmp_path, sandbox(app_token=TOKEN).url, TOKEN)
    assert config.credentials is not None and config.credentials.app_token == TOKEN  # the token is there...
    for text in (repr(config), str(config), repr(config.credentials), str(config.credentials), f"{config!r}"):
        assert TOKEN not in text  # ...but never shown
    assert "app_token='***'" in repr(config)


@pytest.mark.parametrize(
    ("sandbox_options", "token", "exit_codes"),
    [
        ({}, TOKEN, {EXIT_OK}),
        # members whose attempts all fail land in the errors report, with Voucherify's messages: exit 1 is fine
        ({"error_rate": 0.3, "lost_answer_rate": 0.3}, TOKEN, {EXIT_OK, EXIT_MEMBER_FAILURES}),
        ({}, WRONG, {EXIT_STOPPED}),  # the sandbox answers 401
    ],
    ids=["clean", "5xx-and-lost-answers", "wrong-token"],
)
def test_no_run_writes_or_logs_the_token(tmp_path: Path, captured: Captured, sandbox_options, token, exit_codes) -> None:
    """In-process on a virtual clock (the retries' backoff costs no real time); the CLI run below is real."""
    config = config_with(tmp_path, VIRTUAL_URL, token)

    virtual = run_virtual(config, SandboxConfig(app_token=TOKEN, seed=1, **sandbox_options))

    result, world = virtual.result, virtual.sandbox
    assert result.exit_code in exit_codes, result.message
    if token == TOKEN:
        assert len(world.publications) >= 25  # the token was sent and accepted
    else:
        assert result.reason == "unauthorized" and not world.publications
    texts = [captured.text, result.message, repr(result.summary), repr(result.stats), repr(config)]
    assert "DEBUG" in captured.text  # verbose logging was captured
    for text in texts:
        assert TOKEN not in text and WRONG not in text
    written = assert_no_secret_in_files(tmp_path / "out", TOKEN, WRONG)
    # a run refused before any code was published writes no (empty) hand-off: only its summary and journal
    expected = {"codes.summary.json", "codes.journal.sqlite"} | (
        {"codes.csv", "codes.manifest.json", "codes.errors.csv", "codes.skipped.csv"} if token == TOKEN else set())
    assert expected <= set(written)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("token", "exit_codes"), [(TOKEN, {EXIT_OK, EXIT_MEMBER_FAILURES}), (WRONG, {EXIT_STOPPED})], ids=["accepted", "refused"]
)
def test_a_verbose_command_line_run_prints_no_token(tmp_path: Path, sandbox, token: str, exit_codes: set[int]) -> None:
    server = sandbox(app_token=TOKEN, error_rate=0.2, lost_answer_rate=0.2)
    segment = write_segment(tmp_path / "segment.csv", [f"cust-{i:03d}" for i in range(20)])
    out = tmp_path / "out" / "codes.csv"
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "VOUCHERIFY_APP_ID": APP_ID, "VOUCHERIFY_APP_TOKEN": token}
    completed = subprocess.run(
        [sys.executable, "-m", "distributor", "run", "--segment", str(segment), "--campaign", "reactivation-20",
         "--rate-limit", "6000/min", "--api-url", server.url, "--output", str(out), "--timeout", "5s", "-v"],
        capture_output=True, text=True, timeout=120, env=env, cwd=PROJECT,
    )
    assert completed.returncode in exit_codes, completed.stderr
    for stream in (completed.stdout, completed.stderr):
        assert TOKEN not in stream and WRONG not in stream
    assert "codes.journal.sqlite" in assert_no_secret_in_files(tmp_path / "out", TOKEN, WRONG)

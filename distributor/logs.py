"""Where the ``distributor`` logger writes: plain lines (the default), a terminal's rich console, or JSON lines.

``--log-format json`` writes one JSON object per line for log shippers (journald, Loki, Datadog…)::

    {"ts": "2026-11-29T06:15:02.123Z", "level": "info", "logger": "distributor", "msg": "segment: …"}

with any ``extra=`` fields of the call added, and ``exc`` for a traceback.  Timestamps are UTC, ISO 8601.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

TEXT = "text"
JSON = "json"

#: The attributes every LogRecord has: anything else was given with ``extra=`` and becomes a JSON field.
_STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ``ts`` (UTC ISO 8601), ``level``, ``logger``, ``msg``, plus extra fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and key not in entry:
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


def setup_logging(verbose: bool, log_format: str = TEXT, console: Any = None) -> None:
    """Send the ``distributor`` logger's records to stderr: DEBUG and up with ``verbose``, else INFO and up.

    ``console``: a rich console (the terminal's progress bar) to log through, for text logs on a terminal.
    """
    root = logging.getLogger("distributor")
    root.handlers.clear()
    handler: logging.Handler
    if log_format == JSON:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JsonFormatter())
    elif console is not None:
        from rich.logging import RichHandler

        handler = RichHandler(console=console, show_path=False, markup=False)
        handler.setFormatter(logging.Formatter("%(message)s"))
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%Y-%m-%d %H:%M:%S"))
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    root.propagate = False
    # httpx logs one INFO line per request: far too much at thousands of calls
    logging.getLogger("httpx").setLevel(logging.WARNING)

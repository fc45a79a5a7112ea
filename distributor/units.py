"""Parsing of the human units used on the command line and in job files: rates and durations."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from .errors import ConfigError

#: One vocabulary of time units for rates (``100/hr``) and durations (``2hours``): seconds per unit.
_UNITS = {
    "ms": 0.001, "msec": 0.001, "millisecond": 0.001, "milliseconds": 0.001,
    "s": 1.0, "sec": 1.0, "secs": 1.0, "second": 1.0, "seconds": 1.0,
    "m": 60.0, "min": 60.0, "mins": 60.0, "minute": 60.0, "minutes": 60.0,
    "h": 3600.0, "hr": 3600.0, "hrs": 3600.0, "hour": 3600.0, "hours": 3600.0,
}
_RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*/\s*(\d+(?:\.\d+)?)?\s*([a-z]+)\s*$")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-z]+)?\s*$")


@dataclass(frozen=True)
class Rate:
    """``calls`` per ``period`` seconds, e.g. ``Rate(100, 60.0)`` for Voucherify's Business plan.

    The period matters, not just the quotient: Voucherify counts calls per minute (or per hour), and the job
    must stay within ``calls`` in *every* window of ``period`` seconds.
    """

    calls: int
    period: float

    @classmethod
    def parse(cls, text: str | int | float) -> Rate:
        """Parse ``"100/min"``, ``"2000/min"``, ``"5/s"``, ``"100/h"``, ``"100/hr"``, ``"50/2s"``, ``"3/minutes"``."""
        match = _RATE.match(str(text).lower())
        if not match:
            raise ConfigError(
                f"rate {text!r} is not of the form N/s, N/min or N/h (for example 100/min)"
            )
        number, multiple, unit = match.groups()
        if unit not in _UNITS or _UNITS[unit] < 1.0:
            raise ConfigError(f"rate {text!r}: unknown period {unit!r}; use s, min or h (or sec, minute, hour, hr, …)")
        value = float(number)
        period = _UNITS[unit] * (float(multiple) if multiple else 1.0)
        if value <= 0 or period <= 0:
            raise ConfigError(f"rate {text!r} must be positive")
        if value != int(value):
            # 1.5/s is 3 calls per 2 s: keep an integer number of calls over a longer period.
            scale = 10 ** len(number.split(".")[1])
            value, period = value * scale, period * scale
            gcd = math.gcd(int(value), scale)
            value, period = value / gcd, period / gcd
        return cls(int(value), period)

    @property
    def per_second(self) -> float:
        return self.calls / self.period

    def scaled(self, fraction: float) -> Rate:
        """This rate times ``fraction`` (e.g. 0.8 to leave 20 % of the plan to the shop), at least 1 call."""
        return Rate(max(1, math.floor(self.calls * fraction)), self.period)

    def __str__(self) -> str:
        for name, seconds in (("h", 3600.0), ("min", 60.0), ("s", 1.0)):
            if self.period == seconds:
                return f"{self.calls}/{name}"
        return f"{self.calls}/{format_duration(self.period)}"


def parse_duration(text: str | int | float) -> float:
    """Parse ``"150ms"``, ``"1.5s"``, ``"2min"``, or a bare number of seconds, into seconds."""
    match = _DURATION.match(str(text).lower())
    unit = match.group(2) if match else None
    if not match or (unit is not None and unit not in _UNITS):
        raise ConfigError(f"duration {text!r} is not of the form 150ms, 2s, 5min or 1h (or sec, minutes, hr, hours, …)")
    return float(match.group(1)) * (_UNITS[unit] if unit is not None else 1.0)


def format_duration(seconds: float) -> str:
    """``3725`` → ``"1h 2min 5s"``; sub-second values in ms."""
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 60:
        return f"{seconds:.1f}s".replace(".0s", "s")
    whole = round(seconds)
    days, rest = divmod(whole, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [f"{days}d" if days else "", f"{hours}h" if hours else "", f"{minutes}min" if minutes else ""]
    if not days and not hours:
        parts.append(f"{secs}s" if secs else "")
    return " ".join(p for p in parts if p) or "0s"

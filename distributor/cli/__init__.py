"""The ``distributor`` command: a thin click skin over the library.

* ``commands`` — the commands (run, plan, status, export, verify, push, sandbox): each builds its configuration,
  calls one function of the core and renders the outcome;
* ``render`` — what they print;
* ``options`` — the options they share, and how a command that only reads a distribution's files finds them;
* ``edge`` — the one place where a :class:`~distributor.errors.DistributorError` becomes one line on stderr with
  its documented exit code (anything else is a bug and keeps its traceback).
"""

from . import reading  # noqa: F401  (registers status, export and verify on main)
from .commands import main
from .render import render_audit_cost, render_plan, render_status, render_summary

__all__ = ["main", "render_audit_cost", "render_plan", "render_status", "render_summary"]

"""Typed errors of the distributor core.

The core raises these; only the edge (``cli.py``) turns them into a message and an exit code, so a user never
sees a traceback for a problem we can foresee.  Every error carries the exit code documented in the README:

==== ===================================================================================================
code meaning
==== ===================================================================================================
0    every valid member of the segment holds a code
1    the run finished, but some members failed (see the errors CSV beside the output)
2    unusable input or configuration, detected before any API call
3    stopped early: interrupted, or a condition that dooms every further call; rerunning resumes
==== ===================================================================================================
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_MEMBER_FAILURES = 1
EXIT_UNUSABLE_INPUT = 2
EXIT_STOPPED = 3


class DistributorError(Exception):
    """Base of every foreseeable problem.  ``str(error)`` is the one-line message shown to the user."""

    exit_code: int = EXIT_UNUSABLE_INPUT


class ConfigError(DistributorError):
    """The job's configuration cannot work (missing option, bad rate, missing credentials, ...)."""

    exit_code = EXIT_UNUSABLE_INPUT


class InputError(DistributorError):
    """The segment export cannot be used (missing, unreadable, no identity column, empty, ...)."""

    exit_code = EXIT_UNUSABLE_INPUT


class JournalError(DistributorError):
    """The journal cannot be used for this job (another distribution's journal, unreadable, newer schema)."""

    exit_code = EXIT_UNUSABLE_INPUT


class JournalLocked(DistributorError):
    """Another process is running a distribution on the same journal right now."""

    exit_code = EXIT_STOPPED


class StorageError(DistributorError):
    """The journal or a file could not be written (disk full, folder made read-only, I/O error) during a run.

    What was committed before stays: the run stops, and rerunning once the storage is fixed resumes it.
    """

    exit_code = EXIT_STOPPED


class StopRun(DistributorError):
    """A condition that dooms every further call (bad credentials, unknown campaign, out of codes, quota spent).

    ``reason`` is a short machine-readable word for the summary; ``str()`` says what happened and what to do.
    """

    exit_code = EXIT_STOPPED

    def __init__(self, message: str, *, reason: str, resume_at: float | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        #: Unix time at which rerunning can succeed, when the server said so (e.g. the next billing cycle).
        self.resume_at = resume_at

"""Errors and exit codes of the supervisor.

    SupervisorError        base of every error raised on purpose
    └── UsageError         bad command-line option or SUPERVISOR_* variable (exit 2)

Exit codes are the only channel a child has to tell the master *why* it ended, so each cause
gets its own code; the master maps them to restart reasons (reasons.py) and shutdown messages.
"""

from __future__ import annotations

from enum import IntEnum

from runtime.env import SettingsError
from runtime.exit_codes import NEEDS_REPLACEMENT


class SupervisorError(Exception):
    """Base class of every error the supervisor raises on purpose."""


class UsageError(SupervisorError, SettingsError):
    """An option or environment variable is unusable; the message says which and why."""


class ExitCode(IntEnum):
    """Exit codes of the master (first block) and of its children (second block)."""

    OK = 0
    FAILURE = 1
    USAGE = 2  # bad option, or bad QUEUE_* setting found by the preflight child
    BOOT_FAILURE = 3  # a child could not import its tasks / build its consumer
    DATABASE_UNREACHABLE = 4  # the preflight child gave up waiting for the database
    CRASH_LOOP = 5  # every consumer slot is crash-looping

    # Child-only: a planned, graceful replacement, with the reason the master should count.
    RECYCLE_JOBS = 10
    RECYCLE_MEMORY = 11
    JOB_TIMEOUT = NEEDS_REPLACEMENT  # runtime/exit_codes.py: `queue_worker work` exits so too

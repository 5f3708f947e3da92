"""Errors and exit codes of the supervisor.

    SupervisorError        base of every error raised on purpose
    └── UsageError         bad command-line option or SUPERVISOR_* variable (exit 2)

Exit codes are the only channel a child has to tell the master *why* it ended, so each cause
gets its own code; the master maps them to restart reasons and shutdown messages.
"""

from __future__ import annotations

import os
import signal
from enum import IntEnum


class SupervisorError(Exception):
    """Base class of every error the supervisor raises on purpose."""


class UsageError(SupervisorError):
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
    JOB_TIMEOUT = 12


RECYCLE_REASONS: dict[int, str] = {
    ExitCode.RECYCLE_JOBS: "recycle_jobs",
    ExitCode.RECYCLE_MEMORY: "recycle_memory",
    ExitCode.JOB_TIMEOUT: "timeout",
}
"""Child exit code → supervisor_restarts_total reason, for exits that are replacements."""


class ChildExit:
    """How a child ended, decoded from its wait status, and why the master thinks it did."""

    __slots__ = ("pid", "exit_code", "signal", "reason")

    def __init__(self, pid: int, status: int, reason: str = "crash") -> None:
        self.pid = pid
        code = os.waitstatus_to_exitcode(status)
        self.exit_code: int | None = code if code >= 0 else None
        self.signal: int | None = -code if code < 0 else None
        self.reason = reason  # crash | hang | shutdown

    def describe(self) -> str:
        """Return 'signal SIGKILL' or 'exit code 3', for logs."""
        if self.signal is not None:
            try:
                return f"signal {signal.Signals(self.signal).name}"
            except ValueError:
                return f"signal {self.signal}"
        return f"exit code {self.exit_code}"

"""Why the master acts: the one table of reasons, each an enum, compared by identity not text.

    StopMode       how the whole supervisor stops: GRACEFUL (TERM/INT) or FAST (QUIT)
    Retiring       why the master asked one child to stop: RELOAD, SCALE, SHUTDOWN
    DeathCause     how the master judges a consumer's abnormal end, and so what its reaper
                   records on the jobs it held: CRASH and HANG blame them (crashes += 1, poison
                   after QUEUE_POISON_CRASHES); SHUTDOWN releases without blame. A consumer
                   waiting on the database is never judged hung (outage.py)
    RestartReason  the `reason` label of supervisor_restarts_total: why a consumer was replaced

`ChildExit` is how a child ended (its wait status decoded) and the cause the master judged.
`EXIT_CODE_RESTARTS` maps a child's planned-exit codes (errors.ExitCode) to their restart reason.
"""

from __future__ import annotations

import os
import signal
from enum import StrEnum

from supervisor.errors import ExitCode


class StopMode(StrEnum):
    GRACEFUL = "graceful"  # consumers drain: running jobs get --graceful-timeout to finish
    FAST = "fast"  # consumers release every held job at once


class Retiring(StrEnum):
    RELOAD = "reload"  # HUP: replaced by a fresh child, which is started first
    SCALE = "scale"  # TTOU: one consumer fewer
    SHUTDOWN = "shutdown"  # the supervisor is stopping


class DeathCause(StrEnum):
    CRASH = "crash"  # died of a signal or an unexpected exit code
    HANG = "hang"  # stopped reporting liveness outside the database (outage.py); killed
    SHUTDOWN = "shutdown"  # asked to stop and did not release everything itself

    @property
    def blames_jobs(self) -> bool:
        """Whether the jobs it held count a crash (toward being buried as poison)."""
        return self in (DeathCause.CRASH, DeathCause.HANG)


class RestartReason(StrEnum):
    CRASH = "crash"
    HANG = "hang"
    TIMEOUT = "timeout"
    RECYCLE_JOBS = "recycle_jobs"
    RECYCLE_MEMORY = "recycle_memory"
    RELOAD = "reload"
    SCALE = "scale"


EXIT_CODE_RESTARTS: dict[int, RestartReason] = {
    ExitCode.RECYCLE_JOBS: RestartReason.RECYCLE_JOBS,
    ExitCode.RECYCLE_MEMORY: RestartReason.RECYCLE_MEMORY,
    ExitCode.JOB_TIMEOUT: RestartReason.TIMEOUT,
}
"""Child exit code → restart reason, for exits that are planned replacements."""


class ChildExit:
    """How a child ended, decoded from its wait status, and why the master thinks it did."""

    __slots__ = ("pid", "exit_code", "signal", "cause")

    def __init__(self, pid: int, status: int, cause: DeathCause = DeathCause.CRASH) -> None:
        self.pid = pid
        code = os.waitstatus_to_exitcode(status)
        self.exit_code: int | None = code if code >= 0 else None
        self.signal: int | None = -code if code < 0 else None
        self.cause = cause

    def describe(self) -> str:
        """Return 'signal SIGKILL' or 'exit code 3', for logs."""
        if self.signal is not None:
            try:
                return f"signal {signal.Signals(self.signal).name}"
            except ValueError:
                return f"signal {self.signal}"
        return f"exit code {self.exit_code}"

"""The OS calls the master makes, behind a protocol so unit tests can drive it with fakes.

`OsProcessOps.fork` runs the child's target and `os._exit`s with its return value: a child never
returns into the master's loop, whatever happens in it.
"""

from __future__ import annotations

import os
import sys
import time
import traceback
from collections.abc import Callable
from typing import Protocol

import setproctitle

from runtime import metrics_dir
from supervisor.errors import ExitCode
from supervisor.liveness import LivenessLink
from supervisor.reasons import ChildExit


class ProcessOps(Protocol):
    """The OS calls the master makes (real ones in `OsProcessOps`, fakes in unit tests)."""

    def fork(self, target: Callable[[], int]) -> int:
        """Start a child running `target` (its return value is the exit code); return its pid."""
        ...

    def kill(self, pid: int, sig: int) -> None: ...

    def reap(self) -> tuple[int, int] | None:
        """Return (pid, wait status) of one exited child, or None without blocking."""
        ...

    def monotonic(self) -> float: ...

    def time(self) -> float: ...

    def mark_dead(self, pid: int) -> None:
        """Drop a dead process's live gauges and fold its counters into the archive files."""
        ...

    def set_title(self, title: str) -> None: ...


class ChildTargets(Protocol):
    """What each kind of child runs after the fork; each returns the child's exit code."""

    def consumer(self, slot: int, liveness: LivenessLink) -> int: ...

    def singleton(self, name: str, liveness: LivenessLink) -> int: ...

    def reaper(self, dead: ChildExit) -> int: ...


class OsProcessOps:
    """The real OS calls."""

    def fork(self, target: Callable[[], int]) -> int:
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid:
            return pid
        code: int = ExitCode.FAILURE
        try:
            code = target()
        except BaseException:  # noqa: B036 - a child must never return into the master's loop
            traceback.print_exc()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)

    def kill(self, pid: int, sig: int) -> None:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass  # already gone; the next reap collects it

    def reap(self) -> tuple[int, int] | None:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return None
        return (pid, status) if pid else None

    def monotonic(self) -> float:
        return time.monotonic()

    def time(self) -> float:
        return time.time()

    def mark_dead(self, pid: int) -> None:
        # Its counters are folded into the archive: scrapes stay fast after many restarts.
        metrics_dir.process_died(pid)

    def set_title(self, title: str) -> None:
        setproctitle.setproctitle(title)

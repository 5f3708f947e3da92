"""Liveness: a child proves it is alive by touching a file the master created before the fork.

Like gunicorn's WorkerTmp, the report is one syscall (`os.utime` on an inherited descriptor),
with no pipe to fill and no wake-up of the master. Only the consumer loop reports, never a job
thread, so a child whose loop is stuck (C code holding the GIL, a deadlock, SIGSTOP) goes stale.

The file also carries two facts the master reads: the child is *ready* (booted) once the file is
non-empty, and a boot failure leaves its message in the file for the master to log.
"""

from __future__ import annotations

import os
import tempfile
import time
from typing import Protocol

_READY_MARK = b"ready\n"
_NOTE_LIMIT = 4000


class LivenessLink(Protocol):
    """A child's liveness channel: child-side reports, master-side reads (fakes in unit tests)."""

    def notify(self) -> None: ...

    def mark_ready(self) -> None: ...

    def leave_note(self, message: str) -> None: ...

    def last_report(self) -> float:
        """Return the wall-clock time (epoch seconds) of the child's last report."""
        ...

    def is_ready(self) -> bool:
        """Return True once the child has finished booting."""
        ...

    def note(self) -> str:
        """Return the message the child left (a boot failure), or ''."""
        ...

    def close(self) -> None: ...


class Liveness:
    """One child's liveness file; created by the master, inherited by the child at fork."""

    def __init__(self, directory: str | None = None) -> None:
        fd, path = tempfile.mkstemp(prefix="supervisor-live-", dir=directory)
        # Unlinked at once: the descriptor is all either side needs, and nothing is left behind.
        os.unlink(path)
        self._fd = fd
        now = time.time()
        os.utime(fd, (now, now))

    # Child side -----------------------------------------------------------------------------
    def notify(self) -> None:
        """Report that the child's loop is alive (one cheap syscall)."""
        now = time.time()
        os.utime(self._fd, (now, now))

    def mark_ready(self) -> None:
        """Report that the child has booted and is about to start its loop."""
        os.pwrite(self._fd, _READY_MARK, 0)
        self.notify()

    def leave_note(self, message: str) -> None:
        """Leave a message (why boot failed) for the master to log after the child exits."""
        data = message.encode("utf-8", "replace")[:_NOTE_LIMIT]
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, data, 0)

    # Master side ----------------------------------------------------------------------------
    def last_report(self) -> float:
        return os.fstat(self._fd).st_mtime

    def is_ready(self) -> bool:
        return os.pread(self._fd, len(_READY_MARK), 0) == _READY_MARK

    def note(self) -> str:
        data = os.pread(self._fd, _NOTE_LIMIT, 0)
        return "" if data == _READY_MARK else data.decode("utf-8", "replace").strip()

    def close(self) -> None:
        """Close the descriptor (the master does this once the child is reaped)."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

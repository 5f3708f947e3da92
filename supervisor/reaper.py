"""The reaper: a short-lived child that releases a dead consumer's jobs, so the master need not.

The master forks one per abnormal consumer exit. It connects, releases every job still leased to
the dead consumer's owner id (host:pid) at once, recording the crash (signal or exit code) on
each job so that a job which keeps killing its consumer is buried as poison, and exits. If the
database stays unreachable, the jobs are rescued when their leases expire instead.
"""

from __future__ import annotations

import logging
import signal
import time

import setproctitle
from pymongo.errors import PyMongoError

from queue_worker.job import CrashInfo
from queue_worker.store import owner_id
from supervisor.bootstrap import open_store, queue_settings
from supervisor.errors import ChildExit, ExitCode

log = logging.getLogger("supervisor.reaper")
RETRY_FOR_S = 30.0


def release_dead_child(dead: ChildExit) -> int:
    """Release the jobs `dead` held; return the reaper's exit code."""
    setproctitle.setproctitle(f"supervisor: reaper for pid {dead.pid}")
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C hits the whole group; finish the job
    settings = queue_settings()
    client, store = open_store(settings, "supervisor-reaper", timeout_ms=3000, pool=1)
    crash = None if dead.reason == "shutdown" else CrashInfo(dead.signal, dead.exit_code)
    deadline = time.monotonic() + RETRY_FOR_S
    try:
        while True:
            try:
                released = store.release_owner(owner_id(dead.pid), crash=crash, reason=dead.reason)
                break
            except PyMongoError as exc:
                if time.monotonic() >= deadline:
                    log.error("could not release jobs of pid %d: %s", dead.pid, exc)
                    return ExitCode.FAILURE
                time.sleep(0.5)
    finally:
        client.close()
    if released:
        log.warning(
            "released %d job(s) of pid %d (%s, %s)",
            released,
            dead.pid,
            dead.reason,
            dead.describe(),
        )
    return ExitCode.OK

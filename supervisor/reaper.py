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
from collections.abc import Callable

import setproctitle
from pymongo.errors import PyMongoError

from queue_worker.connection import owner_id
from queue_worker.job import CrashInfo
from supervisor.bootstrap import open_store, queue_settings
from supervisor.errors import ExitCode
from supervisor.reasons import ChildExit

log = logging.getLogger("supervisor.reaper")
RETRY_FOR_S = 30.0
IN_FLIGHT_GRACE_S = 1.0


def release_dead_child(dead: ChildExit) -> int:
    """Release the jobs `dead` held; return the reaper's exit code."""
    setproctitle.setproctitle(f"supervisor: reaper for pid {dead.pid}")
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C hits the whole group; finish the job
    settings = queue_settings()
    client, store = open_store(settings, "supervisor-reaper", timeout_ms=3000, pool=1)
    crash = CrashInfo(dead.signal, dead.exit_code) if dead.cause.blames_jobs else None
    reason = dead.cause.value
    owner = owner_id(dead.pid)
    try:
        released = _release(lambda: store.release_owner(owner, crash=crash, reason=reason))
        if released is None:
            log.error("could not release jobs of pid %d: database unreachable", dead.pid)
            return ExitCode.FAILURE
        # A claim the child sent just before it died can still be applied by the server after
        # our first pass (a claim is a scan: tens of ms on the local server). Such a job never
        # ran in the dead child, so a second pass releases it without blaming it; the lease
        # expiry stays the backstop for anything slower.
        time.sleep(IN_FLIGHT_GRACE_S)
        late = _release(lambda: store.release_owner(owner, crash=None, reason=reason)) or 0
    finally:
        client.close()
    if released or late:
        log.warning(
            "released %d job(s) of pid %d (%s, %s)%s",
            released,
            dead.pid,
            reason,
            dead.describe(),
            f", and {late} claimed as it died" if late else "",
        )
    return ExitCode.OK


def _release(release: Callable[[], int]) -> int | None:
    """Run one release pass, retrying while the database is unreachable; None if it stays so."""
    deadline = time.monotonic() + RETRY_FOR_S
    while True:
        try:
            return release()
        except PyMongoError:
            if time.monotonic() >= deadline:
                return None
            time.sleep(0.5)

"""The scheduler: a supervised child that keeps the periodic schedules' ticks enqueued.

Every supervisor runs one (SUPERVISOR_SCHEDULER, on by default), on any number of machines: the
ticks' idempotency keys make them agree without a leader (queue_worker/schedules). It loads the
task modules, whose `schedule(...)` calls define the schedules, writes the definitions at start
and every minute, then runs a pass whenever a tick is due and at least once a second. A pass
waiting on the database keeps reporting liveness (supervisor/outage.py), and has a deadline, so
a stalled database makes passes fail and retry, never makes the master think the child hung.

Signals: TERM and QUIT stop it. Their handler only records the signal and wakes the loop through
a self-pipe (signal_pipe.py): no Event.set() in signal context, where the interrupted main thread
may hold the Event's lock inside wait().
"""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pymongo
import setproctitle
from pymongo.errors import PyMongoError

from queue_worker.builtin import load_tasks
from queue_worker.schedules import registry as schedules
from queue_worker.schedules.scheduler import Scheduler
from supervisor.bootstrap import open_store, queue_settings
from supervisor.errors import ExitCode
from supervisor.liveness import LivenessLink
from supervisor.outage import watch_for_outages
from supervisor.settings import SupervisorSettings
from supervisor.signal_pipe import SignalPipe

log = logging.getLogger("supervisor.scheduler")
PASS_DEADLINE_S = 5.0
SYNC_EVERY = timedelta(minutes=1)
RETRY_S = 1.0
STOP_SIGNALS = (signal.SIGTERM, signal.SIGQUIT)


class SchedulerLoop:
    """One scheduler pass per `tick(now)`: sync the definitions when due, run the pass."""

    def __init__(self, scheduler: Scheduler, liveness: LivenessLink) -> None:
        self.scheduler = scheduler
        self.liveness = liveness
        self.synced_at: datetime | None = None

    def tick(self, now: datetime) -> datetime:
        """Do one pass at `now`; return when the next is due (a failed pass: RETRY_S later)."""
        wake = now + timedelta(seconds=RETRY_S)
        try:
            with pymongo.timeout(PASS_DEADLINE_S):
                if self.synced_at is None or now - self.synced_at >= SYNC_EVERY:
                    self.scheduler.sync(now)
                    self.synced_at = now
                wake = self.scheduler.run_once(now)
        except PyMongoError as exc:
            log.warning("scheduler pass failed (%s); retrying", type(exc).__name__)
        self.liveness.notify()
        return wake


def run_scheduler(
    settings: SupervisorSettings,
    liveness: LivenessLink,
    *,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> int:
    """Keep the schedules until told to stop (TERM/QUIT) or orphaned; return the exit code."""
    setproctitle.setproctitle("supervisor: scheduler")
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the master decides; Ctrl-C reaches it too
    stop: list[int] = []
    with SignalPipe(STOP_SIGNALS, stop.append) as pipe:
        master = os.getppid()
        watch_for_outages(liveness)  # waiting on the database is not hanging (outage.py)
        try:
            queue = queue_settings()
            load_tasks(queue)
            client, store = open_store(queue, "supervisor-scheduler", timeout_ms=2000, pool=2)
            scheduler = Scheduler(store, schedules.all())
            scheduler.check()
        except Exception as exc:  # noqa: BLE001 - any boot error stops the master, with this message
            liveness.leave_note(f"{type(exc).__name__}: {exc}")
            return ExitCode.BOOT_FAILURE
        liveness.mark_ready()
        loop = SchedulerLoop(scheduler, liveness)
        while not stop and os.getppid() == master:
            wake = loop.tick(clock())
            pipe.wait(max(0.0, (wake - clock()).total_seconds()))
    client.close()
    return ExitCode.OK

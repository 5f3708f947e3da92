"""The consumer: runs up to C jobs at once in threads, claiming only when a slot is free.

`run_once(now)` is one pass: reap finished slots, heartbeat and time out running jobs
(slots.py), do due chores (housekeeping.py), then claim while a slot is free and the wake-up
source says a claim is due (wakeup.py). `run()` is a short loop around it; `drain()` is the one
way to stop, used by `run()`, the CLI and the supervisor's child alike. A pass makes at most one
claimer per process, because on the local server a claim is a full scan and racing claimers
re-scan.

Standalone, once `max_abandoned` timed-out threads are still running the consumer stops claiming
and `run()` returns; the CLI then exits with EXIT_NEEDS_REPLACEMENT.

Suspect jobs (crashes > 0, they took a consumer process down before) run alone: they are only
claimed by a consumer with nothing else running, which claims nothing else until they finish,
so a crash is attributed to exactly one job and innocent neighbours are never blamed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import psutil  # type: ignore[import-untyped]
from pymongo.errors import PyMongoError

from queue_worker.claim import Suspects
from queue_worker.controls import identity
from queue_worker.errors import ConfigError
from queue_worker.housekeeping import Housekeeping
from queue_worker.lease import Lease
from queue_worker.settings import QueueSettings
from queue_worker.slots import Slots
from queue_worker.store import Clock, JobStore, utcnow
from queue_worker.tasks import Resources, ResourceSetup, TaskRegistry, open_resources
from queue_worker.wakeup import PollingWakeup, Wakeup
from runtime.exit_codes import NEEDS_REPLACEMENT

log = logging.getLogger(__name__)

EXIT_NEEDS_REPLACEMENT = NEEDS_REPLACEMENT  # runtime/exit_codes.py: the supervisor reads it too
MAX_WAIT_S = 0.25  # how late run() may notice request_stop()


class Consumer:
    """Claim and run jobs from `queues` with `concurrency` threads; see the module docstring.

    `resources` are the task resources built by the entry point from its environment
    (tasks.open_resources); without them, they are built from an empty environment."""

    def __init__(
        self,
        store: JobStore,
        registry: TaskRegistry,
        settings: QueueSettings,
        *,
        owner: str,
        queues: list[str] | None = None,
        concurrency: int = 1,
        clock: Clock = utcnow,
        max_abandoned: int | None = None,
        stop_timeout_s: float = 30.0,
        resources: Resources | None = None,
        wakeup: Wakeup | None = None,
        max_wait_s: float = MAX_WAIT_S,
        monotonic: Callable[[], float] = time.monotonic,
        register: bool = False,
    ) -> None:
        self.store = store
        self.registry = registry
        self.settings = settings
        self.owner = owner
        if queues is not None and not queues:
            raise ConfigError("a consumer needs at least one queue (None: the default queue)")
        self.queues = [settings.default_queue] if queues is None else list(queues)
        self.concurrency = max(1, concurrency)
        self.clock = clock
        self.max_abandoned = max_abandoned if max_abandoned is not None else self.concurrency
        self.stop_timeout_s = stop_timeout_s
        self.max_wait_s = max_wait_s
        self.monotonic = monotonic  # drain's deadline: a parameter, so tests need not sleep
        self.wakeup: Wakeup = wakeup or PollingWakeup(settings.poll_max_s)
        self.housekeeping = Housekeeping(
            store, self.queues, owner=owner if register else "", describe=self.describe
        )
        self.slots = Slots(
            store,
            registry,
            resources or open_resources(registry, ResourceSetup(env={}, db=store.db)),
            settings,
            clock=clock,
            on_succeeded=self.housekeeping.add_finished,
            on_finished=self.wakeup.wake,
            on_failed=lambda queue, outcome: self.housekeeping.tally.add(queue, outcome, clock()),
        )
        self._stop_requested = False

    # -- control -----------------------------------------------------------------------------

    def request_stop(self) -> None:
        """Ask run() to stop claiming and drain; only sets a flag (safe in a signal handler)."""
        self._stop_requested = True

    @property
    def stopping(self) -> bool:
        return self._stop_requested

    @property
    def jobs_finished(self) -> int:
        return self.slots.jobs_finished

    @property
    def needs_replacement(self) -> bool:
        """True once a handler thread overran its timeout: the process should be replaced."""
        return self.slots.needs_replacement

    def describe(self) -> dict[str, Any]:
        """What this consumer's heartbeat says about it (controls.py)."""
        return {
            **identity(),
            "queues": self.queues,
            "paused": sorted(self.housekeeping.paused),  # what it skips, as it last read
            "concurrency": self.concurrency,
            "running": [{"id": s.held.job.id, "task": s.held.job.task} for s in self.slots.active],
            "rss_mb": round(psutil.Process().memory_info().rss / 2**20, 1),
        }

    def active_queues(self) -> list[str]:
        """The consumer's queues that no operator has paused."""
        return self.housekeeping.active_queues()

    def running_tasks(self) -> list[str]:
        """Return the task names of the jobs running now (one per busy slot)."""
        return self.slots.running_tasks()

    def abandoned_threads(self) -> int:
        """Return how many timed-out handler threads are still running."""
        return self.slots.abandoned_threads()

    # -- loop --------------------------------------------------------------------------------

    def run(self) -> None:
        """Claim and run jobs until request_stop(); then drain within stop_timeout_s."""
        while not self._stop_requested:
            now = self.clock()
            self.run_once(now)
            self.wait_for_work(now)
        self.drain(self.stop_timeout_s)

    def run_once(self, now: datetime) -> int:
        """Do one pass at time `now`; return how many jobs it started."""
        self.slots.flush_acks(now)
        self.slots.reap()
        self.slots.tend(now)
        self.housekeeping.run(now)
        if self.abandoned_threads() >= self.max_abandoned:
            self._stop_requested = True  # too many stuck threads: let a fresh process take over
        started = 0
        while self._may_claim(now):
            self.wakeup.begin_claim(now)
            taken = self._claim_some(now)
            self.wakeup.claimed(bool(taken), now)
            if not taken:
                break
            for held in taken:
                self.slots.start(held, now)
            started += len(taken)
        return started

    def wait_for_work(self, now: datetime, max_s: float | None = None) -> None:
        """Sleep until the next pass has something to do (at most `max_s`): a job finished, or a
        claim, heartbeat or timeout is due."""
        limit = self.max_wait_s if max_s is None else max_s
        due = [now + timedelta(seconds=limit)]
        if not self._claims_blocked():
            due.append(self.wakeup.next_claim_at() or now)
        next_slot = self.slots.next_due()
        if next_slot is not None:
            due.append(next_slot)
        self.wakeup.wait(max(0.0, (min(due) - now).total_seconds()))

    def drain(self, timeout_s: float, between_passes: Callable[[], bool] | None = None) -> int:
        """Stop claiming, let running jobs finish within `timeout_s`, release the rest at once;
        return how many were released.

        `between_passes` runs after each pass (a supervisor child reports liveness there);
        returning False ends the wait at once."""
        self._stop_requested = True
        deadline = self.monotonic() + timeout_s
        while True:
            now = self.clock()
            self.run_once(now)
            keep_waiting = between_passes() if between_passes is not None else True
            left = deadline - self.monotonic()
            if not self.slots.active or left <= 0 or not keep_waiting:
                break
            self.wait_for_work(now, max_s=min(left, self.max_wait_s))
        released = self.release_all()
        self.housekeeping.flush()
        self.housekeeping.leave()
        self.wakeup.close()
        return released

    def release_all(self) -> int:
        """Release every running job back to pending now, without counting its attempt."""
        return self.slots.release_all()

    # -- claiming ----------------------------------------------------------------------------

    def _claims_blocked(self) -> bool:
        if self._stop_requested or len(self.slots) >= self.concurrency:
            return True
        if self.slots.suspect_running():
            return True  # a suspect runs alone
        # While a suspect waits, stop taking new work so this consumer drains and can run it
        # (unless stuck threads mean it can never be alone: then leave the suspect to others).
        busy = bool(self.slots.active)
        return self.housekeeping.suspect_waiting and busy and not self.slots.abandoned

    def _may_claim(self, now: datetime) -> bool:
        return not self._claims_blocked() and self.wakeup.claim_due(now)

    def _claim_some(self, now: datetime) -> list[Lease]:
        """Claim for every free slot: in one batch when two or more are free and no suspect
        waits (claim.claim_many), else one job (the single claim also takes suspects)."""
        queues = self.active_queues()
        if not queues:
            return []  # every queue of this consumer is paused
        free = self.concurrency - len(self.slots)
        if free >= 2 and not self.housekeeping.suspect_waiting:
            try:
                taken = self.store.claim_many(self.owner, limit=free, queues=queues, now=now)
            except PyMongoError:
                log.warning("claim failed; backing off", exc_info=True)
                return []
            if taken:
                return taken
        held = self._claim(now, queues)
        return [held] if held is not None else []

    def _claim(self, now: datetime, queues: list[str]) -> Lease | None:
        if self.slots.active or self.slots.abandoned:
            suspects = Suspects.EXCLUDE  # a crash now could be a neighbour's doing
        elif self.housekeeping.suspect_waiting:
            suspects = Suspects.ONLY
        else:
            suspects = Suspects.ALLOW
        try:
            held = self.store.claim(self.owner, queues=queues, now=now, suspects=suspects)
        except PyMongoError:
            log.warning("claim failed; backing off", exc_info=True)
            return None
        if held is None and suspects is Suspects.ONLY:
            self.housekeeping.suspect_waiting = False  # someone else took it (or cancelled it)
            return self._claim(now, queues)
        if held is not None and held.suspect:
            self.housekeeping.suspect_waiting = False
        return held

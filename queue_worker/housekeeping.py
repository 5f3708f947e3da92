"""A consumer's periodic chores: archive the jobs it finished, sweep leftovers, watch for suspects.

archive   succeeded jobs' final documents are buffered and moved to `jobs_done` every
          ARCHIVE_BATCH jobs or ARCHIVE_EVERY_S seconds (archive.py: crash-safe)
controls  every CONTROLS_EVERY_S, which of its queues an operator paused; every WORKER_EVERY_S,
          a heartbeat in `workers` (controls.py)
tally     every FLUSH_EVERY_S, the jobs it finished per minute, queue and outcome (tally.py)
sweep     every SWEEP_EVERY_S, finished jobs another consumer left behind are moved
suspects  every SUSPECT_CHECK_EVERY_S, whether a suspect job (one that crashed a consumer)
          waits in an unpaused queue: the consumer then drains itself so it can run it alone
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime, timedelta

from pymongo.errors import PyMongoError

from queue_worker.controls import CONTROLS_EVERY_S, WORKER_EVERY_S, Controls
from queue_worker.store import Doc, JobStore
from queue_worker.tally import FLUSH_EVERY_S, Tally

log = logging.getLogger(__name__)

ARCHIVE_BATCH = 50
ARCHIVE_EVERY_S = 1.0
SWEEP_EVERY_S = 30.0
SUSPECT_CHECK_EVERY_S = 10.0


class Housekeeping:
    """The chores of one consumer; `run(now)` does whichever are due."""

    def __init__(
        self,
        store: JobStore,
        queues: list[str],
        *,
        owner: str = "",
        describe: Callable[[], Doc] = dict,
    ) -> None:
        self.store = store
        self.queues = queues
        self.owner = owner
        self._describe = describe
        self.controls = Controls(store.db)
        self.paused: set[str] = set()
        self._next_controls: datetime | None = None
        self.tally = Tally()
        self._next_tally: datetime | None = None
        self._next_heartbeat: datetime | None = None
        self.suspect_waiting = False
        self._finished: list[Doc] = []
        self._lock = threading.Lock()
        self._next_archive: datetime | None = None
        self._next_sweep: datetime | None = None
        self._next_suspect_check: datetime | None = None

    def active_queues(self) -> list[str]:
        """The consumer's queues that no operator has paused (as last read)."""
        return [q for q in self.queues if q not in self.paused]

    def add_finished(self, doc: Doc) -> None:
        """Buffer a succeeded job's final document for the archive (called from job threads)."""
        with self._lock:
            self._finished.append(doc)
        self.tally.add(doc["queue"], "succeeded", doc["finished_at"])

    def run(self, now: datetime) -> None:
        """Do the chores that are due at `now`; database errors only postpone them."""
        with self._lock:
            buffered = len(self._finished)
        if buffered >= ARCHIVE_BATCH or (
            buffered and (self._next_archive is None or now >= self._next_archive)
        ):
            self.flush()
            self._next_archive = now + timedelta(seconds=ARCHIVE_EVERY_S)
        try:
            if self._next_controls is None or now >= self._next_controls:
                self._next_controls = now + timedelta(seconds=CONTROLS_EVERY_S)
                self.paused = self.controls.paused(self.queues)
            if self.owner and (self._next_heartbeat is None or now >= self._next_heartbeat):
                self._next_heartbeat = now + timedelta(seconds=WORKER_EVERY_S)
                self.controls.heartbeat(self.owner, self._describe(), now=now)
            if self._next_tally is None or now >= self._next_tally:
                self._next_tally = now + timedelta(seconds=FLUSH_EVERY_S)
                self.tally.flush(self.store.db)
            if self._next_sweep is None or now >= self._next_sweep:
                self._next_sweep = now + timedelta(seconds=SWEEP_EVERY_S)
                self.store.archive_finished()
            if self._next_suspect_check is None or now >= self._next_suspect_check:
                self._next_suspect_check = now + timedelta(seconds=SUSPECT_CHECK_EVERY_S)
                active = self.active_queues()
                # A suspect in a paused queue cannot be claimed: waiting for it would only
                # make this consumer drain for nothing at every check.
                self.suspect_waiting = bool(active) and self.store.suspect_due(active, now=now)
        except PyMongoError:
            log.warning("housekeeping failed; retrying later", exc_info=True)

    def leave(self) -> None:
        """A clean exit: write the last counts; take this consumer out of the registry."""
        try:
            self.tally.flush(self.store.db)
            if self.owner:
                self.controls.gone(self.owner)
        except PyMongoError:
            pass  # the counts are lost; the TTL index forgets the consumer within a minute

    def flush(self) -> None:
        """Archive every buffered document now."""
        with self._lock:
            docs, self._finished = self._finished, []
        if not docs:
            return
        try:
            self.store.archive(docs)
        except PyMongoError:
            # They stay in `jobs` as succeeded; the periodic sweep moves them later.
            log.warning("archiving %d finished jobs failed; the sweep will retry", len(docs))

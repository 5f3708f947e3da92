"""When a consumer claims next: the wake-up seam between "nothing was due" and "look again".

A consumer claims while it has a free slot and its wake-up source says a claim is due. After a
claim that found nothing, the source decides when the next one is due; `wait` sleeps until then
or until someone calls `wake` (a job finished and freed a slot; a new job was announced).

    Wakeup          the protocol the consumer uses
    PollingWakeup   idle claims back off from POLL_MIN_S, doubling, up to poll_max_s
    StreamWakeup    polling, plus a change stream that announces new and retried jobs: a claim
                    is due the moment one appears (or, for a delayed one, at its run_at)

`begin_claim` is called just before each claim query, so news that arrives while a claim runs
is never lost: it makes the next claim due again.

The stream (one per consumer process, on its own thread) watches two kinds of change:
    an insert into `jobs_backlog` in the consumer's queues   a new unkeyed job
    an update of `jobs` that sets state pending              a retry, release or revive
    an update of `jobs` that removes hold_run_at             a new keyed job becomes claimable
(promotions into `jobs` are not announced again: their backlog insert was). A job due later sets
a timer for its run_at. Polling stays underneath, unchanged: it is the fallback when a stream
breaks or the server has none (a standalone mongod), the safety net for what no event announces
(an expired lease to rescue), and every (re)start of the stream is followed by a claim pass, so
no announcement can be lost between a break and the new stream. While the consumer is busy
(its last claim found work) the thread stops reading; the events wait in the stream.
"""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from pymongo.errors import PyMongoError

from queue_worker import metrics
from queue_worker.layout import BACKLOG, JOBS

log = logging.getLogger(__name__)

POLL_MIN_S = 0.01


class Wakeup(Protocol):
    """Decides when the next claim is due and wakes a waiting consumer loop."""

    def claim_due(self, now: datetime) -> bool:
        """Return True if the consumer should claim now (it has a free slot)."""
        ...

    def begin_claim(self, now: datetime) -> None:
        """A claim query starts now: news from here on makes another claim due."""
        ...

    def claimed(self, found: bool, now: datetime) -> None:
        """The claim found a job (claim again at once) or nothing (back off)."""
        ...

    def next_claim_at(self) -> datetime | None:
        """Return when a claim is next due (None: now)."""
        ...

    def wait(self, timeout_s: float) -> None:
        """Sleep up to `timeout_s`, returning early when woken."""
        ...

    def wake(self) -> None:
        """Wake the waiting loop (safe from any thread; not from a signal handler)."""
        ...

    def close(self) -> None:
        """Release whatever the source holds (threads, streams)."""
        ...


class PollingWakeup:
    """Poll: after an empty claim wait POLL_MIN_S, doubling each time, up to `poll_max_s`."""

    def __init__(self, poll_max_s: float, *, min_s: float = POLL_MIN_S) -> None:
        self._min_s = min_s
        self._max_s = max(min_s, poll_max_s)
        self._idle_s = min_s
        self._next: datetime | None = None
        self._event = threading.Event()

    def claim_due(self, now: datetime) -> bool:
        return self._next is None or now >= self._next

    def begin_claim(self, now: datetime) -> None:
        """Nothing to remember: polling hears no news."""

    def claimed(self, found: bool, now: datetime) -> None:
        if found:
            self._idle_s = self._min_s
            self._next = None
            return
        self._next = now + timedelta(seconds=self._idle_s)
        self._idle_s = min(self._idle_s * 2, self._max_s)

    def claim_now(self) -> None:
        """Make a claim due at once and reset the backoff (news of work arrived)."""
        self._idle_s = self._min_s
        self._next = None
        self._event.set()

    def next_claim_at(self) -> datetime | None:
        return self._next

    def wait(self, timeout_s: float) -> None:
        self._event.wait(max(0.0, timeout_s))
        self._event.clear()  # a wake after this is seen by the next wait at once

    def wake(self) -> None:
        self._event.set()

    def close(self) -> None:
        """Nothing to release."""


STREAM_RETRY_S = 1.0
AWAIT_MS = 1000


class StreamWakeup(PollingWakeup):
    """Polling plus change-stream announcements (see the module docstring)."""

    def __init__(
        self,
        db: Any,
        queues: list[str],
        poll_max_s: float,
        *,
        backlog: str,
        jobs: str,
        min_s: float = POLL_MIN_S,
    ) -> None:
        super().__init__(poll_max_s, min_s=min_s)
        self._db = db
        self._queues = list(queues)
        self._backlog, self._jobs = backlog, jobs
        self._lock = threading.Lock()
        self._news = False  # announced since the last claim began
        self._timer: datetime | None = None  # the earliest announced run_at still ahead
        self._idle = threading.Event()  # the last claim found nothing: read the stream
        self._idle.set()
        self._closed = threading.Event()
        self._reason = "poll"
        self.healthy = False
        self._thread = threading.Thread(target=self._watch, name="job-stream", daemon=True)
        self._thread.start()

    # -- the consumer's side -----------------------------------------------------------------

    def claim_due(self, now: datetime) -> bool:
        with self._lock:
            if self._news:
                return True
            if self._timer is not None and now >= self._timer:
                return True
        return super().claim_due(now)

    def begin_claim(self, now: datetime) -> None:
        with self._lock:
            if self._news:
                reason = "stream"
            elif self._timer is not None and now >= self._timer:
                reason, self._timer = "timer", None
            else:
                reason = "poll"
            self._news = False
        if self._idle.is_set():  # a wake-up, not the next claim of a busy streak
            metrics.WAKEUPS.labels(reason).inc()

    def claimed(self, found: bool, now: datetime) -> None:
        super().claimed(found, now)
        if found:
            self._idle.clear()
        else:
            self._idle.set()

    def next_claim_at(self) -> datetime | None:
        with self._lock:
            if self._news:
                return None
            timer = self._timer
        polled = super().next_claim_at()
        if timer is None:
            return polled
        return timer if polled is None else min(timer, polled)

    def close(self) -> None:
        """Stop the stream's thread: it ends within AWAIT_MS (a daemon: never waited for)."""
        self._closed.set()
        self._idle.set()

    # -- the stream's side ---------------------------------------------------------------------

    def announce(self, run_at: datetime | None) -> None:
        """A job appeared that is due at `run_at` (None: now); make a claim due then."""
        now = datetime.now(UTC)
        with self._lock:
            if run_at is None or run_at <= now:
                self._news = True
            elif self._timer is None or run_at < self._timer:
                self._timer = run_at
        self.wake()

    def _pipeline(self) -> list[dict[str, Any]]:
        updated = "updateDescription.updatedFields"
        return [
            {
                "$match": {
                    "$or": [
                        {
                            "ns.coll": self._backlog,
                            "operationType": "insert",
                            "fullDocument.queue": {"$in": self._queues},
                        },
                        {
                            "ns.coll": self._jobs,
                            "operationType": "update",
                            "$or": [
                                {f"{updated}.state": "pending"},
                                {"updateDescription.removedFields": "hold_run_at"},
                            ],
                        },
                    ]
                }
            },
            {"$project": {"operationType": 1, "fullDocument.run_at": 1, f"{updated}.run_at": 1}},
        ]

    def _watch(self) -> None:
        opened = False
        while not self._closed.is_set():
            try:
                with self._db.watch(self._pipeline(), max_await_time_ms=AWAIT_MS) as stream:
                    self.healthy = True
                    metrics.STREAM_STARTS.labels("restart" if opened else "first").inc()
                    opened = True
                    self.announce(None)  # whatever happened before the stream: claim once
                    while not self._closed.is_set():
                        self._idle.wait()
                        change = stream.try_next()
                        if change is not None:
                            self.announce(_run_at(change))
            except PyMongoError as exc:
                self.healthy = False
                log.info("job stream broke (%s); polling until it is back", type(exc).__name__)
                self._closed.wait(STREAM_RETRY_S)
            except Exception:  # noqa: BLE001 - a bug here must not kill wake-ups silently
                self.healthy = False
                log.exception("job stream failed; polling until it is back")
                self._closed.wait(STREAM_RETRY_S)
        self.healthy = False


def _run_at(change: dict[str, Any]) -> datetime | None:
    if change.get("operationType") == "insert":
        value = (change.get("fullDocument") or {}).get("run_at")
    else:
        value = ((change.get("updateDescription") or {}).get("updatedFields") or {}).get("run_at")
    return value if isinstance(value, datetime) else None


def for_consumer(db: Any, queues: list[str], settings: Any) -> Wakeup:
    """Return the wake-up source QUEUE_WAKEUP names for a consumer of `queues`."""
    if settings.wakeup == "poll":
        return PollingWakeup(settings.poll_max_s)
    return StreamWakeup(db, queues, settings.poll_max_s, backlog=BACKLOG, jobs=JOBS)

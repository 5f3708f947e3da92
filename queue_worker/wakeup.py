"""When a consumer claims next: the wake-up seam between "nothing was due" and "look again".

A consumer claims while it has a free slot and its wake-up source says a claim is due. After a
claim that found nothing, the source decides when the next one is due; `wait` sleeps until then
or until someone calls `wake` (a job finished and freed a slot; a new job was announced).

    Wakeup          the protocol the consumer uses
    PollingWakeup   idle claims back off from POLL_MIN_S, doubling, up to poll_max_s

A source that hears about new jobs (a change stream, issue #15's) plugs in here: it marks a claim
due and wakes the loop, and keeps polling as its fallback. `begin_claim` is called just before
each claim query, so news that arrives while a claim runs is never lost: it makes the next
claim due again.
"""

from __future__ import annotations

import threading
from datetime import datetime, timedelta
from typing import Protocol

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

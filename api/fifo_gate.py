"""A first-come, first-served limit on concurrent work: `FifoGate`.

Why it exists: under load, a gevent worker's greenlets queue for the database in places that
are not fair. pymongo's pool hands out connections through a `threading.Condition`; under
gevent its `notify` yields to the hub while holding the pool lock (a failed non-blocking
acquire in `Condition._is_owned` sleeps), so checkouts and checkins form a convoy, and a waiter
woken from the condition re-queues at the back. A server that runs one thread per connection
(our local SecantusDB, which also serialises on the GIL) serves concurrent requests in no
particular order either. The result is a median near the fair share but a tail many times
it: some requests lose the race again and again. Measured with wrk at 50 connections (2
workers, local server, 2 cores): p50 20-27 ms and p99 257-318 ms without a gate; with at most
4 operations per worker at the database and the rest admitted in arrival order, p99 50-57 ms
(p50 ~30 ms, req/s ~12% lower; api/gevent_compat.py and the verified-token cache in
api/auth/tokens/codec.py win that back: p99 43-58 ms at 1,590-1,890 req/s with all three).

The gate admits at most `slots` holders; later arrivals wait in a queue and a released slot is
handed directly to the oldest waiter, so nobody can overtake it. It uses `threading` primitives
only: under gevent's monkey-patching they are greenlet-aware, and no lock is held across a wait,
so the gate itself never yields while holding anything.
"""

from __future__ import annotations

import threading
from collections import deque


class FifoGate:
    """Admit at most `slots` holders at once, strictly in arrival order."""

    def __init__(self, slots: int) -> None:
        if slots < 1:
            raise ValueError("a gate needs at least one slot")
        self._slots = slots
        self._free = slots
        self._waiters: deque[threading.Event] = deque()
        self._lock = threading.Lock()

    @property
    def slots(self) -> int:
        return self._slots

    @property
    def waiting(self) -> int:
        """Return how many callers are queued for a slot right now."""
        return len(self._waiters)

    def acquire(self, timeout_s: float) -> bool:
        """Take a slot, waiting at most `timeout_s` behind earlier callers; False on timeout."""
        with self._lock:
            if self._free > 0 and not self._waiters:
                self._free -= 1
                return True
            turn = threading.Event()
            self._waiters.append(turn)
        try:
            if turn.wait(max(0.0, timeout_s)):
                return True
        except BaseException:
            # Killed while waiting (a greenlet kill, a timeout): never strand a handed-over slot.
            if self._abandon(turn):
                self.release()
            raise
        return self._abandon(turn)

    def release(self) -> None:
        """Give the slot to the oldest waiter, or back to the gate when nobody waits."""
        with self._lock:
            if self._waiters:
                # Handed over, not freed: a caller arriving now cannot take it first.
                self._waiters.popleft().set()
            else:
                self._free += 1

    def _abandon(self, turn: threading.Event) -> bool:
        """Leave the queue; return True if the slot was handed over just before leaving."""
        with self._lock:
            if not turn.is_set():
                self._waiters.remove(turn)
                return False
        return True

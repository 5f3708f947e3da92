"""A consumer waiting on the database is waiting, not stuck: it must not be killed as hung.

Two ways a consumer's loop waits on the database, and both keep its liveness fresh through a
small reporter thread (it needs the GIL like the loop does, so a child stuck in C code holding
the GIL still stops reporting, database or not):

- an outage the driver has noticed: pymongo's monitor publishes a heartbeat event per server
  check, and while the last one failed the reporter reports (a failover, a refused connection);
- a stall it has not: the database accepts connections but does not answer (a frozen server, a
  full disk, a long election). The loop is then inside a command, or getting a connection for
  one (a new connection's handshake waits too); listeners count what the loop's own thread has
  in flight, and while anything is, the reporter reports.
  Every queue operation has a deadline (QUEUE_DB_TIMEOUT_S), so this lasts at most that long
  per command: the loop comes back, fails its operation, and goes on.

So the master kills a consumer for hanging only when its loop is stuck outside the database;
it never kills one (and so never blames the jobs it held) because the database stalled.
"""

from __future__ import annotations

import threading
import time

from pymongo import monitoring

from supervisor.liveness import LivenessLink

REPORT_EVERY_S = 1.0


class DatabaseHealth(monitoring.ServerHeartbeatListener):
    """Remember whether the last server check of this process failed."""

    def __init__(self) -> None:
        self.down = False

    def started(self, event: monitoring.ServerHeartbeatStartedEvent) -> None:
        """Nothing: only outcomes matter."""

    def succeeded(self, event: monitoring.ServerHeartbeatSucceededEvent) -> None:
        self.down = False

    def failed(self, event: monitoring.ServerHeartbeatFailedEvent) -> None:
        self.down = True


class LoopWaits:
    """Count what one thread (the consumer's loop) waits on the database for right now:
    connection checkouts (which include opening and handshaking a connection) and commands."""

    def __init__(self, thread_id: int) -> None:
        self._thread_id = thread_id
        self.in_flight = 0

    def begin(self) -> None:
        if threading.get_ident() == self._thread_id:
            self.in_flight += 1

    def end(self) -> None:
        if threading.get_ident() == self._thread_id and self.in_flight > 0:
            self.in_flight -= 1


class _CommandWaits(monitoring.CommandListener):
    def __init__(self, waits: LoopWaits) -> None:
        self._waits = waits

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        self._waits.begin()

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        self._waits.end()

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        self._waits.end()


class _CheckoutWaits(monitoring.ConnectionPoolListener):
    """Only checkouts matter; every other pool event is ignored."""

    def __init__(self, waits: LoopWaits) -> None:
        self._waits = waits

    def connection_check_out_started(
        self, event: monitoring.ConnectionCheckOutStartedEvent
    ) -> None:
        self._waits.begin()

    def connection_checked_out(self, event: monitoring.ConnectionCheckedOutEvent) -> None:
        self._waits.end()

    def connection_check_out_failed(self, event: monitoring.ConnectionCheckOutFailedEvent) -> None:
        self._waits.end()

    def pool_created(self, event: monitoring.PoolCreatedEvent) -> None: ...
    def pool_ready(self, event: monitoring.PoolReadyEvent) -> None: ...
    def pool_cleared(self, event: monitoring.PoolClearedEvent) -> None: ...
    def pool_closed(self, event: monitoring.PoolClosedEvent) -> None: ...
    def connection_created(self, event: monitoring.ConnectionCreatedEvent) -> None: ...
    def connection_ready(self, event: monitoring.ConnectionReadyEvent) -> None: ...
    def connection_closed(self, event: monitoring.ConnectionClosedEvent) -> None: ...
    def connection_checked_in(self, event: monitoring.ConnectionCheckedInEvent) -> None: ...


def watch_for_outages(liveness: LivenessLink) -> tuple[DatabaseHealth, LoopWaits]:
    """Register the listeners (before any client exists; the calling thread is the loop's) and
    start the reporter thread."""
    health = DatabaseHealth()
    waits = LoopWaits(threading.get_ident())
    monitoring.register(health)
    monitoring.register(_CommandWaits(waits))
    monitoring.register(_CheckoutWaits(waits))

    def report_while_waiting() -> None:
        while True:
            time.sleep(REPORT_EVERY_S)
            if health.down or waits.in_flight:
                liveness.notify()

    threading.Thread(target=report_while_waiting, name="outage-liveness", daemon=True).start()
    return health, waits

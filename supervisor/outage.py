"""Database outages must not look like hangs: a consumer blocked on an unreachable server is
waiting, not stuck.

pymongo's monitor thread publishes a heartbeat event per server check. While the last check
failed, a small thread in the consumer child keeps reporting liveness for it, so the master does
not abort every consumer (and record a crash on every job they held) during a failover. The
thread needs the GIL like the loop does, so a child stuck in C code holding the GIL still stops
reporting, outage or not.
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


def watch_for_outages(liveness: LivenessLink) -> DatabaseHealth:
    """Register the heartbeat listener (before any client exists) and start the reporter."""
    health = DatabaseHealth()
    monitoring.register(health)

    def report_while_down() -> None:
        while True:
            time.sleep(REPORT_EVERY_S)
            if health.down:
                liveness.notify()

    threading.Thread(target=report_while_down, name="outage-liveness", daemon=True).start()
    return health

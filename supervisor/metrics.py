"""Every metric the supervisor exports.

The master updates the gauges and counters below; in multiprocess mode (PROMETHEUS_MULTIPROC_DIR,
set by `__main__` before this module is imported) they land in mmap files next to the children's
queue counters, and the exporter child aggregates them all. `QueueStatsCollector` reads queue
depth from the database at scrape time, inside the exporter child only.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from prometheus_client import Counter, Gauge
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

log = logging.getLogger("supervisor.exporter")

# Only the master writes these gauges, so a live-process sum is its value.
CONSUMERS_ALIVE = Gauge(
    "supervisor_consumers_alive",
    "Consumer processes currently running.",
    multiprocess_mode="livesum",
)
CONSUMERS_DESIRED = Gauge(
    "supervisor_consumers_desired",
    "Consumer processes the master is trying to keep running.",
    multiprocess_mode="livesum",
)
CRASH_LOOPING_SLOTS = Gauge(
    "supervisor_crash_looping_slots",
    "Consumer slots no longer respawned because they crash-looped.",
    multiprocess_mode="livesum",
)
RESTARTS = Counter(
    "supervisor_restarts",
    "Consumers replaced, by reason (reasons.RestartReason).",
    ["reason"],
)


@dataclass(frozen=True)
class QueueStats:
    """One database reading: jobs per (queue, state) and the oldest due job's age per queue."""

    depth: dict[tuple[str, str], int] = field(default_factory=dict)
    oldest_due_age_s: dict[str, float] = field(default_factory=dict)


class StatsUnavailable(Exception):
    """The database did not answer the stats read (the exporter turns driver errors into this)."""


class QueueStatsCollector(Collector):
    """Read queue depth at scrape time; never raise, report success as queue_stats_up.

    A database that does not answer is an outage (a warning); anything else the read raises is a
    bug in our code (an error with its traceback), so a code error never passes for an outage.
    Both are logged at most once per LOG_EVERY_S, since Prometheus scrapes every few seconds."""

    LOG_EVERY_S = 60.0

    def __init__(
        self, read: Callable[[], QueueStats], clock: Callable[[], float] = time.perf_counter
    ) -> None:
        self._read = read
        self._clock = clock
        self._last_log: dict[str, float] = {}

    def collect(self) -> Iterator[GaugeMetricFamily]:
        """Yield depth, oldest-due age, up and scrape duration for one scrape."""
        started = self._clock()
        stats: QueueStats | None = None
        try:
            stats = self._read()
        except StatsUnavailable as exc:
            if self._may_log("outage", started):
                log.warning("queue stats unavailable: %s", exc)
        except Exception:  # noqa: BLE001 - a scrape must never fail; queue_stats_up says so
            if self._may_log("bug", started):
                log.exception("reading queue stats failed (a bug, not an outage)")
        elapsed = self._clock() - started
        if stats is not None:
            depth = GaugeMetricFamily(
                "queue_depth", "Jobs in the database by queue and state.", labels=["queue", "state"]
            )
            for (queue, state), count in sorted(stats.depth.items()):
                depth.add_metric([queue, state], count)
            yield depth
            oldest = GaugeMetricFamily(
                "queue_oldest_due_job_age_seconds",
                "Seconds since the oldest pending, due job became due.",
                labels=["queue"],
            )
            for queue, age in sorted(stats.oldest_due_age_s.items()):
                oldest.add_metric([queue], age)
            yield oldest
        yield GaugeMetricFamily(
            "queue_stats_up",
            "1 if the last scrape read the database, else 0.",
            value=1 if stats is not None else 0,
        )
        yield GaugeMetricFamily(
            "queue_stats_scrape_seconds",
            "Seconds the last scrape spent reading the database.",
            value=elapsed,
        )

    def _may_log(self, kind: str, now: float) -> bool:
        last = self._last_log.get(kind)
        if last is not None and now - last < self.LOG_EVERY_S:
            return False
        self._last_log[kind] = now
        return True

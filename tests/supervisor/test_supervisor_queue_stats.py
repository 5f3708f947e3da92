"""The scrape-time queue stats collector: correct families, and never an exception."""

from __future__ import annotations

import logging

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from pymongo import MongoClient

from queue_worker import JobStore, QueueSettings
from supervisor.exporter import read_queue_stats
from supervisor.metrics import QueueStats, QueueStatsCollector, StatsUnavailable


def render(collector: QueueStatsCollector) -> str:
    registry = CollectorRegistry()
    registry.register(collector)
    return generate_latest(registry).decode()


def test_depth_and_oldest_age_are_exported_per_queue_and_state() -> None:
    """Each (queue, state) count and each queue's oldest due age becomes one sample."""
    stats = QueueStats(
        depth={("default", "pending"): 3, ("mail", "dead"): 1},
        oldest_due_age_s={"default": 12.5, "mail": 0.0},
    )
    text = render(QueueStatsCollector(lambda: stats))
    assert 'queue_depth{queue="default",state="pending"} 3.0' in text
    assert 'queue_depth{queue="mail",state="dead"} 1.0' in text
    assert 'queue_oldest_due_job_age_seconds{queue="default"} 12.5' in text
    assert "queue_stats_up 1.0" in text


def test_a_failing_database_read_reports_down_instead_of_failing_the_scrape() -> None:
    """When the read raises, the scrape still succeeds with queue_stats_up 0 and no depth."""

    def broken() -> QueueStats:
        raise TimeoutError("server selection timed out")

    text = render(QueueStatsCollector(broken))
    assert "queue_stats_up 0.0" in text
    assert "queue_depth{" not in text
    assert "queue_stats_scrape_seconds" in text


def test_an_outage_is_a_warning_and_a_bug_is_an_error_with_its_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The database not answering is logged as an outage; any other exception is logged as a
    bug with its traceback, so a code error never passes for an outage. Each kind is logged at
    most once per LOG_EVERY_S, however often Prometheus scrapes."""
    now = [0.0]

    def outage() -> QueueStats:
        raise StatsUnavailable("ServerSelectionTimeoutError")

    def bug() -> QueueStats:
        raise KeyError("queue")

    with caplog.at_level(logging.WARNING, logger="supervisor.exporter"):
        for read in (outage, outage, bug, bug):
            assert "queue_stats_up 0.0" in render(QueueStatsCollector(read, clock=lambda: now[0]))
    records = [(r.levelname, r.exc_info is not None) for r in caplog.records]
    assert records == [("WARNING", False), ("WARNING", False), ("ERROR", True), ("ERROR", True)]
    caplog.clear()
    collector = QueueStatsCollector(bug, clock=lambda: now[0])
    with caplog.at_level(logging.WARNING, logger="supervisor.exporter"):
        render(collector)
        now[0] += QueueStatsCollector.LOG_EVERY_S / 2
        render(collector)
        now[0] += QueueStatsCollector.LOG_EVERY_S
        render(collector)
    assert len(caplog.records) == 2


def test_the_exporter_turns_driver_errors_into_an_outage() -> None:
    """read_queue_stats raises StatsUnavailable when the server does not answer."""
    dead: MongoClient[dict[str, object]] = MongoClient(
        "mongodb://127.0.0.1:1/?directConnection=true", serverSelectionTimeoutMS=100
    )
    store = JobStore(dead["app"], QueueSettings())
    with pytest.raises(StatsUnavailable):
        read_queue_stats(store)
    dead.close()

"""The scrape-time queue stats collector: correct families, and never an exception."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest

from supervisor.metrics import QueueStats, QueueStatsCollector


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

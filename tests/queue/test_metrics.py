"""The queue's metrics are exactly the catalogue's names, types and labels."""

from __future__ import annotations

from prometheus_client.metrics import MetricWrapperBase

from queue_worker import metrics

CATALOGUE = {
    "queue_jobs_enqueued_total": ("counter", ("queue", "task")),
    "queue_jobs_started_total": ("counter", ("queue", "task")),
    "queue_jobs_succeeded_total": ("counter", ("queue", "task")),
    "queue_jobs_failed_total": ("counter", ("queue", "task")),
    "queue_jobs_dead_total": ("counter", ("queue", "task", "reason")),
    "queue_jobs_cancelled_total": ("counter", ("queue", "task")),
    "queue_job_run_seconds": ("histogram", ("queue", "task")),
    "queue_job_wait_seconds": ("histogram", ("queue", "task")),
    "queue_leases_lost_total": ("counter", ("queue", "task")),
    "queue_jobs_rescued_total": ("counter", ("queue", "task")),
    "queue_jobs_released_total": ("counter", ("queue", "reason")),
    "queue_jobs_poison_total": ("counter", ("queue", "task")),
    "queue_jobs_promoted_total": ("counter", ("queue",)),
    "queue_promotions_total": ("counter", ("result",)),
    "queue_jobs_expired_total": ("counter", ("queue", "task")),
    "queue_schedule_ticks_total": ("counter", ("schedule", "outcome")),
    "queue_schedule_enqueue_lag_seconds": ("histogram", ("schedule",)),
    "queue_schedule_last_success_timestamp_seconds": ("gauge", ("schedule",)),
    "queue_schedule_interval_seconds": ("gauge", ("schedule",)),
    "queue_wakeups_total": ("counter", ("source",)),
    "queue_job_stream_starts_total": ("counter", ("kind",)),
    "mongodb_commands_total": ("counter", ("command",)),
}


def test_metrics_module_defines_exactly_the_catalogue() -> None:
    """Every catalogue metric exists with its type and labels, and nothing else is defined."""
    found = {}
    for value in vars(metrics).values():
        if isinstance(value, MetricWrapperBase):
            family = value.describe()[0]
            name = family.name + ("_total" if family.type == "counter" else "")
            found[name] = (family.type, tuple(value._labelnames))
    assert found == CATALOGUE

"""Every metric the queue library records (names from the project's metrics catalogue).

Plain prometheus_client objects in the default registry; multiprocess mode, when wanted, is
configured by the entry point (PROMETHEUS_MULTIPROC_DIR) before this module is imported.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

_JOB = ("queue", "task")

JOBS_ENQUEUED = Counter("queue_jobs_enqueued_total", "Jobs accepted by enqueue.", _JOB)
JOBS_STARTED = Counter("queue_jobs_started_total", "Jobs claimed and started by a consumer.", _JOB)
JOBS_SUCCEEDED = Counter("queue_jobs_succeeded_total", "Jobs whose handler returned.", _JOB)
JOBS_FAILED = Counter(
    "queue_jobs_failed_total", "Failed attempts that will be retried after a backoff.", _JOB
)
JOBS_DEAD = Counter(
    "queue_jobs_dead_total", "Jobs that went dead (reason: exhausted|non_retryable|poison).",
    (*_JOB, "reason"),
)  # fmt: skip
JOBS_CANCELLED = Counter("queue_jobs_cancelled_total", "Pending jobs cancelled.", _JOB)
JOBS_EXPIRED = Counter(
    "queue_jobs_expired_total",
    "Jobs claimed after their start_by time and cancelled without running.",
    _JOB,
)
JOB_RUN_SECONDS = Histogram(
    "queue_job_run_seconds", "Handler run time of finished attempts.", _JOB,
    buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900),
)  # fmt: skip
JOB_WAIT_SECONDS = Histogram(
    "queue_job_wait_seconds", "Time from a job's due time (run_at) to its start.", _JOB,
    buckets=(0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600),
)  # fmt: skip
LEASES_LOST = Counter(
    "queue_leases_lost_total",
    "Writes fenced off because the worker no longer held the lease.",
    _JOB,
)
JOBS_RESCUED = Counter(
    "queue_jobs_rescued_total", "Jobs claimed again after their lease expired.", _JOB
)
RELEASE_REASONS = ("shutdown", "crash", "hang")
"""Why running jobs go back to pending at once: a consumer stopping (shutdown), or its death as
its supervisor judged it (supervisor.reasons.DeathCause). A timed-out job is a failed attempt."""
JOBS_RELEASED = Counter(
    "queue_jobs_released_total",
    f"Running jobs given back to pending (reason: {'|'.join(RELEASE_REASONS)}).",
    ("queue", "reason"),
)
JOBS_POISON = Counter(
    "queue_jobs_poison_total", "Jobs buried as poison after crashing consumers repeatedly.", _JOB
)
JOBS_PROMOTED = Counter(
    "queue_jobs_promoted_total", "New jobs moved from the backlog into the claimed collection.",
    ("queue",),
)  # fmt: skip
PROMOTIONS = Counter(
    "queue_promotions_total",
    "Promotion attempts that moved a batch (result=moved) or found it held by another "
    "promoter's transaction (result=conflict); dead promoters' transactions aborted "
    "(result=aborted_stale).",
    ("result",),
)

_SCHEDULE = ("schedule",)
SCHEDULE_TICKS = Counter(
    "queue_schedule_ticks_total",
    "Ticks of periodic schedules by what the scheduler did: enqueued, duplicate (another "
    "scheduler had enqueued it), skipped_overlap, missed, paused.",
    ("schedule", "outcome"),
)
SCHEDULE_LAG = Histogram(
    "queue_schedule_enqueue_lag_seconds",
    "Time from a tick to the enqueue of its job.",
    _SCHEDULE,
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 15.0, 60.0, 300.0),
)
SCHEDULE_LAST_SUCCESS = Gauge(
    "queue_schedule_last_success_timestamp_seconds",
    "When a job of the schedule last succeeded (Unix time; its creation until then).",
    _SCHEDULE,
    multiprocess_mode="max",
)
SCHEDULE_INTERVAL = Gauge(
    "queue_schedule_interval_seconds",
    "The schedule's interval (for cron: the shortest gap between its next ticks).",
    _SCHEDULE,
    multiprocess_mode="max",
)

WAKEUPS = Counter(
    "queue_wakeups_total",
    "Idle consumers' claims by what made them due: stream (a change stream announced a job), "
    "timer (an announced job's run_at came), poll (the polling back-off).",
    ("source",),
)
STREAM_STARTS = Counter(
    "queue_job_stream_starts_total",
    "Change streams consumers opened to hear of new jobs: kind=first per process, kind=restart "
    "after a stream broke.",
    ("kind",),
)
DB_COMMANDS = Counter(
    "mongodb_commands_total",
    "Database commands this process sent (pymongo command monitoring), by command name.",
    ("command",),
)

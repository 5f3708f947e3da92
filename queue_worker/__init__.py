"""queue_worker: a durable MongoDB job queue with leases, retries and crash attribution.

The public API (docs/queue.md): settings, the store, the consumer, the task registry and its
resources, the job model and the errors. The process-wide plumbing that the gunicorn and
supervisor masters need (settings parsing, multiprocess metric files) lives in `runtime`, so
those masters never import this package, nor pymongo.
"""

from __future__ import annotations

from queue_worker.connection import connect, database, owner_id
from queue_worker.consumer import EXIT_NEEDS_REPLACEMENT, Consumer
from queue_worker.errors import (
    ConfigError,
    InvalidJobError,
    InvalidTransitionError,
    JobNotFoundError,
    NonRetryableError,
    QueueError,
    RetryAfter,
    UnknownTaskError,
)
from queue_worker.job import CrashInfo, DeadReason, Job, JobState, Transition
from queue_worker.schedules import Schedule, schedule
from queue_worker.settings import QueueSettings
from queue_worker.slots import JobContext
from queue_worker.store import EnqueueRequest, JobStore, utcnow
from queue_worker.tasks import (
    DATABASE,
    Resource,
    Resources,
    ResourceSetup,
    TaskContext,
    TaskRegistry,
    TaskSpec,
    load_task_modules,
    open_resources,
    registry,
    task,
)

__all__ = [
    "DATABASE",
    "EXIT_NEEDS_REPLACEMENT",
    "ConfigError",
    "Consumer",
    "CrashInfo",
    "DeadReason",
    "EnqueueRequest",
    "InvalidJobError",
    "InvalidTransitionError",
    "Job",
    "JobContext",
    "JobNotFoundError",
    "JobState",
    "JobStore",
    "NonRetryableError",
    "QueueError",
    "QueueSettings",
    "Resource",
    "ResourceSetup",
    "Resources",
    "RetryAfter",
    "Schedule",
    "TaskContext",
    "TaskRegistry",
    "TaskSpec",
    "Transition",
    "UnknownTaskError",
    "connect",
    "database",
    "load_task_modules",
    "open_resources",
    "owner_id",
    "registry",
    "schedule",
    "task",
    "utcnow",
]

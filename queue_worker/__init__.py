"""queue_worker: a durable MongoDB job queue with leases, retries and crash attribution.

Public API (see the README's queue section): QueueSettings, connect, database, JobStore,
EnqueueRequest, Consumer, owner_id, Job, JobState, DeadReason, CrashInfo, task, registry,
TaskRegistry, and the errors in errors.py.
"""

from __future__ import annotations

from queue_worker.consumer import EXIT_NEEDS_REPLACEMENT, Consumer, JobContext
from queue_worker.errors import (
    ConfigError,
    InvalidJobError,
    InvalidTransitionError,
    JobNotFoundError,
    NonRetryableError,
    QueueError,
    UnknownTaskError,
)
from queue_worker.job import CrashInfo, DeadReason, Job, JobState, Transition
from queue_worker.settings import QueueSettings
from queue_worker.store import EnqueueRequest, JobStore, connect, database, owner_id, utcnow
from queue_worker.tasks import (
    TaskContext,
    TaskRegistry,
    TaskSpec,
    load_task_modules,
    registry,
    task,
)

__all__ = [
    "EXIT_NEEDS_REPLACEMENT",
    "ConfigError",
    "Consumer",
    "CrashInfo",
    "DeadReason",
    "EnqueueRequest",
    "InvalidJobError",
    "InvalidTransitionError",
    "Job",
    "JobNotFoundError",
    "JobContext",
    "JobState",
    "JobStore",
    "NonRetryableError",
    "QueueError",
    "QueueSettings",
    "TaskContext",
    "TaskRegistry",
    "TaskSpec",
    "Transition",
    "UnknownTaskError",
    "connect",
    "database",
    "load_task_modules",
    "owner_id",
    "registry",
    "task",
    "utcnow",
]

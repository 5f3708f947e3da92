"""queue_worker: a durable MongoDB job queue with leases, retries and crash attribution.

Public API (see the README's queue section): QueueSettings, connect, database, JobStore,
EnqueueRequest, Consumer, owner_id, Job, JobState, DeadReason, CrashInfo, task, registry,
TaskRegistry, and the errors in errors.py.

The names load on first use (PEP 562), so importing one light submodule, as the gunicorn and
supervisor masters do with `queue_worker.metrics_files`, does not load pymongo there. Loaded in
gunicorn's master, pymongo's `ssl` imports would escape gevent's monkey-patching in the workers.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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

_MODULE_OF = {
    "EXIT_NEEDS_REPLACEMENT": "consumer", "Consumer": "consumer", "JobContext": "consumer",
    "ConfigError": "errors", "InvalidJobError": "errors", "InvalidTransitionError": "errors",
    "JobNotFoundError": "errors", "NonRetryableError": "errors", "QueueError": "errors",
    "UnknownTaskError": "errors",
    "CrashInfo": "job", "DeadReason": "job", "Job": "job", "JobState": "job", "Transition": "job",
    "QueueSettings": "settings",
    "EnqueueRequest": "store", "JobStore": "store", "connect": "store", "database": "store",
    "owner_id": "store", "utcnow": "store",
    "TaskContext": "tasks", "TaskRegistry": "tasks", "TaskSpec": "tasks",
    "load_task_modules": "tasks", "registry": "tasks", "task": "tasks",
}  # fmt: skip


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module 'queue_worker' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"queue_worker.{module}"), name)
    globals()[name] = value
    return value

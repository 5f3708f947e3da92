"""The library's own tasks, and `load_tasks`, which every entry point uses to fill its registry.

The library ships no product tasks: those live in the modules QUEUE_TASK_MODULES names. The
benchmark tasks (`bench.*`) are not registered by importing anything: an entry point calls
`register_bench_tasks(registry)` only when `settings.enable_bench_tasks` is set, so a production
worker can never run a task whose job is to crash it.
"""

from __future__ import annotations

from queue_worker.builtin.bench import BENCH_TASKS, register_bench_tasks
from queue_worker.settings import QueueSettings
from queue_worker.tasks import TaskRegistry, load_task_modules, registry


def load_tasks(settings: QueueSettings) -> TaskRegistry:
    """Import the configured task modules, add the bench tasks if enabled; return the default
    registry, which both fill (a module's `@task` always registers there).

    Every entry point that runs or enqueues jobs calls this once (the CLI, the supervisor's
    consumer processes, the API), so all of them see the same task names and defaults.
    """
    load_task_modules(settings.task_modules)
    if settings.enable_bench_tasks:
        register_bench_tasks(registry)
    return registry


__all__ = ["BENCH_TASKS", "load_tasks", "register_bench_tasks"]

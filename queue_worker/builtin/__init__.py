"""The built-in tasks: importing this package registers `user.created` and `user.login`.

The benchmark tasks (`bench.*`) are not registered by importing anything: an entry point calls
`register_bench_tasks(registry)` only when `settings.enable_bench_tasks` is set, so a production
worker can never run a task whose job is to crash it.
"""

from __future__ import annotations

from queue_worker.builtin import users
from queue_worker.builtin.bench import BENCH_TASKS, register_bench_tasks

__all__ = ["BENCH_TASKS", "register_bench_tasks", "users"]

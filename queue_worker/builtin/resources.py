"""How a built-in handler reaches the database and settings: through its TaskContext.

The consumer's context object carries `db` (the queue's pymongo Database) and `settings` (the
QueueSettings the process runs with). `TaskContext` in tasks.py only promises job_id, attempt,
lease_token and should_stop(); these helpers read the two extra attributes and fail with a clear
message when a consumer does not provide them, instead of an AttributeError deep in a handler.
"""

from __future__ import annotations

from typing import Any

from pymongo.database import Database

from queue_worker.errors import ConfigError
from queue_worker.settings import QueueSettings
from queue_worker.tasks import TaskContext


def task_db(ctx: TaskContext) -> Database[Any]:
    """Return the database the running job's consumer uses."""
    db = getattr(ctx, "db", None)
    if not isinstance(db, Database):
        raise ConfigError("this task needs TaskContext.db (the consumer must provide it)")
    return db


def task_settings(ctx: TaskContext) -> QueueSettings:
    """Return the QueueSettings of the running job's consumer."""
    settings = getattr(ctx, "settings", None)
    if not isinstance(settings, QueueSettings):
        raise ConfigError("this task needs TaskContext.settings (the consumer must provide it)")
    return settings

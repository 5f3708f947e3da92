"""Build the queue library's objects inside a child process, after the fork.

Only children import this module (and through it `queue_worker` and pymongo), so the master
stays free of database clients and each new child imports the current code: SIGHUP picks up a
deploy's new task code.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping

from pymongo import MongoClient
from pymongo.errors import PyMongoError

from queue_worker.connection import connect, database
from queue_worker.settings import QueueSettings
from queue_worker.store import JobStore
from queue_worker.tasks import registry


def queue_settings(env: Mapping[str, str] | None = None) -> QueueSettings:
    """Read the queue settings from the environment (raises ConfigError)."""
    return QueueSettings.from_env(os.environ if env is None else env)


def open_store(
    settings: QueueSettings, app_name: str, *, timeout_ms: int = 5000, pool: int = 10
) -> tuple[MongoClient[dict[str, object]], JobStore]:
    """Create a client (lazily connecting) and the job store on it."""
    client = connect(settings, app_name=app_name, max_pool_size=pool, timeout_ms=timeout_ms)
    return client, JobStore(database(client, settings), settings, registry=registry)


def wait_for_database(client: MongoClient[dict[str, object]], wait_s: float) -> None:
    """Ping until the server answers; raise the last PyMongoError after `wait_s` seconds."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            client.admin.command("ping")
            return
        except PyMongoError:
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.25)

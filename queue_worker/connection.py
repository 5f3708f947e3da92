"""How a process reaches the database, and how it names itself as a lease owner.

Clients are not fork-safe: every process creates its own, after the fork (the supervisor's
children, each gunicorn worker through api/wsgi.py).
"""

from __future__ import annotations

import os
import socket
from datetime import UTC
from typing import Any

from pymongo import MongoClient, monitoring
from pymongo.database import Database

from queue_worker import metrics
from queue_worker.settings import QueueSettings

Doc = dict[str, Any]


def owner_id(pid: int | None = None) -> str:
    """Return the lease owner name of a consumer process: host and pid."""
    return f"{socket.gethostname()}:{pid or os.getpid()}"


class CommandCounter(monitoring.CommandListener):
    """Count the commands a client sends (mongodb_commands_total{command}): round trips are
    what a job or a request costs the database, and what the benchmarks report."""

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        metrics.DB_COMMANDS.labels(event.command_name).inc()

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        """Counted when started."""

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        """Counted when started."""


COMMAND_COUNTER = CommandCounter()


def connect(
    settings: QueueSettings,
    *,
    app_name: str,
    max_pool_size: int = 10,
    timeout_ms: int = 5000,
    operation_timeout_ms: int | None = None,
) -> MongoClient[Doc]:
    """Create a client for the settings' URI (tz-aware UTC datetimes); create it after forking.
    The one place a client's options are chosen: every process of every role connects here.

    Every operation has a deadline (`timeoutMS`: `operation_timeout_ms`, by default
    QUEUE_DB_TIMEOUT_S; pymongo's client-side operation timeout covers server selection,
    connection checkout and the command itself): a stalled database makes an operation fail,
    never hang, so a consumer's loop (and an API request) always comes back."""
    if operation_timeout_ms is None:
        operation_timeout_ms = int(settings.db_timeout_s * 1000)
    return MongoClient(
        settings.mongodb_uri,
        tz_aware=True,
        tzinfo=UTC,
        appname=app_name,
        maxPoolSize=max_pool_size,
        serverSelectionTimeoutMS=timeout_ms,
        connectTimeoutMS=timeout_ms,
        timeoutMS=operation_timeout_ms,
        event_listeners=[COMMAND_COUNTER],
    )


def database(client: MongoClient[Doc], settings: QueueSettings) -> Database[Doc]:
    """Return the queue's database on `client`."""
    return client[settings.mongodb_database]

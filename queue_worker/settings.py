"""Queue settings: one frozen dataclass, filled by an entry point from its table of variables."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from queue_worker.errors import ConfigError
from runtime import env as envspec
from runtime import names
from runtime.env import Option

DEFAULT_URI = "mongodb://127.0.0.1:27017/app?directConnection=true"
DEFAULT_DATABASE = "app"


@dataclass(frozen=True)
class QueueSettings:
    """Everything the queue library is configured by; units are in the names."""

    mongodb_uri: str = DEFAULT_URI
    mongodb_database: str = DEFAULT_DATABASE
    default_queue: str = "default"
    lease_s: float = 30.0
    heartbeat_s: float = 0.0  # 0: a third of lease_s
    poll_max_s: float = 1.0
    backoff_base_s: float = 1.0
    backoff_cap_s: float = 300.0
    max_attempts: int = 5
    timeout_s: float = 300.0
    retention_s: int = 604800
    poison_crashes: int = 3
    concurrency: int = 4
    promote_batch: int = 32  # jobs moved from the backlog into `jobs` at a time (backlog.py)
    db_timeout_s: float = 10.0  # every queue operation's deadline (connection.connect)
    task_modules: tuple[str, ...] = ()  # the library names no application's modules
    enable_bench_tasks: bool = False
    wakeup: str = "stream"  # stream: change stream + polling; poll: polling only

    def __post_init__(self) -> None:
        if self.heartbeat_s <= 0:
            object.__setattr__(self, "heartbeat_s", self.lease_s / 3)
        if self.heartbeat_s >= self.lease_s:
            raise ConfigError(
                f"QUEUE_HEARTBEAT_S ({self.heartbeat_s}) must be shorter than QUEUE_LEASE_S "
                f"({self.lease_s}), or every lease expires between two heartbeats"
            )
        if self.backoff_cap_s < self.backoff_base_s:
            raise ConfigError("QUEUE_BACKOFF_CAP_S must be >= QUEUE_BACKOFF_BASE_S")

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> QueueSettings:
        """Build settings from environment variables; raise ConfigError naming any bad value."""
        try:
            values = envspec.read(OPTIONS, env)
        except envspec.SettingsError as exc:
            raise ConfigError(str(exc)) from None
        uri = values.setdefault("mongodb_uri", DEFAULT_URI)
        values.setdefault("mongodb_database", _uri_database(uri) or DEFAULT_DATABASE)
        return cls(**values)


def _uri_database(uri: str) -> str:
    try:
        path = urlsplit(uri).path
    except ValueError as exc:
        raise ConfigError(f"MONGODB_URI is not a valid URI: {exc}") from None
    return path.lstrip("/").split("/")[0]


_seconds = envspec.number
_count = envspec.integer


def _wakeup(raw: str) -> str:
    if raw not in ("stream", "poll"):
        raise ValueError("must be stream or poll")
    return raw


OPTIONS: tuple[Option[Any], ...] = (
    Option("MONGODB_URI", "mongodb_uri", envspec.text, "the database server"),
    Option("MONGODB_DATABASE", "mongodb_database", envspec.text, "database name"),
    Option("QUEUE_DEFAULT_QUEUE", "default_queue", names.check, "queue of unrouted tasks"),
    Option("QUEUE_LEASE_S", "lease_s", _seconds(0.1), "lease length"),
    Option("QUEUE_HEARTBEAT_S", "heartbeat_s", _seconds(0.01), "lease extension period"),
    Option("QUEUE_POLL_MAX_S", "poll_max_s", _seconds(0.01), "longest idle wait"),
    Option("QUEUE_BACKOFF_BASE_S", "backoff_base_s", _seconds(0.0), "first retry delay"),
    Option("QUEUE_BACKOFF_CAP_S", "backoff_cap_s", _seconds(0.0), "longest retry delay"),
    Option("QUEUE_MAX_ATTEMPTS", "max_attempts", _count(1), "attempts before dead"),
    Option("QUEUE_TIMEOUT_S", "timeout_s", _seconds(0.01), "default job timeout"),
    Option("QUEUE_RETENTION_S", "retention_s", _count(1), "finished-job retention"),
    Option("QUEUE_POISON_CRASHES", "poison_crashes", _count(1), "crashes before poison"),
    Option("QUEUE_CONCURRENCY", "concurrency", _count(1), "jobs per consumer process"),
    Option("QUEUE_PROMOTE_BATCH", "promote_batch", _count(1), "backlog promotion batch"),
    Option("QUEUE_DB_TIMEOUT_S", "db_timeout_s", _seconds(0.1), "database operation deadline"),
    Option("QUEUE_TASK_MODULES", "task_modules", envspec.names, "task modules to load"),
    Option("QUEUE_ENABLE_BENCH_TASKS", "enable_bench_tasks", envspec.flag, "bench.* tasks"),
    Option("QUEUE_WAKEUP", "wakeup", _wakeup, "stream or poll"),
)

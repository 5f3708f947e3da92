"""Queue settings: one frozen dataclass read from the environment once, by an entry point."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar
from urllib.parse import urlsplit

from queue_worker.errors import ConfigError

DEFAULT_URI = "mongodb://127.0.0.1:27017/app?directConnection=true"
DEFAULT_DATABASE = "app"

_T = TypeVar("_T", int, float)


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
    task_modules: tuple[str, ...] = ("queue_worker.builtin",)
    enable_bench_tasks: bool = False
    smtp_host: str = ""
    smtp_port: int = 25
    smtp_from: str = "noreply@localhost"
    smtp_user: str = ""
    smtp_password: str = field(default="", repr=False)  # never in a log line via repr
    smtp_starttls: bool = False
    outbox_dir: str = "var/outbox"

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
        uri = env.get("MONGODB_URI") or DEFAULT_URI
        lease_s = _number(env, "QUEUE_LEASE_S", 30.0, float, minimum=0.1)
        modules = env.get("QUEUE_TASK_MODULES", "queue_worker.builtin")
        return cls(
            mongodb_uri=uri,
            mongodb_database=env.get("MONGODB_DATABASE") or _uri_database(uri) or DEFAULT_DATABASE,
            default_queue=_name(env, "QUEUE_DEFAULT_QUEUE", "default"),
            lease_s=lease_s,
            heartbeat_s=_number(env, "QUEUE_HEARTBEAT_S", lease_s / 3, float, minimum=0.01),
            poll_max_s=_number(env, "QUEUE_POLL_MAX_S", 1.0, float, minimum=0.01),
            backoff_base_s=_number(env, "QUEUE_BACKOFF_BASE_S", 1.0, float, minimum=0.0),
            backoff_cap_s=_number(env, "QUEUE_BACKOFF_CAP_S", 300.0, float, minimum=0.0),
            max_attempts=_number(env, "QUEUE_MAX_ATTEMPTS", 5, int, minimum=1),
            timeout_s=_number(env, "QUEUE_TIMEOUT_S", 300.0, float, minimum=0.01),
            retention_s=_number(env, "QUEUE_RETENTION_S", 604800, int, minimum=1),
            poison_crashes=_number(env, "QUEUE_POISON_CRASHES", 3, int, minimum=1),
            concurrency=_number(env, "QUEUE_CONCURRENCY", 4, int, minimum=1),
            promote_batch=_number(env, "QUEUE_PROMOTE_BATCH", 32, int, minimum=1),
            task_modules=tuple(m.strip() for m in modules.split(",") if m.strip()),
            enable_bench_tasks=_flag(env, "QUEUE_ENABLE_BENCH_TASKS"),
            smtp_host=env.get("SMTP_HOST", "").strip(),
            smtp_port=_number(env, "SMTP_PORT", 25, int, minimum=1),
            smtp_from=env.get("SMTP_FROM", "").strip() or "noreply@localhost",
            smtp_user=env.get("SMTP_USER", ""),
            smtp_password=env.get("SMTP_PASSWORD", ""),
            smtp_starttls=_flag(env, "SMTP_STARTTLS"),
            outbox_dir=env.get("QUEUE_OUTBOX_DIR", "").strip() or "var/outbox",
        )


def _uri_database(uri: str) -> str:
    try:
        path = urlsplit(uri).path
    except ValueError as exc:
        raise ConfigError(f"MONGODB_URI is not a valid URI: {exc}") from None
    return path.lstrip("/").split("/")[0]


def _name(env: Mapping[str, str], key: str, default: str) -> str:
    value = env.get(key, "").strip() or default
    if any(c in value for c in " $\0") or len(value) > 100:
        raise ConfigError(f"{key}={value!r}: use letters, digits, '.', '-' or '_' (max 100)")
    return value


def _number(
    env: Mapping[str, str], key: str, default: _T, kind: Callable[[str], _T], *, minimum: _T
) -> _T:
    raw = env.get(key, "").strip()
    if not raw:
        return default
    try:
        value = kind(raw)
    except ValueError:
        what = "an integer" if kind is int else "a number"
        raise ConfigError(f"{key}={raw!r} is not {what}") from None
    if not value >= minimum:  # also rejects NaN
        raise ConfigError(f"{key}={raw!r} must be >= {minimum}")
    return value


def _flag(env: Mapping[str, str], key: str) -> bool:
    raw = env.get(key, "").strip().lower()
    if raw in ("", "0", "false", "no", "off"):
        return False
    if raw in ("1", "true", "yes", "on"):
        return True
    raise ConfigError(f"{key}={raw!r} must be 0 or 1")

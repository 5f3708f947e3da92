"""Supervisor settings: every option has a command-line flag and an environment variable.

Precedence: flag, then environment, then default. Queue settings (QUEUE_*, MONGODB_*) are not
parsed here: the master never imports the queue library, so the preflight child validates them.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

from supervisor.errors import UsageError

T = TypeVar("T")


@dataclass(frozen=True)
class SupervisorSettings:
    """How many consumers to run, and the limits the master enforces on them."""

    workers: int
    concurrency: int | None  # None: the queue library's QUEUE_CONCURRENCY default
    queues: tuple[str, ...] | None  # None: the queue library's default queue set
    graceful_timeout_s: float = 30.0
    metrics_port: int = 0  # 0: no exporter
    metrics_host: str = "127.0.0.1"
    max_jobs_per_child: int = 0  # 0: never recycle on job count
    max_memory_mb: int = 0  # 0: never recycle on memory
    crash_loop_exits: int = 5  # K: this many abnormal exits ...
    crash_loop_window_s: float = 60.0  # ... within T seconds stop a slot's respawning
    # hang + grace must stay below QUEUE_LEASE_S - QUEUE_HEARTBEAT_S (20 s by default), or a
    # hung consumer's lease expires first and its job is rescued without the crash recorded.
    hang_timeout_s: float = 12.0
    kill_grace_s: float = 3.0
    boot_timeout_s: float = 60.0
    backoff_base_s: float = 0.5
    backoff_cap_s: float = 30.0
    db_wait_s: float = 15.0


@dataclass(frozen=True)
class _Option:
    flag: str
    env: str
    field: str
    parse: Callable[[str], object]
    help: str


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ValueError("must be a whole number") from None


def _float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ValueError("must be a number of seconds") from None


def _positive_int(text: str) -> int:
    value = _int(text)
    if value < 1:
        raise ValueError("must be at least 1")
    return value


def _non_negative_int(text: str) -> int:
    value = _int(text)
    if value < 0:
        raise ValueError("must be 0 or more")
    return value


def _port(text: str) -> int:
    value = _int(text)
    if not 0 <= value <= 65535:
        raise ValueError("must be a TCP port between 0 and 65535")
    return value


def _positive_float(text: str) -> float:
    value = _float(text)
    if not value > 0:
        raise ValueError("must be greater than 0")
    return value


def _queue_list(text: str) -> tuple[str, ...]:
    names = tuple(name.strip() for name in text.split(",") if name.strip())
    if not names:
        raise ValueError("must name at least one queue")
    return names


OPTIONS: tuple[_Option, ...] = (
    _Option(
        "--workers",
        "SUPERVISOR_WORKERS",
        "workers",
        _positive_int,
        "consumer processes to keep alive (default: CPU count)",
    ),
    _Option(
        "--concurrency",
        "QUEUE_CONCURRENCY",
        "concurrency",
        _positive_int,
        "jobs each consumer runs at once (default: the queue library's, 4)",
    ),
    _Option(
        "--queues",
        "SUPERVISOR_QUEUES",
        "queues",
        _queue_list,
        "comma-separated queues to consume (default: the queue library's default queue)",
    ),
    _Option(
        "--graceful-timeout",
        "SUPERVISOR_GRACEFUL_TIMEOUT_S",
        "graceful_timeout_s",
        _positive_float,
        "seconds a stopping consumer may finish running jobs before "
        "releasing the rest (default: 30)",
    ),
    _Option(
        "--metrics-port",
        "SUPERVISOR_METRICS_PORT",
        "metrics_port",
        _port,
        "serve Prometheus metrics on this port; 0 disables the exporter (default: 0)",
    ),
    _Option(
        "--metrics-host",
        "SUPERVISOR_METRICS_HOST",
        "metrics_host",
        str,
        "address the metrics exporter binds (default: 127.0.0.1)",
    ),
    _Option(
        "--max-jobs-per-child",
        "SUPERVISOR_MAX_JOBS_PER_CHILD",
        "max_jobs_per_child",
        _non_negative_int,
        "gracefully replace a consumer after this many jobs; 0: never",
    ),
    _Option(
        "--max-memory-mb",
        "SUPERVISOR_MAX_MEMORY_MB",
        "max_memory_mb",
        _non_negative_int,
        "gracefully replace a consumer whose RSS exceeds this many MiB; 0: never",
    ),
    _Option(
        "--crash-loop-exits",
        "SUPERVISOR_CRASH_LOOP_EXITS",
        "crash_loop_exits",
        _positive_int,
        "K: a slot whose consumer dies abnormally K times within the window "
        "stops being respawned (default: 5)",
    ),
    _Option(
        "--crash-loop-window",
        "SUPERVISOR_CRASH_LOOP_WINDOW_S",
        "crash_loop_window_s",
        _positive_float,
        "T: the crash-loop window in seconds (default: 60)",
    ),
    _Option(
        "--hang-timeout",
        "SUPERVISOR_HANG_TIMEOUT_S",
        "hang_timeout_s",
        _positive_float,
        "seconds without a liveness report before a child is aborted (default: 12)",
    ),
    _Option(
        "--kill-grace",
        "SUPERVISOR_KILL_GRACE_S",
        "kill_grace_s",
        _positive_float,
        "seconds between SIGABRT (or a missed shutdown deadline) and SIGKILL (default: 3)",
    ),
    _Option(
        "--boot-timeout",
        "SUPERVISOR_BOOT_TIMEOUT_S",
        "boot_timeout_s",
        _positive_float,
        "seconds a new child may take to report ready (default: 60)",
    ),
    _Option(
        "--backoff-base",
        "SUPERVISOR_BACKOFF_BASE_S",
        "backoff_base_s",
        _positive_float,
        "first respawn delay after an abnormal exit, doubled per recent exit (default: 0.5)",
    ),
    _Option(
        "--backoff-cap",
        "SUPERVISOR_BACKOFF_CAP_S",
        "backoff_cap_s",
        _positive_float,
        "longest respawn delay in seconds (default: 30)",
    ),
    _Option(
        "--db-wait",
        "SUPERVISOR_DB_WAIT_S",
        "db_wait_s",
        _positive_float,
        "seconds to wait for the database at start before giving up (default: 15)",
    ),
)


_METAVARS: dict[Callable[[str], object], str] = {
    _positive_int: "N",
    _non_negative_int: "N",
    _port: "PORT",
    _positive_float: "SECONDS",
    _queue_list: "Q1,Q2",
    str: "HOST",
}


def build_parser() -> argparse.ArgumentParser:
    """Return the `python -m supervisor` argument parser; every flag names its variable."""
    parser = argparse.ArgumentParser(
        prog="python -m supervisor",
        description="Keep N queue consumer processes alive through crashes, hangs and deploys. "
        "Signals: TERM/INT drain gracefully, QUIT stops fast, HUP replaces all consumers, "
        "TTIN/TTOU add/remove one consumer.",
        epilog="Database and queue settings come from MONGODB_URI, MONGODB_DATABASE and "
        "QUEUE_* variables (see the README).",
    )
    for option in OPTIONS:
        parser.add_argument(
            option.flag,
            dest=option.field,
            metavar=_METAVARS.get(option.parse, "VALUE"),
            default=None,
            help=f"{option.help} [env {option.env}]",
        )
    return parser


def load_settings(
    argv: Sequence[str] | None, env: Mapping[str, str], cpu_count: int | None = None
) -> SupervisorSettings:
    """Parse flags and environment into settings; raise UsageError naming the bad value."""
    args = build_parser().parse_args(argv)
    values: dict[str, object] = {}
    for option in OPTIONS:
        flag_value = getattr(args, option.field)
        raw, source = (
            (flag_value, option.flag)
            if flag_value is not None
            else (env.get(option.env), option.env)
        )
        if raw is None or raw == "":
            continue
        try:
            values[option.field] = option.parse(raw)
        except ValueError as exc:
            raise UsageError(f"{source}={raw!r}: {exc}") from None
    values.setdefault("workers", cpu_count or os.cpu_count() or 1)
    values.setdefault("concurrency", None)
    values.setdefault("queues", None)
    return SupervisorSettings(**values)  # type: ignore[arg-type]

"""Supervisor settings: every option has a command-line flag and (but one) an environment variable.

Precedence: flag, then environment, then default. Queue settings (QUEUE_*, MONGODB_*) are not
parsed here: the master never imports the queue library, so the preflight child validates them.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from runtime import env as envspec
from runtime import names
from runtime.env import Option, SettingsError
from supervisor.errors import UsageError

EXPORTER = "exporter"
SCHEDULER = "scheduler"


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
    log_level: str = "INFO"
    scheduler: bool = True

    def singletons(self) -> tuple[str, ...]:
        """Return the names of the extra children this supervisor runs beside its consumers:
        the metrics exporter when a port is set, the scheduler unless switched off."""
        names = (EXPORTER,) if self.metrics_port > 0 else ()
        return names + ((SCHEDULER,) if self.scheduler else ())


def _log_level(text: str) -> str:
    level = text.upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        raise ValueError("must be DEBUG, INFO, WARNING, ERROR or CRITICAL")
    return level


def _queue_list(text: str) -> tuple[str, ...]:
    return names.check_all(envspec.names(text))


_positive_int = envspec.integer(1)
_non_negative_int = envspec.integer(0)
_positive_float = envspec.number(0.0, above=True)
_port = envspec.port

OPTIONS: tuple[Option[Any], ...] = (
    Option(
        "SUPERVISOR_WORKERS", "workers", _positive_int,
        "consumer processes to keep alive (default: CPU count)", flag="--workers",
    ),
    # Flag only: without it, each consumer uses QUEUE_CONCURRENCY, parsed by QueueSettings.
    Option(
        "", "concurrency", _positive_int,
        "jobs each consumer runs at once (default: QUEUE_CONCURRENCY, 4)", flag="--concurrency",
    ),
    Option(
        "SUPERVISOR_QUEUES", "queues", _queue_list,
        "comma-separated queues to consume (default: the queue library's default queue)",
        flag="--queues",
    ),
    Option(
        "SUPERVISOR_GRACEFUL_TIMEOUT_S", "graceful_timeout_s", _positive_float,
        "seconds a stopping consumer may finish running jobs before releasing the rest "
        "(default: 30)",
        flag="--graceful-timeout",
    ),
    Option(
        "SUPERVISOR_METRICS_PORT", "metrics_port", _port,
        "serve Prometheus metrics on this port; 0 disables the exporter (default: 0)",
        flag="--metrics-port",
    ),
    Option(
        "SUPERVISOR_METRICS_HOST", "metrics_host", envspec.text,
        "address the metrics exporter binds (default: 127.0.0.1)", flag="--metrics-host",
    ),
    Option(
        "SUPERVISOR_MAX_JOBS_PER_CHILD", "max_jobs_per_child", _non_negative_int,
        "gracefully replace a consumer after this many jobs; 0: never",
        flag="--max-jobs-per-child",
    ),
    Option(
        "SUPERVISOR_MAX_MEMORY_MB", "max_memory_mb", _non_negative_int,
        "gracefully replace a consumer whose RSS exceeds this many MiB; 0: never",
        flag="--max-memory-mb",
    ),
    Option(
        "SUPERVISOR_CRASH_LOOP_EXITS", "crash_loop_exits", _positive_int,
        "K: a slot whose consumer dies abnormally K times within the window stops being "
        "respawned (default: 5)",
        flag="--crash-loop-exits",
    ),
    Option(
        "SUPERVISOR_CRASH_LOOP_WINDOW_S", "crash_loop_window_s", _positive_float,
        "T: the crash-loop window in seconds (default: 60)", flag="--crash-loop-window",
    ),
    Option(
        "SUPERVISOR_HANG_TIMEOUT_S", "hang_timeout_s", _positive_float,
        "seconds without a liveness report before a child is aborted (default: 12)",
        flag="--hang-timeout",
    ),
    Option(
        "SUPERVISOR_KILL_GRACE_S", "kill_grace_s", _positive_float,
        "seconds between SIGABRT (or a missed shutdown deadline) and SIGKILL (default: 3)",
        flag="--kill-grace",
    ),
    Option(
        "SUPERVISOR_BOOT_TIMEOUT_S", "boot_timeout_s", _positive_float,
        "seconds a new child may take to report ready (default: 60)", flag="--boot-timeout",
    ),
    Option(
        "SUPERVISOR_BACKOFF_BASE_S", "backoff_base_s", _positive_float,
        "first respawn delay after an abnormal exit, doubled per recent exit (default: 0.5)",
        flag="--backoff-base",
    ),
    Option(
        "SUPERVISOR_BACKOFF_CAP_S", "backoff_cap_s", _positive_float,
        "longest respawn delay in seconds (default: 30)", flag="--backoff-cap",
    ),
    Option(
        "SUPERVISOR_DB_WAIT_S", "db_wait_s", _positive_float,
        "seconds to wait for the database at start before giving up (default: 15)",
        flag="--db-wait",
    ),
    Option(
        "SUPERVISOR_LOG_LEVEL", "log_level", _log_level,
        "DEBUG, INFO, WARNING, ERROR or CRITICAL (default: INFO)", flag="--log-level",
    ),
    Option(
        "SUPERVISOR_SCHEDULER", "scheduler", envspec.flag,
        "run the periodic-job scheduler beside the consumers; every supervisor may (default: 1)",
        flag="--scheduler",
    ),
)  # fmt: skip


_METAVARS: dict[Callable[[str], object], str] = {
    _positive_int: "N",
    _non_negative_int: "N",
    _port: "PORT",
    _positive_float: "SECONDS",
    _queue_list: "Q1,Q2",
    _log_level: "LEVEL",
    envspec.text: "HOST",
    envspec.flag: "0|1",
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
        assert option.flag is not None
        parser.add_argument(
            option.flag,
            dest=option.field,
            metavar=_METAVARS.get(option.parse, "VALUE"),
            default=None,
            help=f"{option.help} [env {option.env}]" if option.env else option.help,
        )
    return parser


def load_settings(
    argv: Sequence[str] | None, env: Mapping[str, str], cpu_count: int | None = None
) -> SupervisorSettings:
    """Parse flags and environment into settings; raise UsageError naming the bad value."""
    args = build_parser().parse_args(argv)
    flags = {option.field: getattr(args, option.field) for option in OPTIONS}
    try:
        values = envspec.read(OPTIONS, env, flags)
    except SettingsError as exc:
        raise UsageError(str(exc)) from None
    values.setdefault("workers", cpu_count or os.cpu_count() or 1)
    values.setdefault("concurrency", None)
    values.setdefault("queues", None)
    return SupervisorSettings(**values)

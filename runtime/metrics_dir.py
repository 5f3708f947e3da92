"""The Prometheus multiprocess directory: the one module that reads PROMETHEUS_MULTIPROC_DIR.

In multiprocess mode every process writes its metric values to mmap files in that directory and
a scrape sums them. prometheus-client decides per process, from the environment variable, when a
metric object is created; so the directory must be in the environment before any of our metric
modules is imported, and every role's entry point calls `prepare` once, first thing:

    gunicorn (deploy/gunicorn.conf.py, master)   prepare(os.environ, prefix="api-metrics-")
    python -m supervisor (master)                 prepare(os.environ, prefix="supervisor-metrics-")
    python -m queue_worker work                   ensure(os.environ)  (joins a directory if set)

A master calls `process_died(pid)` after reaping a child, so the child's live gauges disappear
and its counters stay counted (folded into the archive files, metrics_files.py).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Mapping, MutableMapping

VARIABLE = "PROMETHEUS_MULTIPROC_DIR"


def configured(env: Mapping[str, str] | None = None) -> str | None:
    """Return the multiprocess directory of this process (None: single-process mode)."""
    value = (os.environ if env is None else env).get(VARIABLE, "")
    return value or None


def require(path: str | None = None) -> str:
    """Return `path`, else the configured directory; ValueError when there is neither."""
    path = path or configured()
    if not path:
        raise ValueError(f"{VARIABLE} is not set")
    return path


def prepare(env: MutableMapping[str, str], *, prefix: str) -> str | None:
    """Point the variable at an empty directory before any metric exists; return the directory
    if this call created it (a temporary one the caller removes at exit), else None."""
    given = configured(env)
    if given:
        reset(given)  # a previous run's counters would be summed into this run's
        return None
    created = tempfile.mkdtemp(prefix=prefix)
    env[VARIABLE] = created
    return created


def ensure(env: Mapping[str, str]) -> None:
    """Create the configured directory if it is set and missing (a process joining a role)."""
    given = configured(env)
    if given:
        os.makedirs(given, exist_ok=True)


def reset(path: str) -> None:
    """Create `path` if needed and empty it; never re-create it (systemd may own it)."""
    # Everything goes: a previous run's counters, archives, and a half-done compaction's
    # `.new`/`.folding` files, which would otherwise be rolled back into this run's totals.
    os.makedirs(path, exist_ok=True)
    with os.scandir(path) as entries:
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path, ignore_errors=True)
            else:
                os.unlink(entry.path)


def remove(path: str | None) -> None:
    """Remove a directory `prepare` created (no-op for None)."""
    if path is not None:
        shutil.rmtree(path, ignore_errors=True)


def process_died(pid: int) -> None:
    """After a child is reaped: drop its live gauges and fold its counters into the archives."""
    path = configured()
    if path is None:
        return
    from prometheus_client import multiprocess

    from runtime.metrics_files import archive_dead_process

    multiprocess.mark_process_dead(pid, path)  # type: ignore[no-untyped-call]
    archive_dead_process(pid, path)

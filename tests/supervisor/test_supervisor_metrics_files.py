"""A killed consumer's metrics files are folded into the archive by the reaping master."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from pathlib import Path

import localdb
import psutil  # type: ignore[import-untyped]
from supervisor_harness import Supervisor, scrape
from waiting import wait_until

from queue_worker.store import JobStore


def _metrics_dir(pid: int) -> Path:
    """Find the multiprocess directory from the metrics files a process holds open."""
    for f in psutil.Process(pid).open_files():
        if f.path.endswith(".db"):
            return Path(f.path).parent
    raise AssertionError(f"process {pid} holds no metrics file open")


def _pids_with_files(metrics_dir: Path) -> set[int]:
    names = (p.stem.rsplit("_", 1)[-1] for p in metrics_dir.glob("*.db"))
    return {int(n) for n in names if n.isdigit()}


def _succeeded(port: int) -> float:
    samples = scrape(port)
    return sum(v for k, v in samples.items() if k.startswith("queue_jobs_succeeded_total{"))


def test_killed_consumers_leave_no_files_and_their_counts_stay_summed(
    start_supervisor: Callable[..., Supervisor], store: JobStore
) -> None:
    """After 3 rounds of SIGKILLing both consumers: files only of live pids, totals == database."""
    port = localdb.free_port()
    sup = start_supervisor("--workers", "2", "--metrics-port", str(port))
    consumers = sup.wait_children(2)
    # The master's own gauges (alive, desired) live in the same directory.
    metrics_dir = wait_until(lambda: _metrics_dir_or_none(sup.pid), 15, "the master's metrics file")
    killed: set[int] = set()
    jobs = 0
    for _ in range(3):
        for _ in range(4):
            store.enqueue("bench.noop")
        jobs += 4
        wait_until(
            lambda n=jobs: store.done.count_documents({"state": "succeeded"}) == n, 30, "jobs"
        )
        for pid in consumers:
            os.kill(pid, signal.SIGKILL)
        killed.update(consumers)
        consumers = wait_until(
            lambda: (c := sup.children()) and len(c) == 2 and not killed & set(c) and c,
            15,
            "replacement consumers",
        )
        wait_until(lambda: not killed & _pids_with_files(metrics_dir), 15, "dead pids' files")
    assert wait_until(lambda: _try(lambda: _succeeded(port) == jobs), 15, "metrics endpoint")
    live = {sup.pid, *(p.pid for p in psutil.Process(sup.pid).children())}
    assert _pids_with_files(metrics_dir) <= live
    assert (metrics_dir / "counter_archive.db").exists()


def _metrics_dir_or_none(pid: int) -> Path | None:
    try:
        return _metrics_dir(pid)
    except AssertionError:
        return None


def _try(check: Callable[[], bool]) -> bool:
    try:
        return check()
    except OSError:
        return False

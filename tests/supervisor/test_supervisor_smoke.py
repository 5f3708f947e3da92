"""Smoke: the supervisor starts consumers that run jobs, and stops cleanly on SIGTERM."""

from __future__ import annotations

import signal
from collections.abc import Callable

from supervisor_harness import Supervisor, wait_until

from queue_worker.job import JobState
from queue_worker.store import JobStore


def test_consumers_run_jobs_and_sigterm_exits_zero(
    start_supervisor: Callable[..., Supervisor], store: JobStore
) -> None:
    """Jobs enqueued before start all succeed; SIGTERM then exits 0."""
    jobs = [store.enqueue("bench.noop") for _ in range(5)]
    sup = start_supervisor("--workers", "2", "--concurrency", "2")
    sup.wait_children(2)
    wait_until(
        lambda: all((j2 := store.get(j.id)) and j2.state is JobState.SUCCEEDED for j in jobs),
        20,
        "jobs to succeed",
    )
    sup.signal(signal.SIGTERM)
    assert sup.wait(15) == 0, sup.output()

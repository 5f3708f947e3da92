"""Operator signals on a real supervisor: TERM/INT drain, QUIT releases, TTIN/TTOU, HUP."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable

from supervisor_harness import Supervisor, state_of
from waiting import wait_until

from queue_worker.job import JobState
from queue_worker.store import JobStore


def running(store: JobStore) -> int:
    return store.jobs.count_documents({"state": "running"})


def test_sigterm_finishes_short_jobs_releases_long_ones_and_exits_zero(
    start_supervisor: Callable[..., Supervisor], store: JobStore
) -> None:
    """TERM with jobs in flight: those that fit in the graceful timeout finish, the rest go
    back to pending at once (attempt not counted), exit 0, nothing left running."""
    sup = start_supervisor("--workers", "1", "--concurrency", "3", "--graceful-timeout", "2")
    sup.wait_children(1)
    short = store.enqueue("bench.sleep", {"ms": 800})
    long = [store.enqueue("bench.sleep", {"ms": 60000}) for _ in range(2)]
    wait_until(lambda: running(store) == 3, 15, "three jobs running")
    sup.signal(signal.SIGTERM)
    assert sup.wait(15) == 0, sup.output()
    assert running(store) == 0
    assert state_of(store, short.id) is JobState.SUCCEEDED
    for job in long:
        after = store.get(job.id)
        assert after is not None and after.state is JobState.PENDING and after.attempts == 0


def test_sigquit_releases_every_held_job_at_once(
    start_supervisor: Callable[..., Supervisor], store: JobStore
) -> None:
    """QUIT: no waiting for running jobs; they are pending again when the master exits."""
    sup = start_supervisor("--workers", "2", "--concurrency", "1", "--graceful-timeout", "30")
    sup.wait_children(2)
    jobs = [store.enqueue("bench.sleep", {"ms": 60000}) for _ in range(2)]
    wait_until(lambda: running(store) == 2, 15, "two jobs running")
    sent = time.monotonic()
    sup.signal(signal.SIGQUIT)
    assert sup.wait(10) == 0, sup.output()
    assert time.monotonic() - sent < 5  # far below the 30 s graceful timeout
    assert running(store) == 0
    assert all(state_of(store, j.id) is JobState.PENDING for j in jobs)


def test_ttin_adds_and_ttou_removes_a_consumer(
    start_supervisor: Callable[..., Supervisor],
) -> None:
    """TTIN: one more consumer process; TTOU: one fewer."""
    sup = start_supervisor("--workers", "1")
    sup.wait_children(1)
    sup.signal(signal.SIGTTIN)
    sup.wait_children(2)
    sup.signal(signal.SIGTTOU)
    sup.wait_children(1)


def test_sighup_replaces_every_consumer_and_jobs_keep_flowing(
    start_supervisor: Callable[..., Supervisor], store: JobStore
) -> None:
    """HUP: every consumer is replaced by a new process; jobs enqueued after still run."""
    sup = start_supervisor("--workers", "2")
    old = set(sup.wait_children(2))
    sup.signal(signal.SIGHUP)
    wait_until(
        lambda: (c := sup.children()) and len(c) == 2 and not old & set(c), 20, "two new consumers"
    )
    job = store.enqueue("bench.noop")
    wait_until(
        lambda: state_of(store, job.id) is JobState.SUCCEEDED,
        20,
        "job to succeed",
    )


def test_sigint_drains_like_sigterm(
    start_supervisor: Callable[..., Supervisor], store: JobStore
) -> None:
    """INT (Ctrl-C) is a graceful drain too: exit 0, nothing running."""
    sup = start_supervisor("--workers", "1", "--graceful-timeout", "1")
    sup.wait_children(1)
    store.enqueue("bench.sleep", {"ms": 60000})
    wait_until(lambda: running(store) == 1, 15, "job running")
    sup.signal(signal.SIGINT)
    assert sup.wait(15) == 0, sup.output()
    assert running(store) == 0


def test_consumer_is_recycled_after_max_jobs_per_child(
    start_supervisor: Callable[..., Supervisor], store: JobStore
) -> None:
    """--max-jobs-per-child 2: the consumer is replaced gracefully after 2 jobs; all succeed."""
    sup = start_supervisor("--workers", "1", "--concurrency", "1", "--max-jobs-per-child", "2")
    sup.wait_children(1)
    jobs = [store.enqueue("bench.noop", {"record": True}) for _ in range(6)]
    wait_until(
        lambda: all(state_of(store, j.id) is JobState.SUCCEEDED for j in jobs),
        30,
        "jobs to succeed",
    )
    pids = store.db["bench_runs"].distinct("pid")
    assert len(pids) >= 3, pids
    assert "replaced: recycle_jobs" in sup.output()


def test_consumer_is_recycled_when_its_memory_exceeds_the_limit(
    start_supervisor: Callable[..., Supervisor], store: JobStore
) -> None:
    """--max-memory-mb below the process size: replaced after its job, never in a loop."""
    sup = start_supervisor("--workers", "1", "--concurrency", "1", "--max-memory-mb", "1")
    sup.wait_children(1)
    jobs = [store.enqueue("bench.noop", {"record": True}) for _ in range(3)]
    wait_until(
        lambda: all(state_of(store, j.id) is JobState.SUCCEEDED for j in jobs),
        30,
        "jobs to succeed",
    )
    wait_until(lambda: "replaced: recycle_memory" in sup.output(), 10, "a memory recycle")
    assert sup.output().count("replaced: recycle_memory") <= len(jobs)

"""Crashes, poison jobs, runaway jobs and hangs, with real processes and real signals."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from pathlib import Path

from bson import ObjectId
from supervisor_harness import Supervisor, pid_of_owner
from waiting import wait_until

from queue_worker.job import DeadReason, Job, JobState
from queue_worker.store import JobStore


def job_in(store: JobStore, job_id: str, *states: JobState) -> Job | None:
    job = store.get(job_id)
    return job if job is not None and job.state in states else None


def test_kill9_mid_job_replaces_child_within_a_second_and_the_job_reruns(
    start_supervisor: Callable[..., Supervisor], store: JobStore
) -> None:
    """SIGKILL of a consumer mid-job: a new consumer takes its slot (the backoff itself is unit
    tested in test_supervisor_slot), and the job re-runs to success with the crash recorded."""
    sup = start_supervisor("--workers", "1", "--concurrency", "1")
    sup.wait_children(1)
    job = store.enqueue("bench.sleep", {"ms": 1500, "record": True})
    running = wait_until(lambda: job_in(store, job.id, JobState.RUNNING), 15, "job running")
    victim = pid_of_owner(running.lease_owner)
    assert victim is not None
    runs = store.db["bench_runs"]
    wait_until(lambda: runs.count_documents({"job_id": job.id}), 10, "the handler to start")
    os.kill(victim, signal.SIGKILL)
    wait_until(lambda: (c := sup.children()) and victim not in c, 30, "a new consumer")
    done = wait_until(lambda: job_in(store, job.id, JobState.SUCCEEDED), 20, "job to succeed")
    assert done.crashes == 1
    # Succeeded jobs move to jobs_done in batches: look in both collections.
    by_id = {"_id": ObjectId(done.id)}
    raw = store.jobs.find_one(by_id) or store.done.find_one(by_id)
    assert raw is not None and raw["last_crash"]["signal"] == signal.SIGKILL
    assert runs.count_documents({"job_id": job.id}) == 2


def test_job_that_kills_its_consumer_is_buried_as_poison_while_others_complete(
    start_supervisor: Callable[..., Supervisor], store: JobStore
) -> None:
    """A job that always SIGKILLs its process goes dead (poison) after 3 crashes; 100 other
    jobs still complete."""
    poison = store.enqueue("bench.crash")
    others = [store.enqueue("bench.noop") for _ in range(100)]
    sup = start_supervisor("--workers", "2", "--concurrency", "2")
    dead = wait_until(
        lambda: job_in(store, poison.id, JobState.DEAD),
        90,
        f"poison job to be buried\n{sup.output()}",
    )
    assert dead.dead_reason is DeadReason.POISON and dead.crashes == 3
    wait_until(
        lambda: store.done.count_documents({"state": "succeeded"}) == len(others),
        90,
        "the other jobs to succeed",
    )
    assert sup.process.poll() is None  # no slot crash-looped over it


def test_runaway_job_past_its_timeout_replaces_the_child_and_fails_the_attempt(
    start_supervisor: Callable[..., Supervisor], store: JobStore
) -> None:
    """A pure-Python busy loop past timeout_s: the attempt fails (retried, then dead as
    exhausted) and each time the child is replaced."""
    sup = start_supervisor("--workers", "1", "--concurrency", "1")
    first = sup.wait_children(1)[0]
    job = store.enqueue("sup.spin", {"s": 60}, timeout_s=1, max_attempts=2)
    dead = wait_until(
        lambda: job_in(store, job.id, JobState.DEAD),
        30,
        f"job dead after 2 timed-out attempts\n{sup.output()}",
    )
    assert dead.attempts == 2 and dead.dead_reason is DeadReason.EXHAUSTED
    assert "Timeout" in (dead.last_error or "")
    assert dead.crashes == 0  # failed by the consumer itself, not by a crash
    assert first not in sup.wait_children(1)
    assert "replaced: timeout" in sup.output()


def test_child_that_stops_reporting_is_aborted_killed_and_replaced(
    start_supervisor: Callable[..., Supervisor], store: JobStore, tmp_path: Path
) -> None:
    """A consumer stuck in C code holding the GIL (its loop cannot report) is aborted after the
    hang timeout and replaced; its job is released with the crash recorded, then succeeds."""
    sup = start_supervisor("--workers", "1", "--concurrency", "1")
    sup.wait_children(1)
    job = store.enqueue("sup.gil_hog_once", {"marker": str(tmp_path / "hogged")})
    done = wait_until(
        lambda: job_in(store, job.id, JobState.SUCCEEDED),
        30,
        f"job to succeed after the hang\n{sup.output()}",
    )
    assert done.crashes == 1 and done.attempts == 1, sup.output()
    assert "stopped reporting liveness" in sup.output()
    assert "died: signal SIGABRT (hang)" in sup.output()
    assert "Current thread" in sup.output() or "Thread 0x" in sup.output()  # faulthandler dump


def test_slot_that_keeps_crashing_stops_respawning_and_master_exits_non_zero(
    start_supervisor: Callable[..., Supervisor], store: JobStore
) -> None:
    """With one slot and crash-loop K=3, three crashes stop respawning; all slots looping →
    exit code 5 with a clear message."""
    for _ in range(5):
        store.enqueue("bench.crash")
    sup = start_supervisor(
        "--workers",
        "1",
        "--crash-loop-exits",
        "3",
        "--crash-loop-window",
        "60",
        env={"QUEUE_POISON_CRASHES": "100"},
    )
    assert sup.wait(60) == 5, sup.output()
    assert "crash-looped" in sup.output()
    assert "every consumer slot is crash-looping" in sup.output()
    assert store.jobs.count_documents({"state": "running"}) == 0  # the reapers released them

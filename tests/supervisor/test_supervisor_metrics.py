"""The metrics endpoint: queue depth read from the database and counters of all children."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import localdb
from supervisor_harness import Supervisor, pid_of_owner, scrape, state_of
from waiting import wait_until

from queue_worker.job import JobState
from queue_worker.store import JobStore


def test_metrics_show_depth_and_totals_that_match_the_database(
    start_supervisor: Callable[..., Supervisor], store: JobStore
) -> None:
    """Depth per queue/state equals the database counts; succeeded totals equal the jobs run,
    summed over consumer processes; supervisor gauges and restarts are there."""
    port = localdb.free_port()
    done = [store.enqueue("bench.noop") for _ in range(6)]
    later = [store.enqueue("bench.noop", delay_s=3600) for _ in range(3)]
    # A queue nobody consumes, with a job due for two minutes already.
    due_at = datetime.now(UTC) - timedelta(minutes=2)
    store.enqueue("bench.noop", queue="idle", run_at=due_at)
    sup = start_supervisor("--workers", "2", "--metrics-port", str(port))
    sup.wait_children(2)
    wait_until(
        lambda: store.done.count_documents({"state": "succeeded"}) == len(done),
        30,
        "jobs to succeed",
    )
    before_scrape = datetime.now(UTC)
    samples = wait_until(lambda: _try_scrape(port), 15, "the metrics endpoint")
    scraped = datetime.now(UTC)
    assert samples['queue_depth{queue="default",state="succeeded"}'] == len(done)
    assert samples['queue_depth{queue="default",state="pending"}'] == len(later)
    assert samples["queue_stats_up"] == 1
    assert samples['queue_oldest_due_job_age_seconds{queue="default"}'] == 0  # nothing due
    # The age is read at scrape time: between the job's due time and the two ends of the scrape
    # (bounds from the clock, not from a guess at how slow the machine is).
    age = samples['queue_oldest_due_job_age_seconds{queue="idle"}']
    assert (before_scrape - due_at).total_seconds() - 0.01 <= age
    assert age <= (scraped - due_at).total_seconds() + 0.01
    assert samples['queue_depth{queue="idle",state="pending"}'] == 1
    succeeded = sum(v for k, v in samples.items() if k.startswith("queue_jobs_succeeded_total{"))
    assert succeeded == len(done)
    assert samples["supervisor_consumers_alive"] == 2
    assert samples["supervisor_consumers_desired"] == 2
    assert samples["supervisor_crash_looping_slots"] == 0


def test_crash_shows_in_restarts_and_released_counters(
    start_supervisor: Callable[..., Supervisor], store: JobStore
) -> None:
    """After a consumer is killed mid-job: restarts{reason=crash} and released{reason=crash}."""
    port = localdb.free_port()
    sup = start_supervisor("--workers", "1", "--metrics-port", str(port))
    sup.wait_children(1)
    job = store.enqueue("bench.sleep", {"ms": 800})
    held = wait_until(
        lambda: (j := store.get(job.id)) and j.state is JobState.RUNNING and j, 15, "job running"
    )
    os.kill(pid_of_owner(held.lease_owner) or 0, signal.SIGKILL)
    wait_until(
        lambda: state_of(store, job.id) is JobState.SUCCEEDED,
        30,
        "job to succeed after the crash",
    )
    samples = wait_until(lambda: _try_scrape(port), 15, "the metrics endpoint")
    assert samples['supervisor_restarts_total{reason="crash"}'] == 1
    released = sum(
        v
        for k, v in samples.items()
        if k.startswith("queue_jobs_released_total{") and 'reason="crash"' in k
    )
    assert released == 1


def _try_scrape(port: int) -> dict[str, float] | None:
    try:
        return scrape(port)
    except OSError:
        return None


def test_the_released_reasons_named_in_help_are_the_ones_reapers_and_drains_emit() -> None:
    """queue_jobs_released_total's reasons are exactly what a drain (shutdown) and a reaper
    (each DeathCause) pass: its help names no reason nothing ever records."""
    from queue_worker import metrics
    from supervisor.reasons import DeathCause

    assert set(metrics.RELEASE_REASONS) == {cause.value for cause in DeathCause}
    help_text = metrics.JOBS_RELEASED.describe()[0].documentation
    assert help_text.endswith(f"(reason: {'|'.join(metrics.RELEASE_REASONS)}).")

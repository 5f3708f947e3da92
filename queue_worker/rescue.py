"""Rescue: getting a job back from a worker that can no longer finish it.

Two ways, both ending in pending (or dead) through the job's current lease:

    lease expiry   a claim takes a running job whose lease ran out (claim.lease_expired) and
                   counts it in `rescues`: the backstop for any worker that stalls or vanishes
    release        a worker gives a job back at once: its own consumer draining (`release`), or
                   the supervisor's reaper for a consumer that died (`release_owner`), which
                   also counts the crash against each job it held and buries a job that has
                   now crashed its consumer QUEUE_POISON_CRASHES times as poison

A released attempt does not count (attempts -= 1): it was interrupted, not failed.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pymongo.collection import Collection

from queue_worker import metrics
from queue_worker.job import CrashInfo, DeadReason, Job, JobState, Transition, transition
from queue_worker.lease import DROP_LEASE, Lease, bury, fenced

Doc = dict[str, Any]


def release(jobs: Collection[Doc], held: Lease, *, reason: str, crash: Doc | None = None) -> bool:
    """Give the job back to pending at once; the interrupted attempt does not count."""
    _, after = transition(Transition.RELEASE)
    update: Doc = {
        "$set": {"state": after.value, **(crash or {})},
        "$inc": {"attempts": -1, **({"crashes": 1} if crash else {})},
        "$unset": {**DROP_LEASE, "lease_owner": ""},
    }
    if not fenced(jobs, held, update):
        return False
    metrics.JOBS_RELEASED.labels(held.job.queue, reason).inc()
    return True


def release_owner(
    jobs: Collection[Doc],
    owner: str,
    *,
    crash: CrashInfo | None,
    reason: str,
    now: datetime,
    poison_crashes: int,
) -> int:
    """Release every running job of `owner`; with a crash, count it and bury poison jobs."""
    released = 0
    for doc in jobs.find({"state": JobState.RUNNING.value, "lease_owner": owner}):
        held = Lease(Job.from_doc(doc), doc.get("lease_token") or "", owner, False, doc)
        if crash is None:
            released += release(jobs, held, reason=reason)
            continue
        crash_doc = {"last_crash": {**crash.as_doc(), "at": now, "owner": owner}}
        if held.job.crashes + 1 >= poison_crashes:
            message = (
                f"poison: crashed its consumer {held.job.crashes + 1} times ({crash.as_doc()})"
            )
            extra = {**crash_doc, "crashes": held.job.crashes + 1}
            if bury(jobs, held, message, DeadReason.POISON, now=now, extra=extra):
                metrics.JOBS_POISON.labels(held.job.queue, held.job.task).inc()
                released += 1
            continue
        released += release(jobs, held, reason=reason, crash=crash_doc)
    return released

"""Operator queries and commands: stats, list, retry dead jobs, cancel, run now, delete, bulk
actions on dead jobs, purge. The CLI and the dashboard both act only through these.

Reads look at every collection (`jobs_backlog`: pending; `jobs`: pending, running, dead;
`jobs_done`: succeeded, cancelled). State changes go through the store's compare-and-set
transitions (`revive`, `cancel`); purge only deletes jobs that are finished for good (succeeded,
cancelled, dead), never pending or running ones, which a consumer may hold or be about to claim.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from bson import ObjectId
from pymongo import ReturnDocument
from pymongo.collection import Collection

from queue_worker.errors import InvalidTransitionError, JobNotFoundError, QueueError
from queue_worker.job import Job, JobState
from queue_worker.store import JobStore

Doc = dict[str, Any]
_IS_PENDING = {"$eq": ["$state", JobState.PENDING.value]}
PURGEABLE_STATES = frozenset({JobState.SUCCEEDED, JobState.CANCELLED, JobState.DEAD})


class RefusedError(QueueError):
    """An operator command that would destroy live work; the message says why."""


@dataclass(frozen=True)
class QueueStats:
    """Job counts per queue and state, and how long the oldest due job of each queue has waited."""

    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    oldest_due_age_s: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """Return a JSON-able view: one entry per queue."""
        queues = sorted(set(self.counts) | set(self.oldest_due_age_s))
        return {
            "queues": {
                q: {
                    "counts": {s.value: self.counts.get(q, {}).get(s.value, 0) for s in JobState},
                    "oldest_due_age_s": self.oldest_due_age_s.get(q),
                }
                for q in queues
            }
        }


def stats(store: JobStore, now: datetime, *, finished: bool = True) -> QueueStats:
    """Count jobs per queue and state (all collections; with `finished=False` not `jobs_done`,
    whose count grows with retention: the dashboard's live view) and age the oldest due job per
    queue."""
    counts: dict[str, dict[str, int]] = {}
    collections = store.locations() if finished else store.unfinished()
    for collection in collections:
        pipeline: list[Doc] = [
            {"$group": {"_id": {"queue": "$queue", "state": "$state"}, "n": {"$sum": 1}}}
        ]
        for row in collection.aggregate(pipeline):
            per_queue = counts.setdefault(row["_id"]["queue"], {})
            state = row["_id"]["state"]
            per_queue[state] = per_queue.get(state, 0) + row["n"]
    oldest: dict[str, float] = {}
    for collection in store.locations(JobState.PENDING):
        for queue, age_s in oldest_due_age_s(collection, now).items():
            oldest[queue] = max(age_s, oldest.get(queue, 0.0))
    return QueueStats(counts=counts, oldest_due_age_s=oldest)


def oldest_due_age_s(jobs: Collection[Doc], now: datetime) -> dict[str, float]:
    """Return, per queue, the seconds since the oldest due job in `jobs` became due (pending
    and due, or running with an expired lease: work nobody is doing; claim.due_filter)."""
    pipeline: list[Doc] = [
        {"$match": JobStore.due_filter(None, now)},
        {
            "$project": {
                "queue": 1,
                "due": {"$cond": [_IS_PENDING, "$run_at", "$lease_until"]},
            }
        },
        {"$group": {"_id": "$queue", "oldest": {"$min": "$due"}}},
    ]
    return {
        row["_id"]: max(0.0, (now - row["oldest"]).total_seconds())
        for row in jobs.aggregate(pipeline)
    }


def require_job(store: JobStore, job_id: str) -> Job:
    """Return the job with this id, or raise JobNotFoundError (malformed ids included)."""
    job = store.get(job_id)
    if job is None:
        raise JobNotFoundError(f"no job with id {job_id!r}")
    return job


def retry(store: JobStore, job_id: str) -> Job:
    """Send one dead job back to pending with fresh attempts."""
    revived = store.revive(job_id)
    if revived is None:
        job = require_job(store, job_id)
        raise InvalidTransitionError(f"job {job_id} is {job.state.value}; only dead jobs retry")
    return revived


def retry_all_dead(store: JobStore, *, queue: str | None = None) -> int:
    """Send every dead job (of one queue, if given) back to pending; return how many."""
    query: Doc = {"state": JobState.DEAD.value}
    if queue is not None:
        query["queue"] = queue
    ids = [str(doc["_id"]) for doc in store.jobs.find(query, {"_id": 1})]
    # One compare-and-set per job: a job revived by someone else meanwhile is simply skipped.
    return sum(1 for job_id in ids if store.revive(job_id) is not None)


def cancel(store: JobStore, job_id: str) -> Job:
    """Cancel a pending job; running, dead and finished jobs cannot be cancelled."""
    cancelled = store.cancel(job_id)
    if cancelled is None:
        job = require_job(store, job_id)
        raise InvalidTransitionError(
            f"job {job_id} is {job.state.value}; only pending jobs can be cancelled"
        )
    return cancelled


def run_now(store: JobStore, job_id: str, *, now: datetime) -> Job:
    """Make a pending job scheduled for later due now; other states are refused."""
    oid = ObjectId(require_job(store, job_id).id)
    for collection in store.locations(JobState.PENDING):
        changed = collection.find_one_and_update(
            {"_id": oid, "state": JobState.PENDING.value, "run_at": {"$gt": now}},
            {"$set": {"run_at": now}},
            return_document=ReturnDocument.AFTER,
        )
        if changed is not None:
            return Job.from_doc(changed)
    job = require_job(store, job_id)
    raise InvalidTransitionError(f"job {job_id} is {job.state.value}, not pending for later")


def delete_dead(store: JobStore, job_id: str) -> None:
    """Delete one dead job (and free its key); other states are refused."""
    oid = ObjectId(require_job(store, job_id).id)
    if not store.jobs.delete_one({"_id": oid, "state": JobState.DEAD.value}).deleted_count:
        job = require_job(store, job_id)
        raise InvalidTransitionError(f"job {job_id} is {job.state.value}; only dead jobs delete")
    store.keys.delete_many({"job_id": oid})


BULK_CAP = 10_000
BULK_BATCH = 500


def dead_ids(store: JobStore, query: Doc, *, cap: int = BULK_CAP) -> list[ObjectId]:
    """Return the ids of up to `cap` dead jobs matching `query` (a bulk action's preview)."""
    flt = {**query, "state": JobState.DEAD.value}
    return [doc["_id"] for doc in store.jobs.find(flt, {"_id": 1}).limit(cap)]


def bulk_dead(store: JobStore, action: str, query: Doc, *, cap: int = BULK_CAP) -> int:
    """Retry or delete every dead job matching `query` (at most `cap`), in batches, each job
    by its own compare-and-set (one revived or changed meanwhile is skipped); return how many."""
    ids = dead_ids(store, query, cap=cap)
    done = 0
    for first in range(0, len(ids), BULK_BATCH):
        batch = ids[first : first + BULK_BATCH]
        if action == "retry":
            done += sum(1 for oid in batch if store.revive(str(oid)) is not None)
        elif action == "delete":
            dead = {"_id": {"$in": batch}, "state": JobState.DEAD.value}
            done += store.jobs.delete_many(dead).deleted_count
            # Free the keys of the jobs that are gone, not of one revived meanwhile.
            kept = {doc["_id"] for c in store.in_move_order for doc in c.find(
                {"_id": {"$in": batch}}, {"_id": 1})}  # fmt: skip
            store.keys.delete_many({"job_id": {"$in": [o for o in batch if o not in kept]}})
        else:
            raise RefusedError(f"unknown bulk action {action!r}")
    return done


def purge_filter(state: JobState, cutoff: datetime) -> Doc:
    """Return the query matching jobs of `state` that finished at or before `cutoff`."""
    if state not in PURGEABLE_STATES:
        raise RefusedError(
            f"refusing to purge {state.value} jobs: they are live work "
            "(cancel pending jobs first; running jobs finish or are rescued)"
        )
    return {"state": state.value, "finished_at": {"$lte": cutoff}}


def purge(
    store: JobStore,
    state: JobState,
    *,
    now: datetime,
    older_than_s: float = 0.0,
    dry_run: bool = False,
) -> int:
    """Delete jobs of a finished state that finished `older_than_s` ago or earlier; return count.

    Purging a job also forgets its idempotency key: a later enqueue with that key makes a new job.
    """
    query = purge_filter(state, now - timedelta(seconds=older_than_s))
    found = [[d["_id"] for d in c.find(query, {"_id": 1})] for c in store.locations(state)]
    ids = {oid for ids_in_one in found for oid in ids_in_one}
    if dry_run or not ids:
        return len(ids)
    # A succeeded job not yet archived away can be in `jobs` and `jobs_done` at once: count it
    # once. (The filter keeps the state, so a dead job revived meanwhile is not deleted.)
    twice = sum(len(ids_in_one) for ids_in_one in found) - len(ids)
    deleted = sum(
        c.delete_many({"_id": {"$in": list(ids)}, **query}).deleted_count
        for c in store.locations(state)
    )
    store.keys.delete_many({"job_id": {"$in": list(ids)}})
    return deleted - twice


def job_summary(job: Job, now: datetime) -> Mapping[str, Any]:
    """Return the JSON-able fields an operator listing shows for one job."""
    return {
        "id": job.id,
        "queue": job.queue,
        "task": job.task,
        "state": job.state.value,
        "priority": job.priority,
        "attempts": job.attempts,
        "max_attempts": job.max_attempts,
        "run_at": job.run_at.isoformat(),
        "created_at": job.created_at.isoformat(),
        "finished_at": job.finished_at.isoformat() if job.finished_at else None,
        "age_s": round((now - job.created_at).total_seconds(), 3),
        "dead_reason": job.dead_reason.value if job.dead_reason else None,
        "last_error": job.last_error,
    }


__all__ = [
    "PURGEABLE_STATES",
    "QueueStats",
    "RefusedError",
    "bulk_dead",
    "cancel",
    "dead_ids",
    "delete_dead",
    "job_summary",
    "oldest_due_age_s",
    "purge",
    "require_job",
    "retry",
    "retry_all_dead",
    "run_now",
    "stats",
]

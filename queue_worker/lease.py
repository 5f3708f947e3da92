"""Leases: the token that fences every write about a claimed job, heartbeats, and the fenced
outcome writes (succeed, fail, bury, expire), one at a time or a batch of successes at once.

Every write after the claim (claim.py) is a compare-and-set whose filter names the job id, the
state `running` and the lease token the claim handed out. A worker whose lease expired and was
taken over (or released, rescue.py) matches nothing: its write is not applied, it is counted in
queue_leases_lost_total, and the caller stops working on that job.

The fenced writes use `update_one` + matched_count rather than find_one_and_update: on the local
server an update by _id costs ~1 ms, a find_one_and_update a full collection scan, and the caller
already holds everything the document contains.

succeed_many  one unordered bulk write of the fenced success updates; each also records the
              lease it was written under (`acked_lease`). If the bulk matched them all, every
              lease held; otherwise the jobs are read back and a job is ours exactly when its
              `acked_lease` is our token: a lost lease is still detected per job.
"""

from __future__ import annotations

import json
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from bson import ObjectId
from pymongo import UpdateOne
from pymongo.collection import Collection

from queue_worker import metrics, retries
from queue_worker.job import DeadReason, Job, JobState, Transition, transition
from queue_worker.settings import QueueSettings

Doc = dict[str, Any]
MAX_RESULT_BYTES = 16_384
MAX_ERROR_CHARS = 2_000
MAX_TRACEBACK_CHARS = 8_000
DROP_LEASE = {"lease_token": "", "lease_until": ""}


@dataclass(frozen=True, eq=False)
class Lease:
    """A claimed job and the token that fences every write about it."""

    job: Job
    token: str
    owner: str
    rescued: bool
    doc: Doc = field(repr=False)  # the job document exactly as the claim left it

    @property
    def suspect(self) -> bool:
        return self.job.crashes > 0

    def fence(self) -> Doc:
        """Return the filter that matches the job only while this lease still holds it."""
        return {
            "_id": ObjectId(self.job.id),
            "state": JobState.RUNNING.value,
            "lease_token": self.token,
        }


def fenced(jobs: Collection[Doc], held: Lease, update: Doc) -> bool:
    """Apply `update` only while `held` holds the job; count a lost lease otherwise."""
    if jobs.update_one(held.fence(), update).matched_count:
        return True
    metrics.LEASES_LOST.labels(held.job.queue, held.job.task).inc()
    return False


def heartbeat(jobs: Collection[Doc], held: Lease, *, now: datetime, lease_s: float) -> bool:
    """Extend the lease from `now`; False if the lease was lost."""
    return fenced(jobs, held, {"$set": {"lease_until": now + timedelta(seconds=lease_s)}})


def succeed(jobs: Collection[Doc], held: Lease, result: Any, *, now: datetime) -> Doc | None:
    """Store the result and mark the job succeeded; return the final document, None if lost."""
    _, after = transition(Transition.SUCCEED)
    stored = small_result(result)
    fields = {"state": after.value, "result": stored, "finished_at": now}
    if not fenced(jobs, held, {"$set": fields, "$unset": DROP_LEASE}):
        return None
    labels = (held.job.queue, held.job.task)
    metrics.JOBS_SUCCEEDED.labels(*labels).inc()
    if held.job.started_at is not None:
        metrics.JOB_RUN_SECONDS.labels(*labels).observe((now - held.job.started_at).total_seconds())
    final = {k: v for k, v in held.doc.items() if k not in DROP_LEASE}
    final.update(fields)
    return final


def fail(
    jobs: Collection[Doc],
    held: Lease,
    error: BaseException | str,
    *,
    retryable: bool,
    now: datetime,
    settings: QueueSettings,
    min_delay_s: float = 0.0,
) -> JobState | None:
    """Record a failed attempt; return the job's new state (pending or dead), None if lost."""
    decision = retries.decide(
        attempts=held.job.attempts,
        max_attempts=held.job.max_attempts,
        retryable=retryable,
        now=now,
        base_s=settings.backoff_base_s,
        cap_s=settings.backoff_cap_s,
        min_delay_s=min_delay_s,
    )
    message = describe_error(error)
    trace = {"last_traceback": describe_traceback(error)}  # None clears an older attempt's
    labels = (held.job.queue, held.job.task)
    if decision.dead_reason is not None:
        if not bury(jobs, held, message, decision.dead_reason, now=now, extra=trace):
            return None
        return JobState.DEAD
    _, after = transition(Transition.RETRY)
    assert decision.run_at is not None
    fields = {"state": after.value, "run_at": decision.run_at, "last_error": message, **trace}
    if not fenced(jobs, held, {"$set": fields, "$unset": DROP_LEASE}):
        return None
    metrics.JOBS_FAILED.labels(*labels).inc()
    if held.job.started_at is not None:
        metrics.JOB_RUN_SECONDS.labels(*labels).observe((now - held.job.started_at).total_seconds())
    return after


def expire(jobs: Collection[Doc], held: Lease, *, now: datetime, reason: str) -> bool:
    """Cancel a claimed job that is no longer wanted, without running it; False if lost."""
    _, after = transition(Transition.EXPIRE)
    fields = {"state": after.value, "last_error": reason, "finished_at": now}
    if not fenced(jobs, held, {"$set": fields, "$unset": DROP_LEASE, "$inc": {"attempts": -1}}):
        return False
    metrics.JOBS_EXPIRED.labels(held.job.queue, held.job.task).inc()
    return True


def bury(
    jobs: Collection[Doc],
    held: Lease,
    message: str,
    reason: DeadReason,
    *,
    now: datetime,
    extra: Doc | None = None,
) -> bool:
    """Move a leased job to dead for `reason`; False if the lease was lost."""
    _, after = transition(Transition.BURY)
    fields = {
        "state": after.value,
        "dead_reason": reason.value,
        "last_error": message,
        "finished_at": now,
        **(extra or {}),
    }
    if not fenced(jobs, held, {"$set": fields, "$unset": DROP_LEASE}):
        return False
    metrics.JOBS_DEAD.labels(held.job.queue, held.job.task, reason.value).inc()
    return True


def small_result(result: Any) -> Any:
    """Return `result` if it is small and JSON-able, else a short description of it."""
    try:
        encoded = json.dumps(result, allow_nan=False)
    except (TypeError, ValueError):
        return {"unstorable_result": repr(result)[:200]}
    if len(encoded) > MAX_RESULT_BYTES:
        return {"truncated_result_bytes": len(encoded)}
    return result


def describe_traceback(error: BaseException | str) -> str | None:
    """Return the handler's traceback for `last_traceback` (its last MAX_TRACEBACK_CHARS: the
    innermost frames), None for a failure that is not an exception."""
    if isinstance(error, str) or error.__traceback__ is None:
        return None
    return "".join(traceback.format_exception(error))[-MAX_TRACEBACK_CHARS:]


def describe_error(error: BaseException | str) -> str:
    """Return a bounded one-line description of an error for `last_error`."""
    text = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
    return text[:MAX_ERROR_CHARS]


def succeed_many(
    jobs: Collection[Doc],
    done: Collection[Doc],
    items: Sequence[tuple[Lease, Any]],
    *,
    now: datetime,
) -> list[Doc | None]:
    """Mark leased jobs succeeded with their results in one bulk write; return each job's final
    document, or None where the lease was lost."""
    _, after = transition(Transition.SUCCEED)
    fields = [
        {"state": after.value, "result": small_result(result), "finished_at": now,
         "acked_lease": held.token}
        for held, result in items
    ]  # fmt: skip
    ops = [
        UpdateOne(held.fence(), {"$set": changes, "$unset": DROP_LEASE})
        for (held, _), changes in zip(items, fields, strict=True)
    ]
    matched = jobs.bulk_write(ops, ordered=False).matched_count
    if matched == len(ops):
        ours = [True] * len(ops)
    else:
        ids = [ObjectId(held.job.id) for held, _ in items]
        acked: dict[Any, Any] = {}
        for collection in (jobs, done):  # an archive sweep may have moved one meanwhile
            for doc in collection.find({"_id": {"$in": ids}}, {"acked_lease": 1}):
                acked.setdefault(doc["_id"], doc.get("acked_lease"))
        ours = [acked.get(ObjectId(held.job.id)) == held.token for held, _ in items]
    finals: list[Doc | None] = []
    for (held, _), changes, mine in zip(items, fields, ours, strict=True):
        labels = (held.job.queue, held.job.task)
        if not mine:
            metrics.LEASES_LOST.labels(*labels).inc()
            finals.append(None)
            continue
        metrics.JOBS_SUCCEEDED.labels(*labels).inc()
        if held.job.started_at is not None:
            run_s = (now - held.job.started_at).total_seconds()
            metrics.JOB_RUN_SECONDS.labels(*labels).observe(run_s)
        final = {k: v for k, v in held.doc.items() if k not in DROP_LEASE}
        final.update(changes)
        finals.append(final)
    return finals

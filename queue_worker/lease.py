"""Leases: claim, heartbeat, the fenced outcome writes (succeed, fail, release), owner release.

The claim is one atomic find_one_and_update. Every later write is a compare-and-set whose filter
names the job id, the state `running` and the lease token the claim handed out. A worker whose
lease expired and was taken over (or released) matches nothing: its write is not applied, it is
counted in queue_leases_lost_total, and the caller stops working on that job.

The fenced writes use `update_one` + matched_count rather than find_one_and_update: on the local
server an update by _id costs ~1 ms, a find_one_and_update a full collection scan, and the caller
already holds everything the document contains.
"""

from __future__ import annotations

import json
import traceback
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from bson import ObjectId
from pymongo import ReturnDocument
from pymongo.collection import Collection

from queue_worker import metrics, retries
from queue_worker.job import CrashInfo, DeadReason, Job, JobState, Transition, transition
from queue_worker.settings import QueueSettings

Doc = dict[str, Any]
CLAIM_SORT = [("priority", -1), ("run_at", 1)]
MAX_RESULT_BYTES = 16_384
MAX_ERROR_CHARS = 2_000
MAX_TRACEBACK_CHARS = 8_000
DROP_LEASE = {"lease_token": "", "lease_until": ""}


class Suspects(StrEnum):
    """Which jobs a claim may take with respect to `crashes` (jobs that took a consumer down)."""

    EXCLUDE = "exclude"  # the consumer is running other jobs: only jobs that never crashed one
    ALLOW = "allow"  # the consumer is idle: anything, and if it gets a suspect it runs it alone
    ONLY = "only"  # the consumer drained itself to give a waiting suspect its isolated turn


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


def pending_due(now: datetime) -> Doc:
    """A pending job is due once its run_at has come (run_at <= now)."""
    return {"state": JobState.PENDING.value, "run_at": {"$lte": now}}


def lease_expired(now: datetime) -> Doc:
    """A running job whose lease ran out (lease_until < now) waits to be rescued."""
    return {"state": JobState.RUNNING.value, "lease_until": {"$lt": now}}


def queue_filter(queues: list[str]) -> Doc:
    return {"queue": queues[0] if len(queues) == 1 else {"$in": queues}}


def due_filter(queues: list[str] | None, now: datetime) -> Doc:
    """The one definition of "due": work someone should be doing now, that nobody is (pending
    and due, or running with an expired lease), in `queues` (None: any). Claims take it; stats
    age it."""
    due: Doc = {"$or": [pending_due(now), lease_expired(now)]}
    return due if queues is None else {**queue_filter(queues), **due}


def eligible(queues: list[str], now: datetime, suspects: Suspects) -> Doc:
    flt = due_filter(queues, now)
    if suspects is Suspects.EXCLUDE:
        flt["crashes"] = {"$not": {"$gt": 0}}  # also a document written without the field
    elif suspects is Suspects.ONLY:
        flt["crashes"] = {"$gt": 0}
    return flt


def claim_update(token: Any, *, owner: str, now: datetime, lease_s: float) -> list[Doc]:
    """Return the update pipeline that takes a due job for `owner` with lease token `token` (an
    expression: a literal, or one computed per document by a batch claim)."""
    was_running = {"$eq": ["$state", JobState.RUNNING.value]}
    # An update pipeline evaluates every expression against the document as it was, so one
    # write both takes the job and records whether it was a rescue of an expired lease.
    return [
        {
            "$set": {
                "rescued": was_running,
                "rescues": {"$add": [{"$ifNull": ["$rescues", 0]}, {"$cond": [was_running, 1, 0]}]},
                "attempts": {"$add": [{"$ifNull": ["$attempts", 0]}, 1]},
                "state": JobState.RUNNING.value,
                "lease_token": token,
                "lease_owner": {"$literal": owner},
                "lease_until": now + timedelta(seconds=lease_s),
                "started_at": now,
            }
        }
    ]


def claimed(doc: Doc, token: str, *, owner: str, now: datetime, lease_s: float) -> Doc:
    """Return what `claim_update` makes of `doc` (a batch claim that took every job it found
    builds the documents itself instead of reading them back)."""
    was_running = doc.get("state") == JobState.RUNNING.value
    return {
        **doc,
        "rescued": was_running,
        "rescues": int(doc.get("rescues") or 0) + (1 if was_running else 0),
        "attempts": int(doc.get("attempts") or 0) + 1,
        "state": JobState.RUNNING.value,
        "lease_token": token,
        "lease_owner": owner,
        "lease_until": now + timedelta(seconds=lease_s),
        "started_at": now,
    }


def started(held: Lease, now: datetime) -> None:
    """Count a claimed job in the metrics (started, rescued, how long it waited)."""
    labels = (held.job.queue, held.job.task)
    metrics.JOBS_STARTED.labels(*labels).inc()
    if held.rescued:
        metrics.JOBS_RESCUED.labels(*labels).inc()
    metrics.JOB_WAIT_SECONDS.labels(*labels).observe(
        max((now - held.job.run_at).total_seconds(), 0)
    )


def claim(
    jobs: Collection[Doc],
    *,
    owner: str,
    queues: list[str],
    now: datetime,
    lease_s: float,
    suspects: Suspects,
) -> Lease | None:
    """Take the most urgent eligible job in one atomic write; None if nothing is due."""
    token = uuid.uuid4().hex
    update = claim_update({"$literal": token}, owner=owner, now=now, lease_s=lease_s)
    doc = jobs.find_one_and_update(
        eligible(queues, now, suspects),
        update,
        sort=CLAIM_SORT,
        return_document=ReturnDocument.AFTER,
    )
    if doc is None:
        return None
    held = Lease(Job.from_doc(doc), token, owner, bool(doc.get("rescued")), doc)
    started(held, now)
    return held


def suspect_due(jobs: Collection[Doc], queues: list[str], now: datetime) -> bool:
    """Return True if a suspect job is claimable now."""
    flt = eligible(queues, now, Suspects.ONLY)
    return jobs.find_one(flt, projection={"_id": 1}) is not None


def _fenced(jobs: Collection[Doc], held: Lease, update: Doc) -> bool:
    if jobs.update_one(held.fence(), update).matched_count:
        return True
    metrics.LEASES_LOST.labels(held.job.queue, held.job.task).inc()
    return False


def heartbeat(jobs: Collection[Doc], held: Lease, *, now: datetime, lease_s: float) -> bool:
    """Extend the lease from `now`; False if the lease was lost."""
    return _fenced(jobs, held, {"$set": {"lease_until": now + timedelta(seconds=lease_s)}})


def succeed(jobs: Collection[Doc], held: Lease, result: Any, *, now: datetime) -> Doc | None:
    """Store the result and mark the job succeeded; return the final document, None if lost."""
    _, after = transition(Transition.SUCCEED)
    stored = small_result(result)
    fields = {"state": after.value, "result": stored, "finished_at": now}
    if not _fenced(jobs, held, {"$set": fields, "$unset": DROP_LEASE}):
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
    if not _fenced(jobs, held, {"$set": fields, "$unset": DROP_LEASE}):
        return None
    metrics.JOBS_FAILED.labels(*labels).inc()
    if held.job.started_at is not None:
        metrics.JOB_RUN_SECONDS.labels(*labels).observe((now - held.job.started_at).total_seconds())
    return after


def expire(jobs: Collection[Doc], held: Lease, *, now: datetime, reason: str) -> bool:
    """Cancel a claimed job that is no longer wanted, without running it; False if lost."""
    _, after = transition(Transition.EXPIRE)
    fields = {"state": after.value, "last_error": reason, "finished_at": now}
    if not _fenced(jobs, held, {"$set": fields, "$unset": DROP_LEASE, "$inc": {"attempts": -1}}):
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
    if not _fenced(jobs, held, {"$set": fields, "$unset": DROP_LEASE}):
        return False
    metrics.JOBS_DEAD.labels(held.job.queue, held.job.task, reason.value).inc()
    return True


def release(jobs: Collection[Doc], held: Lease, *, reason: str, crash: Doc | None = None) -> bool:
    """Give the job back to pending at once; the interrupted attempt does not count."""
    _, after = transition(Transition.RELEASE)
    update: Doc = {
        "$set": {"state": after.value, **(crash or {})},
        "$inc": {"attempts": -1, **({"crashes": 1} if crash else {})},
        "$unset": {**DROP_LEASE, "lease_owner": ""},
    }
    if not _fenced(jobs, held, update):
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

"""Claims: the one definition of "due", and taking due jobs, one at a time or in batches.

A single claim is one atomic find_one_and_update in claim order (priority desc, run_at asc) over
the jobs that are due: pending with run_at <= now, or running with an expired lease. Taking a
running job whose lease expired is a *rescue* (its worker died or stalled): the same write counts
it in `rescues` and marks the lease `rescued` (rescue.py releases a dead consumer's jobs at once,
without waiting for the expiry).

Batch claims take k jobs in a constant number of round trips, each with its own lease token:

    claim_many   find the k most urgent due jobs (one query, in claim order) → one update_many
                 that takes those still due, giving each the token `<batch>-<job id>` (an update
                 pipeline computes it per document) → if it took all k, build their documents
                 from what was found plus the claim's changes; if another consumer took some
                 first (it modified fewer), read back the ones carrying this batch's tokens. Two
                 round trips without contention, three with. Suspects (jobs that crashed a
                 consumer) are never batched: they run alone, through the single claim.

Needs nothing beyond MongoDB 4.2 (update pipelines with $toString) and works on the local server.
MongoDB 8.0's sorted updateOne in a client bulkWrite could claim in one round trip; it would
need 8.0 on every deployment, so this is the portable form.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from pymongo import ReturnDocument
from pymongo.collection import Collection

from queue_worker import metrics
from queue_worker.job import Job, JobState
from queue_worker.lease import Lease

Doc = dict[str, Any]
CLAIM_SORT = [("priority", -1), ("run_at", 1)]
BATCH_ATTEMPTS = 3


class Suspects(StrEnum):
    """Which jobs a claim may take with respect to `crashes` (jobs that took a consumer down)."""

    EXCLUDE = "exclude"  # the consumer is running other jobs: only jobs that never crashed one
    ALLOW = "allow"  # the consumer is idle: anything, and if it gets a suspect it runs it alone
    ONLY = "only"  # the consumer drained itself to give a waiting suspect its isolated turn


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
    """The due jobs of `queues` a claim with this suspects mode may take."""
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


def claim_many(
    jobs: Collection[Doc],
    *,
    owner: str,
    queues: list[str],
    now: datetime,
    lease_s: float,
    limit: int,
) -> list[Lease]:
    """Take up to `limit` due jobs (never suspects), most urgent first; a batch whose every job
    another consumer took first tries again with fresh candidates (BATCH_ATTEMPTS times)."""
    for _ in range(BATCH_ATTEMPTS):
        found = list(
            jobs.find(eligible(queues, now, Suspects.EXCLUDE), sort=CLAIM_SORT, limit=limit)
        )
        if not found:
            return []
        leases = _take(jobs, found, owner=owner, queues=queues, now=now, lease_s=lease_s)
        if leases:
            return leases
    return []


def _take(
    jobs: Collection[Doc], found: list[Doc], *, owner: str, queues: list[str], now: datetime,
    lease_s: float,
) -> list[Lease]:  # fmt: skip
    due = eligible(queues, now, Suspects.EXCLUDE)
    batch = uuid.uuid4().hex
    tokens = {doc["_id"]: f"{batch}-{doc['_id']}" for doc in found}
    token_expr = {"$concat": [batch, "-", {"$toString": "$_id"}]}
    update = claim_update(token_expr, owner=owner, now=now, lease_s=lease_s)
    taken = jobs.update_many({**due, "_id": {"$in": list(tokens)}}, update).modified_count
    if taken == len(found):
        docs = [claimed(doc, tokens[doc["_id"]], owner=owner, now=now, lease_s=lease_s)
                for doc in found]  # fmt: skip
    elif taken == 0:
        docs = []
    else:
        ours = {d["_id"]: d for d in jobs.find({"lease_token": {"$in": list(tokens.values())}})}
        docs = [ours[doc["_id"]] for doc in found if doc["_id"] in ours]  # claim order
    leases = []
    for doc in docs:
        held = Lease(Job.from_doc(doc), tokens[doc["_id"]], owner, bool(doc.get("rescued")), doc)
        started(held, now)
        leases.append(held)
    return leases

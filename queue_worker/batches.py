"""Claims and acks in batches: k jobs in a constant number of round trips, each with its own
lease token, and the successes of jobs that finish together in one bulk write.

claim_many   find the k most urgent due jobs (one query, in claim order) → one update_many
             that takes those still due, giving each the token `<batch>-<job id>` (an update
             pipeline computes it per document) → if it took all k, build their documents from
             what was found plus the claim's changes; if another consumer took some first (it
             modified fewer), read back the ones carrying this batch's tokens. Two round trips
             without contention, three with. Suspects (jobs that crashed a consumer) are never
             batched: they run alone, through the single claim.
succeed_many one unordered bulk write of the fenced success updates; each also records the
             lease it was written under (`acked_lease`). If the bulk matched them all, every
             lease held; otherwise the jobs are read back and a job is ours exactly when its
             `acked_lease` is our token: a lost lease is still detected per job.

Needs nothing beyond MongoDB 4.2 (update pipelines with $toString) and works on the local server.
MongoDB 8.0's sorted updateOne in a client bulkWrite could claim in one round trip; it would
need 8.0 on every deployment, so this is the portable form.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from bson import ObjectId
from pymongo import UpdateOne
from pymongo.collection import Collection

from queue_worker import metrics
from queue_worker.job import Job, Transition, transition
from queue_worker.lease import (
    CLAIM_SORT,
    DROP_LEASE,
    Lease,
    Suspects,
    claim_update,
    claimed,
    eligible,
    small_result,
    started,
)

Doc = dict[str, Any]
ATTEMPTS = 3


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
    another consumer took first tries again with fresh candidates (ATTEMPTS times)."""
    for _ in range(ATTEMPTS):
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

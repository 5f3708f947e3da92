"""The backlog: new jobs wait in `jobs_backlog` and are promoted to `jobs` in small batches.

Why: a claim is one find_one_and_update on `jobs`, and on the local server its cost grows with
every document in that collection (it re-scans the whole collection for its write: ~2 ms at 100
documents, ~9 ms at 1,000, ~24 ms at 3,000). A burst of enqueues would make every claim of the
burst pay for all of it. So enqueues land in the backlog, and `jobs` only ever holds a batch of
due jobs plus the running, retrying and dead ones. On real MongoDB the claim is an index seek
either way; there a promotion is one cheap transaction per batch.

Order: a batch is the most urgent due jobs (priority desc, run_at asc), the claim's own order,
so jobs start in the order they would without a backlog, except that a job enqueued with a higher
priority than everything already promoted waits for at most one batch.

Atomicity: one promotion is one multi-document transaction (read the batch, insert it into
`jobs`, delete it from the backlog), so a job is in exactly one of the two collections at every
instant, even if the promoter dies half-way. Concurrent promoters pick the same batch; all but one
abort on the write conflict (or the duplicate _id) and try the next batch down.

A promoter killed inside its transaction leaves it open, holding its batch, until the server
aborts it (transactionLifetimeLimitSeconds: 60 s; a closed connection does not end it). So each
promotion registers its session id in `job_promotions` before it writes, and a promoter that
meets a conflict aborts (killSessions) the registered promotions older than STALE_PROMOTION_S.
Jobs with an idempotency key skip the backlog: their unique index lives on `jobs`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from pymongo.client_session import ClientSession
from pymongo.collection import Collection
from pymongo.errors import BulkWriteError, PyMongoError
from pymongo.read_concern import ReadConcern
from pymongo.write_concern import WriteConcern

from queue_worker import metrics
from queue_worker.claim import CLAIM_SORT, pending_due, queue_filter
from queue_worker.errors import only_duplicate_keys
from queue_worker.job import JobState

Doc = dict[str, Any]
TRANSIENT = "TransientTransactionError"
BATCHES_TRIED = 3
STALE_PROMOTION_S = 5.0  # a promotion takes ~30-60 ms; one open this long has lost its promoter


def supports_transactions(hello: Mapping[str, Any]) -> bool:
    """Return True if a server answering `hello` like this runs multi-document transactions."""
    return "setName" in hello or hello.get("msg") == "isdbgrid"


def promotable(queues: list[str], now: datetime) -> Doc:
    """Return the filter of backlog jobs that may be promoted now: due ones (the backlog only
    holds pending jobs, so the pending half of claim.due_filter)."""
    return {**queue_filter(queues), **pending_due(now)}


def promote(
    backlog: Collection[Doc],
    jobs: Collection[Doc],
    promotions: Collection[Doc],
    *,
    queues: list[str],
    now: datetime,
    limit: int,
) -> int:
    """Move up to `limit` of the most urgent due backlog jobs into `jobs`; return how many.

    On a conflict, open promotions older than STALE_PROMOTION_S are aborted and the next batch
    down is tried (up to BATCHES_TRIED): a promoter killed mid-transaction delays its batch by
    seconds, not by the server's transaction lifetime (60 s)."""
    client = backlog.database.client
    skip = 0
    for _ in range(BATCHES_TRIED):
        with client.start_session() as session:
            lsid = session.session_id["id"]
            registered = False
            try:
                with session.start_transaction(
                    read_concern=ReadConcern("snapshot"),
                    write_concern=WriteConcern(w="majority", j=True),
                ):
                    due = backlog.find(promotable(queues, now), session=session)
                    batch = list(due.sort(CLAIM_SORT).skip(skip).limit(limit))
                    if not batch:
                        return 0
                    # Outside the transaction, before it takes any lock: whoever finds this
                    # batch held can abort us if we die now.
                    promotions.insert_one({"_id": lsid, "since": now})
                    registered = True
                    return _move(backlog, jobs, session, batch)
            except BulkWriteError as exc:
                if not only_duplicate_keys(exc):
                    raise
            except PyMongoError as exc:
                if not exc.has_error_label(TRANSIENT):
                    raise
            finally:
                if registered:
                    promotions.delete_one({"_id": lsid})
        # A concurrent promoter, or a dead one's open transaction, holds this batch: abort it if
        # it is dead and try this batch again, else try the next one down.
        metrics.PROMOTIONS.labels("conflict").inc()
        if not abort_stale(promotions, now):
            skip += limit
    return 0


def abort_stale(promotions: Collection[Doc], now: datetime) -> int:
    """Abort promotions open for over STALE_PROMOTION_S (their promoter died); return how many.

    Harmless if the promoter is alive after all: its commit fails and it reports 0."""
    cutoff = now - timedelta(seconds=STALE_PROMOTION_S)
    stale = [doc["_id"] for doc in promotions.find({"since": {"$lt": cutoff}}, {"_id": 1})]
    if not stale:
        return 0
    promotions.database.client.admin.command("killSessions", [{"id": lsid} for lsid in stale])
    promotions.delete_many({"_id": {"$in": stale}})
    metrics.PROMOTIONS.labels("aborted_stale").inc(len(stale))
    return len(stale)


def _move(
    backlog: Collection[Doc], jobs: Collection[Doc], session: ClientSession, batch: list[Doc]
) -> int:
    ids = [doc["_id"] for doc in batch]
    jobs.insert_many(batch, ordered=True, session=session)
    deleted = backlog.delete_many(
        {"_id": {"$in": ids}, "state": JobState.PENDING.value}, session=session
    ).deleted_count
    if deleted != len(ids):
        # A job of the batch changed after our snapshot read (a cancel): undo the whole batch
        # and let the next promotion read it afresh.
        session.abort_transaction()
        return 0
    metrics.PROMOTIONS.labels("moved").inc()
    for queue, count in Counter(doc["queue"] for doc in batch).items():
        metrics.JOBS_PROMOTED.labels(queue).inc(count)
    return len(batch)

"""The job store: the one facade over the job collections (their names and which holds a job of
each state: layout.py). The write recipes it runs live beside it: enqueue.py (new job
documents), idempotency.py (keys), claim.py (claims), lease.py (fenced writes), rescue.py
(releases), archive.py (moving finished jobs out of `jobs`), indexes.py (what it relies on).

Write concerns, decided per write (a killed server loses un-journaled writes of the last ~70 ms):
    enqueue, cancel, revive        j=True  an accepted (or operator-changed) job is never lost
    succeed, fail, bury, release,  j=True  an outcome, once acknowledged, stays: the archiver may
    release_owner, archive copies          act on it (measured: +0.1-0.2 ms on a ~1 ms update)
    promotion (one transaction)    majority, j=True  a promoted batch is as durable as the
                                           enqueue that created it
    claim, heartbeat               w=1     losing one only means the job runs again (the old
                                           worker's fenced writes then match nothing), and jobs
                                           must be safe to run twice anyway
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from pymongo import ReturnDocument, WriteConcern
from pymongo.collection import Collection
from pymongo.database import Database

from queue_worker import archive, backlog, claim, indexes, layout, lease, metrics, rescue
from queue_worker.claim import Suspects
from queue_worker.enqueue import EnqueueRequest, as_request, new_job_doc
from queue_worker.errors import InvalidJobError
from queue_worker.idempotency import KEY_HOLD_S, KeyedEnqueue
from queue_worker.job import (
    CrashInfo,
    Job,
    JobState,
    Transition,
    parse_job_id,
    to_bson_time,
    transition,
    utcnow,
)
from queue_worker.lease import Lease
from queue_worker.settings import QueueSettings
from queue_worker.tasks import TaskRegistry

Doc = dict[str, Any]
Clock = Callable[[], datetime]


class JobStore:
    """Enqueue, read and change jobs; every state change follows job.TRANSITIONS."""

    def __init__(
        self,
        db: Database[Doc],
        settings: QueueSettings,
        *,
        registry: TaskRegistry | None = None,
        clock: Clock = utcnow,
    ) -> None:
        self.db = db
        self.settings = settings
        self.registry = registry
        self.clock = clock
        self.jobs: Collection[Doc] = db[layout.JOBS]
        self.backlog: Collection[Doc] = db[layout.BACKLOG]
        self.promotions: Collection[Doc] = db[layout.PROMOTIONS]
        self.done: Collection[Doc] = db[layout.DONE]
        self.keys: Collection[Doc] = db[layout.KEYS]
        self.in_move_order = self.locations()
        journaled = WriteConcern(w=1, j=True)
        self._jobs_j = self.jobs.with_options(write_concern=journaled)
        self._backlog_j = self.backlog.with_options(write_concern=journaled)
        self._done_j = self.done.with_options(write_concern=journaled)
        self._keyed = KeyedEnqueue(self.jobs, self._jobs_j, self.keys, self.done)

    # -- setup -------------------------------------------------------------------------------

    def ensure_indexes(self) -> None:
        """Check the server can run the queue and create every index it relies on (indexes.py);
        safe to run at every start."""
        indexes.ensure(self.db, self.settings)

    # -- enqueue -----------------------------------------------------------------------------

    def enqueue(
        self,
        task: str,
        payload: Mapping[str, Any] | None = None,
        *,
        queue: str | None = None,
        priority: int | None = None,
        delay_s: float | None = None,
        run_at: datetime | None = None,
        max_attempts: int | None = None,
        timeout_s: float | None = None,
        idempotency_key: str | None = None,
        submitted_by: str | None = None,
        start_by: datetime | None = None,
        journaled: bool = True,
    ) -> Job:
        """Store a new pending job (journaled) and return it; with a key, return the key's job.
        A job claimed after `start_by` is cancelled without running. `journaled=False` (an
        unkeyed job only) skips the wait for the journal: for best-effort jobs, whose loss in a
        server crash of the next ~100 ms is acceptable."""
        request = EnqueueRequest(
            task, payload, queue, priority, delay_s, run_at, max_attempts, timeout_s,
            idempotency_key, submitted_by, start_by,
        )  # fmt: skip
        return self.enqueue_many([request], journaled=journaled)[0]

    def enqueue_many(
        self, requests: Iterable[EnqueueRequest | Mapping[str, Any]], *, journaled: bool = True
    ) -> list[Job]:
        """Store many jobs; unkeyed ones in one batch into the backlog (backlog.py), journaled
        unless `journaled=False`. Returns them in request order."""
        now = to_bson_time(self.clock())
        docs = [self._new_doc(as_request(r), now) for r in requests]
        plain = [d for d in docs if "idempotency_key" not in d]
        if plain:
            (self._backlog_j if journaled else self.backlog).insert_many(plain, ordered=True)
        jobs: list[Job] = []
        for doc in docs:
            if "idempotency_key" in doc:
                jobs.append(self._keyed.enqueue(doc, now)[0])
            else:
                jobs.append(Job.from_doc(doc))
                metrics.JOBS_ENQUEUED.labels(doc["queue"], doc["task"]).inc()
        return jobs

    def enqueue_once(self, request: EnqueueRequest) -> tuple[Job, bool]:
        """Enqueue a keyed job; return the key's job and whether this call created it (False:
        the key already had a job, pending, running or finished within retention)."""
        if request.idempotency_key is None:
            raise InvalidJobError("enqueue_once needs an idempotency key")
        now = to_bson_time(self.clock())
        return self._keyed.enqueue(self._new_doc(request, now), now)

    def _new_doc(self, req: EnqueueRequest, now: datetime) -> Doc:
        spec = self.registry.get(req.task) if self.registry is not None else None
        return new_job_doc(req, now, self.settings, spec)

    # -- where jobs are ----------------------------------------------------------------------

    def locations(self, state: JobState | None = None) -> tuple[Collection[Doc], ...]:
        """Return the collections a job of `state` can be in, in the order jobs move (all of
        them for None; layout.locations is the table)."""
        return tuple(self.db[name] for name in layout.locations(state))

    def unfinished(self) -> tuple[Collection[Doc], ...]:
        """Return the collections of pending, running and dead jobs (layout.UNFINISHED)."""
        return tuple(self.db[name] for name in layout.UNFINISHED)

    def count_active(self, submitted_by: str, *, limit: int) -> int:
        """Count one submitter's pending and running jobs, stopping at `limit`."""
        flt = {
            "submitted_by": submitted_by,
            "state": {"$in": [JobState.PENDING.value, JobState.RUNNING.value]},
        }
        total = 0
        for collection in self.locations(JobState.PENDING):
            total += collection.count_documents(flt, limit=max(1, limit - total))
            if total >= limit:
                break
        return total

    @staticmethod
    def due_filter(queues: Sequence[str] | None, now: datetime) -> Doc:
        """Return the filter of jobs someone should be running now (claim.due_filter)."""
        return claim.due_filter(None if queues is None else list(queues), now)

    def queue_names(self, queues: Sequence[str] | None) -> list[str]:
        """The queues a call names: None is the default queue; an empty list is no queue."""
        return [self.settings.default_queue] if queues is None else list(queues)

    # -- reads -------------------------------------------------------------------------------

    def get(self, job_id: str) -> Job | None:
        """Return the job with this id, finished ones included; None if malformed or unknown."""
        oid = parse_job_id(job_id)
        if oid is None:
            return None
        # A job moving meanwhile is found in the next collection.
        for collection in self.in_move_order:
            doc = collection.find_one({"_id": oid})
            if doc is not None:
                return Job.from_doc(doc)
        return None

    def find_by_key(self, idempotency_key: str) -> Job | None:
        """Return the job an idempotency key already stands for, or None."""
        return self._keyed.job_for_key(idempotency_key)

    # -- admin transitions -------------------------------------------------------------------

    def cancel(self, job_id: str) -> Job | None:
        """Cancel a pending job and archive it; return it, or None if it was not pending."""
        oid = parse_job_id(job_id)
        if oid is None:
            return None
        before, after = transition(Transition.CANCEL)
        # The backlog first: a promotion racing us moves the job into `jobs`, where we look next.
        for source, source_j in ((self.backlog, self._backlog_j), (self.jobs, self._jobs_j)):
            doc = source_j.find_one_and_update(
                {"_id": oid, "state": before.value},
                {"$set": {"state": after.value, "finished_at": to_bson_time(self.clock())}},
                return_document=ReturnDocument.AFTER,
            )
            if doc is not None:
                metrics.JOBS_CANCELLED.labels(doc["queue"], doc["task"]).inc()
                archive.move(source, self._done_j, self.keys, [doc])
                return Job.from_doc(doc)
        return None

    def revive(self, job_id: str) -> Job | None:
        """Send a dead job back to pending with fresh attempts; None if it was not dead."""
        oid = parse_job_id(job_id)
        if oid is None:
            return None
        before, after = transition(Transition.REVIVE)
        # crashes is kept: a revived poison job stays "suspect" and runs isolated.
        doc = self._jobs_j.find_one_and_update(
            {"_id": oid, "state": before.value},
            {
                "$set": {"state": after.value, "run_at": to_bson_time(self.clock()), "attempts": 0},
                "$unset": {"dead_reason": "", "finished_at": ""},
            },
            return_document=ReturnDocument.AFTER,
        )
        return Job.from_doc(doc) if doc is not None else None

    # -- claims and leases (recipes in claim.py, lease.py, rescue.py) -----------------------

    def claim(
        self,
        owner: str,
        *,
        queues: Sequence[str] | None = None,
        now: datetime | None = None,
        suspects: Suspects = Suspects.EXCLUDE,
    ) -> Lease | None:
        """Atomically take the next due job (or one whose lease expired) for `owner`.

        When `jobs` has nothing due, the next batch is promoted from the backlog first."""
        names = self.queue_names(queues)
        if not names:
            return None
        at = to_bson_time(now or self.clock())
        for _ in range(2):
            held = claim.claim(
                self.jobs, owner=owner, queues=names, now=at, lease_s=self.settings.lease_s,
                suspects=suspects,
            )  # fmt: skip
            if held is not None or suspects is Suspects.ONLY:
                return held  # suspects never wait in the backlog: they were claimed before
            if not self.promote(names, now=at):
                return None
        return None

    def claim_many(
        self,
        owner: str,
        *,
        limit: int,
        queues: Sequence[str] | None = None,
        now: datetime | None = None,
    ) -> list[Lease]:
        """Take up to `limit` due jobs at once, never suspects (claim.claim_many); promote a batch
        from the backlog first when `jobs` has none due."""
        names = self.queue_names(queues)
        if not names:
            return []
        at = to_bson_time(now or self.clock())
        for _ in range(2):
            held = claim.claim_many(
                self.jobs, owner=owner, queues=names, now=at, lease_s=self.settings.lease_s,
                limit=limit,
            )  # fmt: skip
            if held or not self.promote(names, now=at):
                return held
        return []

    def promote(self, queues: Sequence[str] | None = None, *, now: datetime | None = None) -> int:
        """Move the next batch of due jobs from the backlog into `jobs`; return how many."""
        names = self.queue_names(queues)
        if not names:
            return 0
        return backlog.promote(
            self.backlog,
            self.jobs,
            self.promotions,
            queues=names,
            now=to_bson_time(now or self.clock()),
            limit=self.settings.promote_batch,
        )

    def heartbeat(self, held: Lease, *, now: datetime | None = None) -> bool:
        """Extend a lease; False if the job was lost (lease taken over or released)."""
        return lease.heartbeat(
            self.jobs, held, now=now or self.clock(), lease_s=self.settings.lease_s
        )

    def succeed(
        self, held: Lease, result: Any = None, *, now: datetime | None = None
    ) -> Doc | None:
        """Mark a leased job succeeded; return its final document, or None if the lease was lost."""
        return lease.succeed(self._jobs_j, held, result, now=to_bson_time(now or self.clock()))

    def succeed_many(
        self, items: Sequence[tuple[Lease, Any]], *, now: datetime | None = None
    ) -> list[Doc | None]:
        """Mark several leased jobs succeeded in one bulk write (lease.succeed_many); return each
        final document, None where the lease was lost."""
        at = to_bson_time(now or self.clock())
        return lease.succeed_many(self._jobs_j, self.done, items, now=at)

    def expire(self, held: Lease, *, reason: str, now: datetime | None = None) -> bool:
        """Cancel a leased job that is no longer wanted, without running it; False if lost."""
        at = to_bson_time(now or self.clock())
        return lease.expire(self._jobs_j, held, now=at, reason=reason)

    def superseded_by(self, held: Lease) -> str | None:
        """Return the id of the earlier, finished job of this job's key if this job is an
        orphaned duplicate of it (its enqueuer died before finding that job), else None."""
        return self._keyed.superseded_by(held.doc)

    def fail(
        self,
        held: Lease,
        error: BaseException | str,
        *,
        retryable: bool = True,
        now: datetime | None = None,
        min_delay_s: float = 0.0,
    ) -> JobState | None:
        """Record a failed attempt: retry with backoff (at least `min_delay_s`), or dead; None
        if the lease was lost."""
        return lease.fail(
            self._jobs_j, held, error, retryable=retryable, now=to_bson_time(now or self.clock()),
            settings=self.settings, min_delay_s=min_delay_s,
        )  # fmt: skip

    def release(self, held: Lease, *, reason: str = "shutdown") -> bool:
        """Give a leased job back to pending without counting its attempt."""
        return rescue.release(self._jobs_j, held, reason=reason)

    def release_owner(
        self, owner: str, *, crash: CrashInfo | None = None, reason: str | None = None
    ) -> int:
        """Release every running job of `owner` at once; with crash info, count crashes/poison."""
        return rescue.release_owner(
            self._jobs_j, owner, crash=crash, reason=reason or ("crash" if crash else "shutdown"),
            now=to_bson_time(self.clock()), poison_crashes=self.settings.poison_crashes,
        )  # fmt: skip

    def suspect_due(
        self, queues: Sequence[str] | None = None, *, now: datetime | None = None
    ) -> bool:
        """Return True if a suspect job (one that crashed a consumer) is waiting to be claimed."""
        names = self.queue_names(queues)
        at = to_bson_time(now or self.clock())
        return bool(names) and claim.suspect_due(self.jobs, names, at)

    # -- archive (recipes in archive.py) -----------------------------------------------------

    def archive(self, docs: Sequence[Doc]) -> int:
        """Move finished job documents from `jobs` to `jobs_done`; return how many left `jobs`."""
        return archive.move(self.jobs, self._done_j, self.keys, docs)

    def archive_finished(self, limit: int = 500) -> int:
        """Find finished jobs left in `jobs` or the backlog (a crashed archiver's) and move them."""
        return sum(
            archive.sweep(source, self._done_j, self.keys, limit=limit)
            for source in (self.jobs, self.backlog)
        )


__all__ = ["KEY_HOLD_S", "EnqueueRequest", "JobStore", "utcnow"]

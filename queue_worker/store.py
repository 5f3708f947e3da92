"""The job store: the only place that talks to the job collections (pymongo lives here, lease.py
and archive.py hold the write recipes it runs).

Collections:
    jobs        every pending, running and dead job. Claims scan it, so it is kept small:
                succeeded and cancelled jobs leave it for `jobs_done` (see archive.py).
    jobs_done   succeeded and cancelled jobs, removed by a TTL index on finished_at
                (QUEUE_RETENTION_S) on real MongoDB and on the local server alike.
    job_keys    one marker per idempotency key whose job reached jobs_done (TTL like jobs_done),
                so a later enqueue with that key finds the finished job by _id, not by a scan.

Write concerns, decided per write (a killed server loses un-journaled writes of the last ~70 ms):
    enqueue, cancel, revive, archive copies   j=True: an accepted job is never lost
    claim, heartbeat, succeed, retry, release w=1 (default): losing one only means the job runs
                                              again after its lease expires, and jobs must be
                                              safe to run twice anyway
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from bson import ObjectId
from pymongo import ASCENDING, DESCENDING, MongoClient, ReturnDocument, WriteConcern
from pymongo.collection import Collection
from pymongo.database import Database
from pymongo.errors import DuplicateKeyError

from queue_worker import archive, lease, metrics
from queue_worker.errors import InvalidJobError, QueueError
from queue_worker.job import CrashInfo, Job, JobState, Transition, parse_job_id, transition
from queue_worker.settings import QueueSettings
from queue_worker.tasks import TaskRegistry

Doc = dict[str, Any]
Clock = Callable[[], datetime]

# A keyed job is inserted unclaimable (run_at this far ahead) until the enqueue has checked that
# no finished job holds its key; if the enqueuer dies in between, the job still runs, this late.
KEY_HOLD_S = 60.0
MAX_KEY_LENGTH = 200
TTL_INDEX = "finished_ttl"


def utcnow() -> datetime:
    """Return the current time, timezone-aware UTC."""
    return datetime.now(UTC)


def to_bson_time(value: datetime) -> datetime:
    """Return `value` truncated to what BSON stores (milliseconds), so copies compare equal."""
    return value.replace(microsecond=value.microsecond // 1000 * 1000)


def owner_id(pid: int | None = None) -> str:
    """Return the lease owner name of a consumer process: host and pid."""
    return f"{socket.gethostname()}:{pid or os.getpid()}"


def connect(
    settings: QueueSettings, *, app_name: str, max_pool_size: int = 10, timeout_ms: int = 5000
) -> MongoClient[Doc]:
    """Create a client for the settings' URI (tz-aware UTC datetimes); create it after forking."""
    return MongoClient(
        settings.mongodb_uri,
        tz_aware=True,
        tzinfo=UTC,
        appname=app_name,
        maxPoolSize=max_pool_size,
        serverSelectionTimeoutMS=timeout_ms,
        connectTimeoutMS=timeout_ms,
    )


def database(client: MongoClient[Doc], settings: QueueSettings) -> Database[Doc]:
    """Return the queue's database on `client`."""
    return client[settings.mongodb_database]


@dataclass(frozen=True)
class EnqueueRequest:
    """The arguments of one `JobStore.enqueue`, for `enqueue_many`."""

    task: str
    payload: Mapping[str, Any] | None = None
    queue: str | None = None
    priority: int | None = None
    delay_s: float | None = None
    run_at: datetime | None = None
    max_attempts: int | None = None
    timeout_s: float | None = None
    idempotency_key: str | None = None
    submitted_by: str | None = None


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
        self.jobs: Collection[Doc] = db["jobs"]
        self.done: Collection[Doc] = db["jobs_done"]
        self.keys: Collection[Doc] = db["job_keys"]
        journaled = WriteConcern(w=1, j=True)
        self._jobs_j = self.jobs.with_options(write_concern=journaled)
        self._done_j = self.done.with_options(write_concern=journaled)

    # -- setup -------------------------------------------------------------------------------

    def ensure_indexes(self) -> None:
        """Create every index the queue relies on; safe to run at every start."""
        # Claim order: equality on queue and state, then priority desc, run_at asc.
        self.jobs.create_index(
            [
                ("queue", ASCENDING),
                ("state", ASCENDING),
                ("priority", DESCENDING),
                ("run_at", ASCENDING),
            ],
            name="claim_order",
        )
        self.jobs.create_index(
            "idempotency_key",
            name="idempotency_key_unique",
            unique=True,
            partialFilterExpression={"idempotency_key": {"$type": "string"}},
        )
        self.done.create_index([("queue", ASCENDING), ("state", ASCENDING)], name="queue_state")
        for collection in (self.done, self.keys):
            self._ensure_ttl(collection)

    def _ensure_ttl(self, collection: Collection[Doc]) -> None:
        # create_index fails on an existing index with another expiry; collMod changes it.
        existing = collection.index_information().get(TTL_INDEX)
        if existing is None:
            collection.create_index(
                "finished_at", name=TTL_INDEX, expireAfterSeconds=self.settings.retention_s
            )
        elif existing.get("expireAfterSeconds") != self.settings.retention_s:
            self.db.command(
                "collMod",
                collection.name,
                index={"name": TTL_INDEX, "expireAfterSeconds": self.settings.retention_s},
            )

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
    ) -> Job:
        """Store a new pending job (journaled) and return it; with a key, return the key's job."""
        request = EnqueueRequest(
            task, payload, queue, priority, delay_s, run_at, max_attempts, timeout_s,
            idempotency_key, submitted_by,
        )  # fmt: skip
        return self.enqueue_many([request])[0]

    def enqueue_many(self, requests: Iterable[EnqueueRequest | Mapping[str, Any]]) -> list[Job]:
        """Store many jobs; unkeyed ones in one journaled batch. Returns them in request order."""
        now = to_bson_time(self.clock())
        docs = [self._new_doc(_as_request(r), now) for r in requests]
        plain = [d for d in docs if "idempotency_key" not in d]
        if plain:
            self._jobs_j.insert_many(plain, ordered=True)
        jobs: list[Job] = []
        for doc in docs:
            if "idempotency_key" in doc:
                jobs.append(self._enqueue_keyed(doc, now))
            else:
                jobs.append(Job.from_doc(doc))
                metrics.JOBS_ENQUEUED.labels(doc["queue"], doc["task"]).inc()
        return jobs

    def _new_doc(self, req: EnqueueRequest, now: datetime) -> Doc:
        spec = self.registry.get(req.task) if self.registry is not None else None
        if not isinstance(req.task, str) or not req.task:
            raise InvalidJobError("task must be a non-empty string")
        payload = dict(req.payload or {})
        _check_json(payload)
        doc: Doc = {
            "_id": ObjectId(),
            "queue": _choose(req.queue, spec.queue if spec else None, self.settings.default_queue),
            "task": req.task,
            "payload": payload,
            "state": JobState.PENDING.value,
            "priority": _int(_choose(req.priority, spec.priority if spec else None, 0), "priority"),
            "run_at": _run_at(req, now),
            "attempts": 0,
            "max_attempts": _int(
                _choose(
                    req.max_attempts,
                    spec.max_attempts if spec else None,
                    self.settings.max_attempts,
                ),
                "max_attempts",
                minimum=1,
            ),  # fmt: skip
            "timeout_s": _positive(
                _choose(req.timeout_s, spec.timeout_s if spec else None, self.settings.timeout_s),
                "timeout_s",
            ),
            "created_at": now,
            "crashes": 0,
            "rescues": 0,
        }
        if not isinstance(doc["queue"], str) or not doc["queue"]:
            raise InvalidJobError("queue must be a non-empty string")
        if req.idempotency_key is not None:
            key = req.idempotency_key
            if not isinstance(key, str) or not 0 < len(key) <= MAX_KEY_LENGTH:
                raise InvalidJobError(f"idempotency_key must be 1..{MAX_KEY_LENGTH} characters")
            doc["idempotency_key"] = key
        if req.submitted_by is not None:
            doc["submitted_by"] = str(req.submitted_by)
        return doc

    def _enqueue_keyed(self, doc: Doc, now: datetime) -> Job:
        # The unique index on `jobs` lets one insert per key win. The winner's job is held
        # unclaimable until it has checked job_keys: the archiver writes a key's marker before it
        # deletes the finished job from `jobs`, so once our insert succeeded, any earlier job with
        # this key is already visible there, and we hand that one back instead.
        intended = doc["run_at"]
        held = dict(
            doc, run_at=max(intended, now + timedelta(seconds=KEY_HOLD_S)), hold_run_at=intended
        )
        for _ in range(10):
            try:
                self._jobs_j.insert_one(held)
            except DuplicateKeyError:
                existing = self._job_for_key(doc["idempotency_key"])
                if existing is not None:
                    return existing
                continue  # the key's job left `jobs` between our insert and our read
            finished = self._finished_job_for_key(doc["idempotency_key"])
            hold_filter = {"_id": doc["_id"], "state": "pending", "hold_run_at": {"$exists": True}}
            if finished is not None:
                self._jobs_j.delete_one(hold_filter)
                return finished
            self.jobs.update_one(
                hold_filter, {"$set": {"run_at": intended}, "$unset": {"hold_run_at": ""}}
            )
            metrics.JOBS_ENQUEUED.labels(doc["queue"], doc["task"]).inc()
            return Job.from_doc(doc)
        raise QueueError(f"could not settle idempotency key {doc['idempotency_key']!r}")

    def _job_for_key(self, key: str) -> Job | None:
        doc = self.jobs.find_one({"idempotency_key": key})
        if doc is None:
            return self._finished_job_for_key(key)
        if "hold_run_at" in doc:
            # Its enqueuer is still checking job_keys; we see what it sees.
            finished = self._finished_job_for_key(key)
            if finished is not None:
                return finished
            doc["run_at"] = doc.pop("hold_run_at")
        return Job.from_doc(doc)

    def _finished_job_for_key(self, key: str) -> Job | None:
        marker = self.keys.find_one({"_id": key})
        if marker is None:
            return None
        doc = self.done.find_one({"_id": marker["job_id"]})
        return Job.from_doc(doc) if doc is not None else None

    # -- reads -------------------------------------------------------------------------------

    def get(self, job_id: str) -> Job | None:
        """Return the job with this id, finished ones included; None if malformed or unknown."""
        oid = parse_job_id(job_id)
        if oid is None:
            return None
        doc = self.jobs.find_one({"_id": oid}) or self.done.find_one({"_id": oid})
        return Job.from_doc(doc) if doc is not None else None

    # -- admin transitions -------------------------------------------------------------------

    def cancel(self, job_id: str) -> Job | None:
        """Cancel a pending job and archive it; return it, or None if it was not pending."""
        oid = parse_job_id(job_id)
        if oid is None:
            return None
        before, after = transition(Transition.CANCEL)
        doc = self._jobs_j.find_one_and_update(
            {"_id": oid, "state": before.value},
            {"$set": {"state": after.value, "finished_at": to_bson_time(self.clock())}},
            return_document=ReturnDocument.AFTER,
        )
        if doc is None:
            return None
        metrics.JOBS_CANCELLED.labels(doc["queue"], doc["task"]).inc()
        self.archive([doc])
        return Job.from_doc(doc)

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

    # -- leases (recipes in lease.py) --------------------------------------------------------

    def claim(
        self,
        owner: str,
        *,
        queues: Sequence[str] | None = None,
        now: datetime | None = None,
        suspects: lease.Suspects = lease.Suspects.EXCLUDE,
    ) -> lease.Lease | None:
        """Atomically take the next due job (or one whose lease expired) for `owner`."""
        return lease.claim(
            self.jobs,
            owner=owner,
            queues=list(queues or [self.settings.default_queue]),
            now=to_bson_time(now or self.clock()),
            lease_s=self.settings.lease_s,
            suspects=suspects,
        )

    def heartbeat(self, held: lease.Lease, *, now: datetime | None = None) -> bool:
        """Extend a lease; False if the job was lost (lease taken over or released)."""
        return lease.heartbeat(
            self.jobs, held, now=now or self.clock(), lease_s=self.settings.lease_s
        )

    def succeed(
        self, held: lease.Lease, result: Any = None, *, now: datetime | None = None
    ) -> Doc | None:
        """Mark a leased job succeeded; return its final document, or None if the lease was lost."""
        return lease.succeed(self.jobs, held, result, now=to_bson_time(now or self.clock()))

    def fail(
        self,
        held: lease.Lease,
        error: BaseException | str,
        *,
        retryable: bool = True,
        now: datetime | None = None,
    ) -> JobState | None:
        """Record a failed attempt: retry with backoff, or dead; None if the lease was lost."""
        return lease.fail(
            self.jobs, held, error, retryable=retryable, now=to_bson_time(now or self.clock()),
            settings=self.settings,
        )  # fmt: skip

    def release(
        self, held: lease.Lease, *, reason: str = "shutdown", now: datetime | None = None
    ) -> bool:
        """Give a leased job back to pending without counting its attempt."""
        return lease.release(self.jobs, held, reason=reason)

    def release_owner(
        self, owner: str, *, crash: CrashInfo | None = None, reason: str | None = None
    ) -> int:
        """Release every running job of `owner` at once; with crash info, count crashes/poison."""
        return lease.release_owner(
            self.jobs, owner, crash=crash, reason=reason or ("crash" if crash else "shutdown"),
            now=to_bson_time(self.clock()), poison_crashes=self.settings.poison_crashes,
        )  # fmt: skip

    def suspect_due(
        self, queues: Sequence[str] | None = None, *, now: datetime | None = None
    ) -> bool:
        """Return True if a suspect job (one that crashed a consumer) is waiting to be claimed."""
        return lease.suspect_due(
            self.jobs,
            list(queues or [self.settings.default_queue]),
            to_bson_time(now or self.clock()),
        )

    # -- archive (recipes in archive.py) -----------------------------------------------------

    def archive(self, docs: Sequence[Doc]) -> int:
        """Move finished job documents from `jobs` to `jobs_done`; return how many left `jobs`."""
        return archive.move(self.jobs, self._done_j, self.keys, docs)

    def archive_finished(self, limit: int = 500) -> int:
        """Find finished jobs still in `jobs` (a crashed archiver's leftovers) and move them."""
        return archive.sweep(self.jobs, self._done_j, self.keys, limit=limit)


def _as_request(value: EnqueueRequest | Mapping[str, Any]) -> EnqueueRequest:
    if isinstance(value, EnqueueRequest):
        return value
    try:
        return EnqueueRequest(**value)
    except TypeError as exc:
        raise InvalidJobError(f"bad enqueue request: {exc}") from None


def _choose(*values: Any) -> Any:
    return next(v for v in values if v is not None)


def _int(value: Any, name: str, *, minimum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidJobError(f"{name} must be an integer")
    if minimum is not None and value < minimum:
        raise InvalidJobError(f"{name} must be >= {minimum}")
    return value


def _positive(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise InvalidJobError(f"{name} must be a positive number of seconds")
    return float(value)


def _run_at(req: EnqueueRequest, now: datetime) -> datetime:
    if req.run_at is not None and req.delay_s is not None:
        raise InvalidJobError("give delay_s or run_at, not both")
    if req.run_at is not None:
        if not isinstance(req.run_at, datetime) or req.run_at.tzinfo is None:
            raise InvalidJobError("run_at must be a timezone-aware datetime")
        return to_bson_time(req.run_at.astimezone(UTC))
    if req.delay_s is not None:
        if (
            isinstance(req.delay_s, bool)
            or not isinstance(req.delay_s, int | float)
            or not req.delay_s >= 0
        ):
            raise InvalidJobError("delay_s must be a number >= 0")
        return to_bson_time(now + timedelta(seconds=req.delay_s))
    return now


def _check_json(payload: dict[str, Any]) -> None:
    try:
        json.dumps(payload, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InvalidJobError(f"payload must be JSON-able: {exc}") from None


__all__ = [
    "EnqueueRequest",
    "JobStore",
    "connect",
    "database",
    "owner_id",
    "utcnow",
]

"""Idempotency keys: concurrent enqueues of one key create exactly one job, and a key whose job
already finished (and moved to jobs_done, within retention) returns that job.

The unique partial index on `jobs.idempotency_key` lets one insert per key win. The winner's job is
held unclaimable (run_at KEY_HOLD_S ahead, the intended time kept in hold_run_at) until it has
checked `job_keys`: the archiver writes a key's marker *before* it deletes the finished job from
`jobs`, so once our insert won, any earlier job with this key is already visible there, and we
withdraw our job and hand that one back. Losers read the winner's job; if it is still held they
check `job_keys` themselves and so answer exactly what the winner will (and, if the key has a
finished job, withdraw the held copy themselves). If the winner dies or times out between insert
and check, its job stays held: the next enqueue of the key withdraws it, or it becomes claimable
KEY_HOLD_S late, still marked as held, and the consumer that claims it makes the check then
(`superseded_by`) and cancels it unrun if the key had an earlier, finished job.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from pymongo.collection import Collection
from pymongo.errors import DuplicateKeyError

from queue_worker import metrics
from queue_worker.errors import QueueError
from queue_worker.job import Job

Doc = dict[str, Any]
KEY_HOLD_S = 60.0


class KeyedEnqueue:
    """The key protocol over `jobs` (plain and journaled handles), `job_keys` and `jobs_done`."""

    def __init__(
        self,
        jobs: Collection[Doc],
        jobs_journaled: Collection[Doc],
        keys: Collection[Doc],
        done: Collection[Doc],
    ) -> None:
        self.jobs = jobs
        self._jobs_j = jobs_journaled
        self.keys = keys
        self.done = done

    def enqueue(self, doc: Doc, now: datetime) -> tuple[Job, bool]:
        """Store the keyed job `doc` unless its key already has a job; return the key's job and
        whether it is the one this call stored."""
        intended = doc["run_at"]
        held = dict(
            doc, run_at=max(intended, now + timedelta(seconds=KEY_HOLD_S)), hold_run_at=intended
        )
        for _ in range(10):
            try:
                self._jobs_j.insert_one(held)
            except DuplicateKeyError:
                existing = self.job_for_key(doc["idempotency_key"])
                if existing is not None:
                    return existing, False
                continue  # the key's job left `jobs` between our insert and our read
            finished = self._finishedjob_for_key(doc["idempotency_key"])
            hold_filter = {"_id": doc["_id"], "state": "pending", "hold_run_at": {"$exists": True}}
            if finished is not None:
                self._jobs_j.delete_one(hold_filter)
                return finished, False
            self.jobs.update_one(
                hold_filter, {"$set": {"run_at": intended}, "$unset": {"hold_run_at": ""}}
            )
            metrics.JOBS_ENQUEUED.labels(doc["queue"], doc["task"]).inc()
            return Job.from_doc(doc), True
        raise QueueError(f"could not settle idempotency key {doc['idempotency_key']!r}")

    def superseded_by(self, doc: Doc) -> str | None:
        """For a claimed job still marked held (its enqueuer died before its check): return the
        id of the key's earlier finished job, if there is one."""
        if "hold_run_at" not in doc or "idempotency_key" not in doc:
            return None
        marker = self.keys.find_one({"_id": doc["idempotency_key"]})
        if marker is None or marker["job_id"] == doc["_id"]:
            return None
        return str(marker["job_id"])

    def job_for_key(self, key: str) -> Job | None:
        """Return the job `key` stands for (pending, running, or finished within retention)."""
        doc = self.jobs.find_one({"idempotency_key": key})
        if doc is None:
            return self._finishedjob_for_key(key)
        if "hold_run_at" in doc:
            # Its enqueuer is still checking job_keys (or died or timed out doing so); we see
            # what it sees. With a finished job for the key, the held copy is withdrawn here as
            # its enqueuer would withdraw it, rather than lingering until a claim cancels it.
            finished = self._finishedjob_for_key(key)
            if finished is not None:
                self._jobs_j.delete_one(
                    {"_id": doc["_id"], "state": "pending", "hold_run_at": {"$exists": True}}
                )
                return finished
            doc["run_at"] = doc.pop("hold_run_at")
        return Job.from_doc(doc)

    def _finishedjob_for_key(self, key: str) -> Job | None:
        marker = self.keys.find_one({"_id": key})
        if marker is None:
            return None
        doc = self.done.find_one({"_id": marker["job_id"]})
        return Job.from_doc(doc) if doc is not None else None

"""Operator controls that consumers obey: paused queues, and the consumers' own registry.

queue_controls  {_id: queue, paused: true, paused_at, paused_by}: a paused queue is claimed by
                no consumer (each re-reads the set every CONTROLS_EVERY_S, so a pause takes
                effect within that; jobs already running finish)
workers         {_id: owner, host, pid, ppid, started_at, seen_at, queues, concurrency,
                running: [{id, task}], rss_mb}: each consumer's heartbeat every
                WORKER_EVERY_S, forgotten by a TTL index a minute after the last, removed at
                a clean exit; the dashboard's process list (the supervisor master holds no
                database connection, so its consumers speak for it: ppid)
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from pymongo.collection import Collection
from pymongo.database import Database
from pymongo.errors import DuplicateKeyError

from queue_worker.layout import QUEUE_CONTROLS, WORKERS

CONTROLS_EVERY_S = 2.0
WORKER_EVERY_S = 5.0
WORKER_FORGET_S = 60
Doc = dict[str, Any]


class Controls:
    """Read and write queue pauses and consumer heartbeats."""

    def __init__(self, db: Database[Doc]) -> None:
        self.queues: Collection[Doc] = db[QUEUE_CONTROLS]
        self.workers: Collection[Doc] = db[WORKERS]

    def ensure_indexes(self) -> None:
        """Create the TTL index that forgets a silent consumer."""
        self.workers.create_index("seen_at", name="seen_ttl", expireAfterSeconds=WORKER_FORGET_S)

    def paused(self, queues: Iterable[str] | None = None) -> set[str]:
        """Return the paused queues (of `queues`, if given)."""
        query: Doc = {"paused": True}
        if queues is not None:
            query["_id"] = {"$in": list(queues)}
        return {doc["_id"] for doc in self.queues.find(query, {"_id": 1})}

    def pause(self, queue: str, *, by: str, now: datetime) -> bool:
        """Pause a queue; False if it was paused already. One conditional upsert: a document
        exists exactly while its queue is paused (resume deletes it), so of racing pauses the
        one that inserts it wins."""
        try:
            result = self.queues.update_one(
                {"_id": queue},
                {"$setOnInsert": {"paused": True, "paused_at": now, "paused_by": by}},
                upsert=True,
            )
        except DuplicateKeyError:
            return False  # a racing pause inserted it between our match and our insert
        return result.upserted_id is not None

    def resume(self, queue: str) -> bool:
        """Resume a paused queue; False if it was not paused."""
        return self.queues.delete_one({"_id": queue, "paused": True}).deleted_count == 1

    def heartbeat(self, owner: str, fields: Doc, *, now: datetime) -> None:
        """Record that consumer `owner` is alive, with what it runs."""
        self.workers.update_one(
            {"_id": owner},
            {"$set": {**fields, "seen_at": now}, "$setOnInsert": {"started_at": now}},
            upsert=True,
        )

    def gone(self, owner: str) -> None:
        """Take consumer `owner` out of the registry (a clean exit)."""
        self.workers.delete_one({"_id": owner})

    def alive(self, *, since: datetime) -> list[Doc]:
        """Return the consumers heard from since `since`, by owner."""
        return list(self.workers.find({"seen_at": {"$gte": since}}).sort("_id", 1))


def identity() -> Doc:
    """This process's host, pid and parent (the supervisor master, for a consumer child)."""
    return {"host": socket.gethostname(), "pid": os.getpid(), "ppid": os.getppid()}

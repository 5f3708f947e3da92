"""Every index the queue relies on, created at start (`ensure`): safe to run at every start.

jobs          claim_order (queue, state, priority desc, run_at): claims and promotion scans
              idempotency_key_unique (partial: string keys): one job per key
              schedule_state (partial): a schedule's pending or running job (overlap check)
jobs_backlog  promote_order, like claim_order
jobs_done     queue_state; finished_ttl on finished_at (QUEUE_RETENTION_S)
job_keys      finished_ttl, like jobs_done: a key is remembered as long as its job
backlog, jobs submitter_state (partial): a user's active jobs (the API's limit)
all three     state_created (state, created_at desc): operator listings, newest first
workers       seen_ttl: a silent consumer is forgotten (controls.py)
job_counts    minute_ttl (tally.py)
"""

from __future__ import annotations

from typing import Any

from pymongo import ASCENDING, DESCENDING
from pymongo.collection import Collection
from pymongo.database import Database

from queue_worker import backlog, layout, tally
from queue_worker.controls import Controls
from queue_worker.errors import ConfigError
from queue_worker.settings import QueueSettings

Doc = dict[str, Any]
TTL_INDEX = "finished_ttl"
CLAIM_ORDER = [
    ("queue", ASCENDING),
    ("state", ASCENDING),
    ("priority", DESCENDING),
    ("run_at", ASCENDING),
]


def ensure(db: Database[Doc], settings: QueueSettings) -> None:
    """Check the server can run the queue and create every index it relies on. Raises
    ConfigError on a server without transactions (a standalone mongod): promotion from the
    backlog needs them."""
    if not backlog.supports_transactions(db.client.admin.command("hello")):
        raise ConfigError(
            "MongoDB must be a replica set (a single node may be a one-member set) or a "
            "sharded cluster: the queue promotes jobs from its backlog in transactions"
        )
    jobs, pending_places = db[layout.JOBS], [db[name] for name in layout.UNFINISHED]
    jobs.create_index(CLAIM_ORDER, name="claim_order")
    jobs.create_index(
        "idempotency_key",
        name="idempotency_key_unique",
        unique=True,
        partialFilterExpression={"idempotency_key": {"$type": "string"}},
    )
    db[layout.BACKLOG].create_index(CLAIM_ORDER, name="promote_order")
    db[layout.DONE].create_index([("queue", ASCENDING), ("state", ASCENDING)], name="queue_state")
    for collection in pending_places:
        collection.create_index(
            [("submitted_by", ASCENDING), ("state", ASCENDING)],
            name="submitter_state",
            partialFilterExpression={"submitted_by": {"$type": "string"}},
        )
    jobs.create_index(
        [("schedule", ASCENDING), ("state", ASCENDING)],
        name="schedule_state",
        partialFilterExpression={"schedule": {"$type": "string"}},
    )
    for name in layout.IN_MOVE_ORDER:
        db[name].create_index(
            [("state", ASCENDING), ("created_at", DESCENDING)], name="state_created"
        )
    Controls(db).ensure_indexes()
    tally.ensure_indexes(db)
    for name in (layout.DONE, layout.KEYS):
        _ensure_ttl(db, db[name], settings.retention_s)


def _ensure_ttl(db: Database[Doc], collection: Collection[Doc], retention_s: int) -> None:
    # create_index fails on an existing index with another expiry; collMod changes it.
    existing = collection.index_information().get(TTL_INDEX)
    if existing is None:
        collection.create_index("finished_at", name=TTL_INDEX, expireAfterSeconds=retention_s)
    elif existing.get("expireAfterSeconds") != retention_s:
        db.command(
            "collMod",
            collection.name,
            index={"name": TTL_INDEX, "expireAfterSeconds": retention_s},
        )

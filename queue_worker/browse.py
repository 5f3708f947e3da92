"""Reading the queue for people: filtered, searched, capped and time-boxed listings.

Every query names a limit and a server time limit (`max_time_ms`); counts stop at COUNT_CAP (a
caller shows "10,000+"). Filters use the `state_created` index (state, created_at) where a state
is given; a payload search (`payload.<field> = value`) is not index-backed, so its time limit is
what bounds it. The one job listing: the dashboard's pages and the CLI's `list` both use it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bson import ObjectId
from bson.errors import InvalidId
from pymongo import DESCENDING
from pymongo.errors import ExecutionTimeout

from queue_worker.job import Job, JobState
from queue_worker.store import JobStore

Doc = dict[str, Any]
COUNT_CAP = 10_000
MAX_TIME_MS = 2_000
PAGE = 50


@dataclass(frozen=True)
class JobFilter:
    """What a listing shows: any of state, queue, task, created since; and a search."""

    state: JobState | None = None
    queue: str | None = None
    task: str | None = None
    since: datetime | None = None
    search: str | None = None  # a job id, an idempotency key, or payload.<field>=<value>
    due_after: datetime | None = None  # only jobs scheduled later than this (delayed ones)

    def query(self) -> Doc:
        """Return the filter as a MongoDB query."""
        query: Doc = {}
        if self.state is not None:
            query["state"] = self.state.value
        if self.queue:
            query["queue"] = self.queue
        if self.task:
            query["task"] = self.task
        if self.since is not None:
            query["created_at"] = {"$gte": self.since}
        if self.due_after is not None:
            query["run_at"] = {"$gt": self.due_after}
        if self.search:
            query.update(_search(self.search.strip()))
        return query

    def as_params(self) -> dict[str, str]:
        """The filter as query-string values (for links and the audit log)."""
        params = {
            "state": self.state.value if self.state else "",
            "queue": self.queue or "",
            "task": self.task or "",
            "since": self.since.isoformat() if self.since else "",
            "q": self.search or "",
        }
        return {k: v for k, v in params.items() if v}


PAYLOAD_FIELD = re.compile(r"payload(\.[A-Za-z0-9_-]{1,64}){1,8}")


def _search(text: str) -> Doc:
    field, equals, value = text.partition("=")
    if equals and PAYLOAD_FIELD.fullmatch(field):  # never an operator: no "$" gets through
        return {field: _scalar(value)}
    try:
        return {"$or": [{"_id": ObjectId(text)}, {"idempotency_key": text}]}
    except (InvalidId, TypeError):
        return {"idempotency_key": text}


def _scalar(raw: str) -> Any:
    """A payload value as typed: an integer, true/false, else the text."""
    if raw.lstrip("-").isdigit():
        return int(raw)
    return {"true": True, "false": False}.get(raw, raw)


def find_jobs(store: JobStore, flt: JobFilter, *, limit: int = PAGE) -> list[Job]:
    """Return up to `limit` jobs matching the filter, newest first (a search of a slow field
    that times out returns what it found: nothing)."""
    by_id: dict[ObjectId, Doc] = {}
    newest_first = [("created_at", DESCENDING), ("_id", DESCENDING)]
    for collection in store.locations(flt.state):
        try:
            cursor = collection.find(flt.query()).sort(newest_first).limit(limit)
            for doc in cursor.max_time_ms(MAX_TIME_MS):
                by_id.setdefault(doc["_id"], doc)  # a job being moved is in two for a moment
        except ExecutionTimeout:
            continue
    docs = sorted(by_id.values(), key=lambda d: (d["created_at"], d["_id"]), reverse=True)
    return [Job.from_doc(doc) for doc in docs[:limit]]


def count_jobs(store: JobStore, flt: JobFilter, *, cap: int = COUNT_CAP) -> tuple[int, bool]:
    """Count the matching jobs up to `cap`; return (count, whether it reached the cap)."""
    total = 0
    for collection in store.locations(flt.state):
        try:
            total += collection.count_documents(
                flt.query(), limit=cap + 1 - total, maxTimeMS=MAX_TIME_MS
            )
        except ExecutionTimeout:
            return total, True
        if total > cap:
            return cap, True
    return total, False

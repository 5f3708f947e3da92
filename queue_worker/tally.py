"""Jobs finished per minute, per queue and outcome: counted by each consumer in memory, added to
`job_counts` every FLUSH_EVERY_S by one bulk upsert, read by the dashboard.

Why counters and not a count of `jobs_done`: finished jobs accumulate (millions on a busy
system, kept for the retention period), and a dashboard that counted them every few seconds
would become the load on the database it watches. Sidekiq keeps the same kind of per-day
counters. The price: a consumer killed with -9 loses up to FLUSH_EVERY_S of its counts (the
jobs themselves are safe); the chart is a picture, the job documents are the record.

    job_counts  {_id: "<minute ISO>|<queue>|<outcome>", minute, queue, outcome, n}
                outcome: succeeded | failed (will retry) | dead; forgotten by a TTL index
                KEEP_S after the minute
"""

from __future__ import annotations

import threading
from collections import Counter
from datetime import datetime, timedelta
from typing import Any

from pymongo import UpdateOne
from pymongo.database import Database
from pymongo.errors import PyMongoError

from queue_worker.layout import COUNTS

FLUSH_EVERY_S = 5.0
KEEP_S = 2 * 86_400
OUTCOMES = ("succeeded", "failed", "dead")
Doc = dict[str, Any]


def minute_of(at: datetime) -> datetime:
    """Return the start of the minute `at` falls in."""
    return at.replace(second=0, microsecond=0)


class Tally:
    """One consumer's counts since its last flush (thread-safe: handler threads add)."""

    def __init__(self) -> None:
        self._counts: Counter[tuple[datetime, str, str]] = Counter()
        self._lock = threading.Lock()

    def add(self, queue: str, outcome: str, at: datetime) -> None:
        """Count one job of `queue` that ended with `outcome` at `at`."""
        with self._lock:
            self._counts[(minute_of(at), queue, outcome)] += 1

    def flush(self, db: Database[Doc]) -> int:
        """Add the counts to `job_counts` in one round trip; return how many buckets. On a
        database error the counts are kept for the next flush."""
        with self._lock:
            counts, self._counts = self._counts, Counter()
        if not counts:
            return 0
        ops = [
            UpdateOne(
                {"_id": f"{minute.isoformat()}|{queue}|{outcome}"},
                {
                    "$inc": {"n": n},
                    "$setOnInsert": {"minute": minute, "queue": queue, "outcome": outcome},
                },
                upsert=True,
            )  # fmt: skip
            for (minute, queue, outcome), n in counts.items()
        ]
        try:
            db[COUNTS].bulk_write(ops, ordered=False)
        except PyMongoError:
            with self._lock:
                self._counts.update(counts)
            raise
        return len(ops)


def ensure_indexes(db: Database[Doc]) -> None:
    """Create the TTL index that forgets counters after KEEP_S."""
    db[COUNTS].create_index("minute", name="minute_ttl", expireAfterSeconds=KEEP_S)


def per_minute(
    db: Database[Doc], now: datetime, *, minutes: int = 60
) -> tuple[dict[str, list[int]], dict[str, dict[str, int]]]:
    """Return the last `minutes` minutes as series per outcome (oldest first, the current
    minute last) and the totals per queue and outcome over them. At most minutes x queues x 3
    small documents, read through the TTL index."""
    first = minute_of(now) - timedelta(minutes=minutes - 1)
    series = {outcome: [0] * minutes for outcome in OUTCOMES}
    per_queue: dict[str, dict[str, int]] = {}
    for doc in db[COUNTS].find({"minute": {"$gte": first}}):
        slot = int((doc["minute"] - first).total_seconds() // 60)
        if 0 <= slot < minutes and doc["outcome"] in series:
            series[doc["outcome"]][slot] += doc["n"]
            totals = per_queue.setdefault(doc["queue"], dict.fromkeys(OUTCOMES, 0))
            totals[doc["outcome"]] += doc["n"]
    return series, per_queue

"""Failed-login rate limits per account and per client IP, in the `rate_limits` collection.

Fixed windows of `window_s`: one counter document per (scope, key, window), created by an upsert
`$inc` and dropped by a TTL index after its window ends. Every attempt is counted before the
password check and a successful login gives its attempt back, so the counters hold failures
plus attempts still in flight. Living in the database, the limits are
shared by every gunicorn worker and every API host. A limited client gets 429 with Retry-After
until its window ends, so there is never a permanent lockout. Account keys are SHA-256 digests
of the normalised email, so the collection holds no addresses.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo import ReturnDocument
from pymongo.collection import Collection
from pymongo.database import Database
from pymongo.errors import DuplicateKeyError

from api.errors import RateLimited

COLLECTION = "rate_limits"


class LoginRateLimiter:
    """Count failed logins per account and per IP; refuse further attempts over the limits."""

    def __init__(
        self, db: Database[Any], *, window_s: int, max_per_account: int, max_per_ip: int
    ) -> None:
        self._counters: Collection[Any] = db[COLLECTION]
        self._window_s = window_s
        self._limits = {"account": max_per_account, "ip": max_per_ip}

    def ensure_indexes(self) -> None:
        """Create the TTL index that drops counters of finished windows."""
        self._counters.create_index("expires_at", name="expires_ttl", expireAfterSeconds=0)

    def acquire(self, email: str, ip: str, *, now: datetime) -> None:
        """Count one login attempt against the account and the IP, before the password is
        checked; raise RateLimited if either is over its limit in this window.

        Counting first (one atomic increment each) bounds concurrent guessing too: twenty
        parallel attempts cannot all pass a check made before any of them was counted.
        """
        window_start, window_end = self._window(now)
        over: str | None = None
        for scope, counter_id in self._ids(email, ip, window_start).items():
            count = self._increment(counter_id, scope, window_end, 1)
            if count > self._limits[scope] and over is None:
                over = scope
        if over is not None:
            raise RateLimited((window_end - now).total_seconds(), scope=over)

    def release(self, email: str, ip: str, *, now: datetime) -> None:
        """Give back the attempt of a successful login: only failures use up the budget."""
        window_start, _ = self._window(now)
        for counter_id in self._ids(email, ip, window_start).values():
            self._counters.update_one(
                {"_id": counter_id, "count": {"$gt": 0}}, {"$inc": {"count": -1}}
            )

    def _increment(self, counter_id: str, scope: str, expires_at: datetime, by: int) -> int:
        update: dict[str, Any] = {
            "$inc": {"count": by},
            "$setOnInsert": {"scope": scope, "expires_at": expires_at},
        }
        try:
            doc = self._upsert(counter_id, update)
        except DuplicateKeyError:
            # Two first attempts raced to insert the counter; it exists now, so this updates it.
            doc = self._upsert(counter_id, update)
        return int(doc["count"]) if doc is not None else by

    def _upsert(self, counter_id: str, update: dict[str, Any]) -> dict[str, Any] | None:
        doc: dict[str, Any] | None = self._counters.find_one_and_update(
            {"_id": counter_id},
            update,
            upsert=True,
            return_document=ReturnDocument.AFTER,
            projection={"count": 1},
        )
        return doc

    def _window(self, now: datetime) -> tuple[datetime, datetime]:
        start_s = int(now.timestamp()) // self._window_s * self._window_s
        start = datetime.fromtimestamp(start_s, UTC)
        return start, start + timedelta(seconds=self._window_s)

    def _ids(self, email: str, ip: str, window_start: datetime) -> dict[str, str]:
        account = hashlib.sha256(email.encode("utf-8")).hexdigest()[:32]
        stamp = int(window_start.timestamp())
        return {"account": f"account:{account}:{stamp}", "ip": f"ip:{ip}:{stamp}"}

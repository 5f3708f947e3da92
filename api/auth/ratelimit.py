"""Failed-login rate limits per account and per client IP, in the `rate_limits` collection.

Fixed windows of `window_s`: one counter document per (scope, key, window), created by an upsert
`$inc` and dropped by a TTL index after its window ends. Living in the database, the limits are
shared by every gunicorn worker and every API host. A limited client gets 429 with Retry-After
until its window ends, so there is never a permanent lockout. Account keys are SHA-256 digests
of the normalised email, so the collection holds no addresses.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from typing import Any

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

    def check(self, email: str, ip: str, *, now: datetime) -> None:
        """Raise RateLimited if the account or the IP used up its failures in this window."""
        window_start, window_end = self._window(now)
        ids = self._ids(email, ip, window_start)
        for doc in self._counters.find({"_id": {"$in": list(ids.values())}}):
            scope = doc["scope"]
            if doc["count"] >= self._limits[scope]:
                raise RateLimited((window_end - now).total_seconds(), scope=scope)

    def record_failure(self, email: str, ip: str, *, now: datetime) -> None:
        """Count one failed login against the account and the IP."""
        window_start, window_end = self._window(now)
        for scope, counter_id in self._ids(email, ip, window_start).items():
            self._increment(counter_id, scope, window_end)

    def _increment(self, counter_id: str, scope: str, expires_at: datetime) -> None:
        update = {"$inc": {"count": 1}, "$setOnInsert": {"scope": scope, "expires_at": expires_at}}
        try:
            self._counters.update_one({"_id": counter_id}, update, upsert=True)
        except DuplicateKeyError:
            # Two concurrent upserts both tried to insert; the loser's retry is a plain update.
            self._counters.update_one({"_id": counter_id}, update, upsert=True)

    def _window(self, now: datetime) -> tuple[datetime, datetime]:
        start_s = int(now.timestamp()) // self._window_s * self._window_s
        start = datetime.fromtimestamp(start_s, UTC)
        return start, start + timedelta(seconds=self._window_s)

    def _ids(self, email: str, ip: str, window_start: datetime) -> dict[str, str]:
        account = hashlib.sha256(email.encode("utf-8")).hexdigest()[:32]
        stamp = int(window_start.timestamp())
        return {"account": f"account:{account}:{stamp}", "ip": f"ip:{ip}:{stamp}"}

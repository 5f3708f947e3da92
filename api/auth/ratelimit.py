"""Rate limits in the `rate_limits` collection: failed logins per account and per client IP,
and sign-ups per client IP.

    WindowCounters      the one mechanism: fixed-window counters in the database
    ├── LoginRateLimiter    failed logins per account and per IP (scopes "account", "ip")
    └── SignupRateLimiter   sign-ups per IP (scope "signup_ip")

Fixed windows of `window_s`: one counter document per (scope, key, window), created by an upsert
`$inc` and dropped by a TTL index after its window ends. Every attempt is counted before the
expensive step (the bcrypt check or hash), in one atomic increment, so concurrent attempts cannot
all pass a check made before any of them was counted. Living in the database, the limits are
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


class WindowCounters:
    """Count events per (scope, key) in fixed windows of `window_s`, in the database."""

    def __init__(self, db: Database[Any], *, window_s: int) -> None:
        self._counters: Collection[Any] = db[COLLECTION]
        self._window_s = window_s

    def ensure_indexes(self) -> None:
        """Create the TTL index that drops counters of finished windows."""
        self._counters.create_index("expires_at", name="expires_ttl", expireAfterSeconds=0)

    def hit(self, scope: str, key: str, *, now: datetime) -> tuple[int, datetime]:
        """Count one event; return the count in this window (this one included) and its end."""
        window_start, window_end = self._window(now)
        update: dict[str, Any] = {
            "$inc": {"count": 1},
            "$setOnInsert": {"scope": scope, "expires_at": window_end},
        }
        counter_id = self._id(scope, key, window_start)
        try:
            doc = self._upsert(counter_id, update)
        except DuplicateKeyError:
            # Two first events raced to insert the counter; it exists now, so this updates it.
            doc = self._upsert(counter_id, update)
        return (int(doc["count"]) if doc is not None else 1), window_end

    def give_back(self, scope: str, key: str, *, now: datetime) -> None:
        """Uncount one event of this window (never below zero)."""
        window_start, _ = self._window(now)
        self._counters.update_one(
            {"_id": self._id(scope, key, window_start), "count": {"$gt": 0}},
            {"$inc": {"count": -1}},
        )

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

    @staticmethod
    def _id(scope: str, key: str, window_start: datetime) -> str:
        return f"{scope}:{key}:{int(window_start.timestamp())}"


class LoginRateLimiter:
    """Count failed logins per account and per IP; refuse further attempts over the limits."""

    def __init__(
        self, db: Database[Any], *, window_s: int, max_per_account: int, max_per_ip: int
    ) -> None:
        self._counters = WindowCounters(db, window_s=window_s)
        self._limits = {"account": max_per_account, "ip": max_per_ip}

    def ensure_indexes(self) -> None:
        """Create the TTL index that drops counters of finished windows."""
        self._counters.ensure_indexes()

    def acquire(self, email: str, ip: str, *, now: datetime) -> None:
        """Count one login attempt against the account and the IP, before the password is
        checked; raise RateLimited if either is over its limit in this window.

        A successful login gives its attempt back (`release`), so the counters hold failures
        plus attempts still in flight.
        """
        over: RateLimited | None = None
        for scope, key in self._keys(email, ip).items():
            count, window_end = self._counters.hit(scope, key, now=now)
            if count > self._limits[scope] and over is None:
                over = RateLimited((window_end - now).total_seconds(), scope=scope)
        if over is not None:
            raise over

    def release(self, email: str, ip: str, *, now: datetime) -> None:
        """Give back the attempt of a successful login: only failures use up the budget."""
        for scope, key in self._keys(email, ip).items():
            self._counters.give_back(scope, key, now=now)

    @staticmethod
    def _keys(email: str, ip: str) -> dict[str, str]:
        account = hashlib.sha256(email.encode("utf-8")).hexdigest()[:32]
        return {"account": account, "ip": ip}


class SignupRateLimiter:
    """Count sign-ups per client IP; refuse further ones over the limit (each costs a bcrypt
    hash, so an unlimited client could keep every hashing thread busy)."""

    SCOPE = "signup_ip"

    def __init__(self, db: Database[Any], *, window_s: int, max_per_ip: int) -> None:
        self._counters = WindowCounters(db, window_s=window_s)
        self._max_per_ip = max_per_ip

    def ensure_indexes(self) -> None:
        """Create the TTL index that drops counters of finished windows."""
        self._counters.ensure_indexes()

    def acquire(self, ip: str, *, now: datetime) -> None:
        """Count one sign-up attempt from `ip`, before its password is hashed; raise
        RateLimited if the IP is over its limit in this window."""
        count, window_end = self._counters.hit(self.SCOPE, ip, now=now)
        if count > self._max_per_ip:
            raise RateLimited((window_end - now).total_seconds(), scope=self.SCOPE)

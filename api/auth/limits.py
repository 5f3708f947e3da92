"""Rate limits in the `rate_limits` collection: one mechanism, `consume(action, key)`, and one
policy (how many per window) per action.

    Action          counts                    key
    SIGNUP          sign-ups                  client address
    LOGIN_ACCOUNT   failed logins             digest of the normalised email (`account_key`)
    LOGIN_IP        failed logins             client address

Fixed windows of `window_s`: one counter document per (action, key, window), created by an
upsert `$inc` and dropped by a TTL index after its window ends. An attempt is counted before the
expensive step it guards (the bcrypt check or hash), in one atomic increment, so concurrent
attempts cannot all pass a check made before any of them was counted. Living in the database,
the limits are shared by every gunicorn worker and every API host. A limited client gets 429
with Retry-After until its window ends: never a permanent lockout. Account keys are digests, so
the collection holds no addresses.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from pymongo import ReturnDocument
from pymongo.collection import Collection
from pymongo.database import Database
from pymongo.errors import DuplicateKeyError

from api.errors import RateLimited

COLLECTION = "rate_limits"


class Action(StrEnum):
    """What is limited; the value is the `scope` label of auth_rate_limited_total."""

    SIGNUP = "signup_ip"
    LOGIN_ACCOUNT = "account"
    LOGIN_IP = "ip"


@dataclass(frozen=True)
class Policy:
    """At most `limit` counted events per key in each window of `window_s` seconds."""

    limit: int
    window_s: int


def account_key(email: str) -> str:
    """Return the key under which an account's attempts are counted (no address stored)."""
    return hashlib.sha256(email.encode("utf-8")).hexdigest()[:32]


class RateLimits:
    """Count events per (action, key) in fixed windows, refusing those over the policy."""

    def __init__(self, db: Database[Any], policies: Mapping[Action, Policy]) -> None:
        self._counters: Collection[Any] = db[COLLECTION]
        self._policies = dict(policies)

    def ensure_indexes(self) -> None:
        """Create the TTL index that drops counters of finished windows."""
        self._counters.create_index("expires_at", name="expires_ttl", expireAfterSeconds=0)

    def consume(self, action: Action, key: str, *, now: datetime) -> None:
        """Count one event; raise RateLimited (with the time left in the window) if it is over
        the action's limit in this window. The event stays counted either way."""
        count, window_end = self._hit(action, key, now)
        if count > self._policies[action].limit:
            raise RateLimited((window_end - now).total_seconds(), scope=action.value)

    def consume_all(self, pairs: Iterable[tuple[Action, str]], *, now: datetime) -> None:
        """Count one event for every (action, key); raise the first RateLimited, if any, after
        counting them all (so a limited account still counts against its address)."""
        over: RateLimited | None = None
        for action, key in pairs:
            try:
                self.consume(action, key, now=now)
            except RateLimited as exc:
                over = over or exc
        if over is not None:
            raise over

    def give_back(self, action: Action, key: str, *, now: datetime) -> None:
        """Uncount one event of this window (never below zero)."""
        window_start, _ = self._window(action, now)
        self._counters.update_one(
            {"_id": self._id(action, key, window_start), "count": {"$gt": 0}},
            {"$inc": {"count": -1}},
        )

    def _hit(self, action: Action, key: str, now: datetime) -> tuple[int, datetime]:
        window_start, window_end = self._window(action, now)
        update: dict[str, Any] = {
            "$inc": {"count": 1},
            "$setOnInsert": {"scope": action.value, "expires_at": window_end},
        }
        counter_id = self._id(action, key, window_start)
        try:
            doc = self._upsert(counter_id, update)
        except DuplicateKeyError:
            # Two first events raced to insert the counter; it exists now, so this updates it.
            doc = self._upsert(counter_id, update)
        return (int(doc["count"]) if doc is not None else 1), window_end

    def _upsert(self, counter_id: str, update: dict[str, Any]) -> dict[str, Any] | None:
        doc: dict[str, Any] | None = self._counters.find_one_and_update(
            {"_id": counter_id},
            update,
            upsert=True,
            return_document=ReturnDocument.AFTER,
            projection={"count": 1},
        )
        return doc

    def _window(self, action: Action, now: datetime) -> tuple[datetime, datetime]:
        window_s = self._policies[action].window_s
        start_s = int(now.timestamp()) // window_s * window_s
        start = datetime.fromtimestamp(start_s, UTC)
        return start, start + timedelta(seconds=window_s)

    @staticmethod
    def _id(action: Action, key: str, window_start: datetime) -> str:
        return f"{action.value}:{key}:{int(window_start.timestamp())}"

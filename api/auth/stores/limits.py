"""Rate limits in the `rate_limits` collection: one counter document per (action, key), with a
policy per action. Keys are client addresses or digests (`account_key`): no email is stored.

    Window(limit, window_s)      at most `limit` events per fixed window (sign-ups per address,
                                 failed logins per address, consecutive failed logins per account)
    Backoff(free, base_s, cap_s) after `free` failures, each further attempt waits
                                 base·2^(failures−free) seconds after the last failure, up to
                                 `cap_s` (failed logins per account and address): a delay that
                                 grows, never a wall, and it ends with a success

Counting is where the cost is. `consume` counts an event atomically before the expensive step it
guards (sign-up: the bcrypt hash), so concurrent events cannot all pass a check made before any
was counted. Logins use `read` (one round trip for all their counters), `record_failure` (one
bulk write, on failures only) and `reset` (only when a counter existed): a good login from a
clean record writes nothing here. Once a Backoff record exists, every attempt `reserve`s its
turn atomically first (counted as a failure in advance, forgotten on success), so concurrent
attempts from that client cannot exceed it; only the very first burst against a clean record
is checked in full, and recorded. Window limits are checked on the read and can be overshot by
the attempts already past it when they fail together.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from pymongo import ReturnDocument, UpdateOne
from pymongo.collection import Collection
from pymongo.database import Database
from pymongo.errors import DuplicateKeyError

from api.errors import RateLimited

COLLECTION = "rate_limits"
Doc = dict[str, Any]


class Action(StrEnum):
    """What is limited; the value is the `scope` label of auth_rate_limited_total."""

    SIGNUP = "signup_ip"
    LOGIN_PAIR = "account_ip"  # failed logins of one account from one client address
    LOGIN_IP = "ip"  # failed logins from one client address, any account
    LOGIN_ACCOUNT = "account"  # consecutive failed logins of one account, any address
    VERIFY_RESEND = "verify_resend"  # verification mails asked for by one account
    FORGOT_CLIENT = "forgot_ip"  # reset requests from one client address (refused: 429)
    FORGOT_ADDRESS = "forgot_address"  # reset mails to one address (beyond: silently none)
    NEW_DEVICE_MAIL = "new_device_mail"  # new-device login mails to one account


@dataclass(frozen=True)
class Window:
    """At most `limit` counted events per key in each fixed window of `window_s` seconds."""

    limit: int
    window_s: int


@dataclass(frozen=True)
class Backoff:
    """`free` failures, then a delay of base_s·2^(n−free) after the n-th, capped at cap_s; the
    record is forgotten `forget_s` after the last failure."""

    free: int
    base_s: float
    cap_s: float
    forget_s: int = 86400

    def delay_s(self, failures: int) -> float:
        """Return how long after the last of `failures` failures the next attempt must wait."""
        if failures < self.free:
            return 0.0
        return float(min(self.cap_s, self.base_s * 2 ** (failures - self.free)))


Policy = Window | Backoff


@dataclass(frozen=True)
class Counter:
    """What a counter document says now: its count, and (Backoff) when the next try may come."""

    count: int = 0
    next_at: datetime | None = None
    window_end: datetime | None = None


def account_key(email: str) -> str:
    """Return the key under which an account's attempts are counted (no address stored)."""
    return hashlib.sha256(email.encode("utf-8")).hexdigest()[:32]


class RateLimits:
    """Count events per (action, key) and refuse those over the action's policy."""

    def __init__(self, db: Database[Any], policies: Mapping[Action, Policy]) -> None:
        self._counters: Collection[Doc] = db[COLLECTION]
        self._policies = dict(policies)

    def window_s(self, action: Action) -> int:
        """Return the length of a Window action's windows, in seconds."""
        return self._window(action).window_s

    def ensure_indexes(self) -> None:
        """Create the TTL index that drops counters of finished windows and forgotten records."""
        self._counters.create_index("expires_at", name="expires_ttl", expireAfterSeconds=0)

    # -- counted before the expensive step --------------------------------------------------

    def consume(self, action: Action, key: str, *, now: datetime) -> None:
        """Count one event of a Window action; raise RateLimited (with the time left in the
        window) if it is over the limit. The event stays counted either way."""
        policy = self._window(action)
        window_start, window_end = self._window_bounds(policy, now)
        update: Doc = {
            "$inc": {"count": 1},
            "$setOnInsert": {"scope": action.value, "expires_at": window_end},
        }
        counter_id = self._id(action, key, window_start)
        try:
            doc = self._upsert(counter_id, update)
        except DuplicateKeyError:
            # Two first events raced to insert the counter; it exists now, so this updates it.
            doc = self._upsert(counter_id, update)
        if int(doc["count"] if doc is not None else 1) > policy.limit:
            raise RateLimited((window_end - now).total_seconds(), scope=action.value)

    # -- read first, write on failure -------------------------------------------------------

    def read(self, keys: Iterable[tuple[Action, str]], *, now: datetime) -> dict[Action, Counter]:
        """Return the current counter of each (action, key), in one round trip."""
        ids = {self._current_id(action, key, now): action for action, key in keys}
        found: dict[Action, Counter] = {action: Counter() for action in ids.values()}
        for doc in self._counters.find({"_id": {"$in": list(ids)}}):
            action = ids[doc["_id"]]
            found[action] = Counter(
                int(doc.get("count", 0)), doc.get("next_at"), doc.get("expires_at")
            )
        return found

    def over(self, action: Action, counter: Counter, *, now: datetime) -> RateLimited | None:
        """Return the refusal a counter read by `read` calls for now, or None."""
        policy = self._policies[action]
        if isinstance(policy, Window):
            if counter.count >= policy.limit and counter.window_end is not None:
                return RateLimited((counter.window_end - now).total_seconds(), scope=action.value)
            return None
        if counter.next_at is not None and counter.next_at > now:
            return RateLimited((counter.next_at - now).total_seconds(), scope=action.value)
        return None

    def reserve(self, action: Action, key: str, counter: Counter, *, now: datetime) -> bool:
        """Once a Backoff record exists, take this attempt's turn atomically, counted as a failure
        in advance (a success resets it); raise RateLimited if the turn is not due or another
        attempt took it first. Return whether anything was reserved (a clean record: nothing)."""
        policy = self._backoff(action)
        if counter.count == 0:
            return False
        doc = self._counters.find_one_and_update(
            {"_id": self._current_id(action, key, now), "next_at": {"$lte": now}},
            _backoff_failure(action, policy, now),
            projection={"_id": 1},
        )
        if doc is None:
            raise RateLimited(policy.delay_s(counter.count + 1), scope=action.value)
        return True

    def record_failure(self, keys: Iterable[tuple[Action, str]], *, now: datetime) -> None:
        """Count one failure against every (action, key), in one bulk write."""
        writes = [self._failure(action, key, now) for action, key in keys]
        self._counters.bulk_write(writes, ordered=False)

    def reset(self, keys: Iterable[tuple[Action, str]], *, now: datetime) -> None:
        """Forget the counters of (action, key): a success ends a run of failures."""
        ids = [self._current_id(action, key, now) for action, key in keys]
        self._counters.delete_many({"_id": {"$in": ids}})

    # -- documents ---------------------------------------------------------------------------

    def _failure(self, action: Action, key: str, now: datetime) -> UpdateOne:
        policy = self._policies[action]
        counter_id = self._current_id(action, key, now)
        if isinstance(policy, Window):
            _, window_end = self._window_bounds(policy, now)
            update: Doc = {
                "$inc": {"count": 1},
                "$setOnInsert": {"scope": action.value, "expires_at": window_end},
            }
            return UpdateOne({"_id": counter_id}, update, upsert=True)
        return UpdateOne({"_id": counter_id}, _backoff_failure(action, policy, now), upsert=True)

    def _upsert(self, counter_id: str, update: Doc) -> Doc | None:
        doc: Doc | None = self._counters.find_one_and_update(
            {"_id": counter_id},
            update,
            upsert=True,
            return_document=ReturnDocument.AFTER,
            projection={"count": 1},
        )
        return doc

    def _current_id(self, action: Action, key: str, now: datetime) -> str:
        policy = self._policies[action]
        if isinstance(policy, Backoff):
            return f"{action.value}:{key}"
        window_start, _ = self._window_bounds(policy, now)
        return self._id(action, key, window_start)

    def _window(self, action: Action) -> Window:
        policy = self._policies[action]
        assert isinstance(policy, Window), f"{action} is not counted in windows"
        return policy

    def _backoff(self, action: Action) -> Backoff:
        policy = self._policies[action]
        assert isinstance(policy, Backoff), f"{action} has no backoff"
        return policy

    @staticmethod
    def _window_bounds(policy: Window, now: datetime) -> tuple[datetime, datetime]:
        start_s = int(now.timestamp()) // policy.window_s * policy.window_s
        start = datetime.fromtimestamp(start_s, UTC)
        return start, start + timedelta(seconds=policy.window_s)

    @staticmethod
    def _id(action: Action, key: str, window_start: datetime) -> str:
        return f"{action.value}:{key}:{int(window_start.timestamp())}"


def _backoff_failure(action: Action, policy: Backoff, now: datetime) -> list[Doc]:
    """The update that counts one failure of a Backoff record: the count goes up by one and the
    next attempt waits for the new count's delay from now (one pipeline reads the count it
    increments)."""
    count = {"$add": [{"$ifNull": ["$count", 0]}, 1]}
    doubling = {"$pow": [2, {"$subtract": [count, policy.free]}]}
    delay_ms = {
        "$cond": [
            {"$lt": [count, policy.free]},
            0,
            {"$min": [policy.cap_s * 1000, {"$multiply": [policy.base_s * 1000, doubling]}]},
        ]
    }
    return [
        {
            "$set": {
                "count": count,
                "scope": action.value,
                "next_at": {"$add": [now, delay_ms]},
                "expires_at": now + timedelta(seconds=policy.forget_s),
            }
        }
    ]

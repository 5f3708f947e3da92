"""Rate limits in the `rate_limits` collection: one counter document per (action, key), with a
policy per action. Keys are network prefixes or digests (`account_key`): no email is stored.

    Rolling(limit, window_s)     at most `limit` events in any window of `window_s` seconds,
                                 exactly: the times of the last `limit` events are kept (a
                                 sliding log), so there is no instant (midnight, the top of the
                                 hour) at which a budget is suddenly whole again
    Backoff(free, base_s, cap_s) after `free` failures, each further attempt waits
                                 base·2^(failures−free) seconds after the last, up to `cap_s`

Every event is counted before the step it guards, in one atomic write per counter, and the count
decides: `take` counts a set of counters in ONE round trip (a bulk write of conditional upserts:
a counter already at its limit does not match its filter, so its upsert collides with the
existing document, and that duplicate key is the refusal). Of any number of concurrent attempts,
exactly as many as the budget allows get through; a burst cannot outrun the count. `consume`
does the same for one counter and says how long until there is room. `settle` gives events
back and ends runs (logins that turned out to be the owner's), in one round trip.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from pymongo import DeleteOne, UpdateOne
from pymongo.collection import Collection
from pymongo.database import Database
from pymongo.errors import BulkWriteError

from api.errors import RateLimited

COLLECTION = "rate_limits"
DUPLICATE_KEY = 11000
Doc = dict[str, Any]


class Action(StrEnum):
    """What is limited; the value is the `scope` label of auth_rate_limited_total."""

    SIGNUP = "signup_ip"  # sign-ups from one client network
    LOGIN_PAIR = "account_ip"  # failed password checks of one account from one client network
    LOGIN_IP = "ip"  # failed password checks from one client network (IPv6: its /64)
    LOGIN_IP_WIDE = "ip48"  # the same from one IPv6 /48: rotating through /64s gains little
    LOGIN_ACCOUNT = "account"  # failed checks of one account from networks it never used
    LOGIN_ACCOUNT_KNOWN = "account_known"  # ... from its own networks (a higher ceiling)
    VERIFY_RESEND = "verify_resend"  # verification mails asked for by one account (cooldown)
    VERIFY_DAILY = "verify_daily"  # ... and per day
    FORGOT_CLIENT = "forgot_ip"  # reset requests from one client network (refused: 429)
    FORGOT_ADDRESS = "forgot_address"  # reset mails to one address (beyond: silently none)
    NEW_DEVICE_MAIL = "new_device_mail"  # new-device login mails to one account


@dataclass(frozen=True)
class Rolling:
    """At most `limit` counted events per key in any window of `window_s` seconds."""

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


Policy = Rolling | Backoff
Counted = tuple[Action, str]


def account_key(email: str) -> str:
    """Return the key under which an account's attempts are counted (no address stored)."""
    return hashlib.sha256(email.encode("utf-8")).hexdigest()[:32]


class RateLimits:
    """Count events per (action, key) and refuse those over the action's policy."""

    def __init__(self, db: Database[Any], policies: Mapping[Action, Policy]) -> None:
        self._counters: Collection[Doc] = db[COLLECTION]
        self._policies = dict(policies)

    def window_s(self, action: Action) -> int:
        """Return the length of a Rolling action's window, in seconds."""
        policy = self._policies[action]
        assert isinstance(policy, Rolling), f"{action} is not counted in windows"
        return policy.window_s

    def ensure_indexes(self) -> None:
        """Create the TTL index that drops counters nobody has touched for a window or two."""
        self._counters.create_index("expires_at", name="expires_ttl", expireAfterSeconds=0)

    # -- counting -------------------------------------------------------------------------

    def take(self, counted: Iterable[Counted], *, now: datetime) -> RateLimited | None:
        """Count one event against every (action, key) in one round trip, each only if it is
        under its limit; return the refusal of the first that is not (None: all counted).
        The counters that had room keep the event either way."""
        items = list(counted)
        over = self._take(items, now)
        if over:
            over = self._take([items[i] for i in over], now, indexes=over)  # first-insert races
        if not over:
            return None
        action, key = items[over[0]]
        return RateLimited(self._retry_after_s(action, key, now), scope=action.value)

    def consume(self, action: Action, key: str, *, now: datetime) -> None:
        """Count one event of a Rolling action if the window has room; else raise RateLimited
        with the time until it has (a refused event is not counted: it cannot extend the
        wait)."""
        refusal = self.take([(action, key)], now=now)
        if refusal is not None:
            raise refusal

    def settle(self, refunds: Iterable[Counted], ends: Iterable[Counted]) -> None:
        """Give back one event of each Rolling counter in `refunds` (the attempt turned out
        good) and drop the counters in `ends`, in one round trip (the deferred bookkeeping of
        good logins)."""
        ops: list[UpdateOne | DeleteOne] = [
            # The newest time is this attempt's (or a moment-later one's: the same count).
            UpdateOne(
                {"_id": _id(action, key), "times.0": {"$exists": True}}, {"$pop": {"times": 1}}
            )  # fmt: skip
            for action, key in refunds
            if isinstance(self._policies[action], Rolling)
        ]
        ops.extend(DeleteOne({"_id": _id(action, key)}) for action, key in ends)
        if ops:
            self._counters.bulk_write(ops, ordered=False)

    # -- documents ---------------------------------------------------------------------------

    def _take(
        self, items: list[Counted], now: datetime, *, indexes: list[int] | None = None
    ) -> list[int]:
        """One bulk write of conditional counts; return the indexes (into the caller's list)
        that collided: at their limit, or racing another first insert."""
        positions = indexes if indexes is not None else list(range(len(items)))
        ops = [self._conditional(action, key, now) for action, key in items]
        if not ops:
            return []
        try:
            self._counters.bulk_write(ops, ordered=False)
        except BulkWriteError as exc:
            errors = exc.details.get("writeErrors", [])
            if any(e.get("code") != DUPLICATE_KEY for e in errors):
                raise
            return sorted(positions[e["index"]] for e in errors)
        return []

    def _conditional(self, action: Action, key: str, now: datetime) -> UpdateOne:
        policy = self._policies[action]
        if isinstance(policy, Rolling):
            room = _rolling_room(policy, now)
            update = _rolling_count(policy, now)
        else:
            count = {"$ifNull": ["$count", 0]}
            due = {"$lte": [{"$ifNull": ["$next_at", now]}, now]}
            room = {"$or": [{"$lt": [count, policy.free]}, due]}
            update = _backoff_failure(action, policy, now)
        return UpdateOne({"_id": _id(action, key), "$expr": room}, update, upsert=True)

    def _retry_after_s(self, action: Action, key: str, now: datetime) -> float:
        """How long until a refused counter has room again (one read, on refusals only)."""
        doc = self._counters.find_one({"_id": _id(action, key)}) or {}
        policy = self._policies[action]
        if isinstance(policy, Rolling):
            return _rolling_wait_s(doc, policy, now)
        next_at = doc.get("next_at")
        return max(1.0, (next_at - now).total_seconds()) if next_at else 1.0


def _id(action: Action, key: str) -> str:
    return f"{action.value}:{key}"


# -- the sliding window: the times of the last `limit` events --------------------------------


def _recent(policy: Rolling, now: datetime) -> Doc:
    """The stored event times that fall in the window ending now."""
    since = now - timedelta(seconds=policy.window_s)
    return {"$filter": {"input": {"$ifNull": ["$times", []]}, "cond": {"$gt": ["$$this", since]}}}


def _rolling_room(policy: Rolling, now: datetime) -> Doc:
    """True while fewer than `limit` events fall in the window ending now."""
    return {"$lt": [{"$size": _recent(policy, now)}, policy.limit]}


def _rolling_count(policy: Rolling, now: datetime) -> list[Doc]:
    """The update pipeline that forgets events older than the window and records one at `now`
    (at most `limit` times are kept: the window can never hold more)."""
    kept = {"$concatArrays": [_recent(policy, now), [now]]}
    return [
        {
            "$set": {
                "times": {"$slice": [kept, -policy.limit]},
                "expires_at": now + timedelta(seconds=policy.window_s),
            }
        }
    ]


def _rolling_wait_s(doc: Mapping[str, Any], policy: Rolling, now: datetime) -> float:
    """How long until the oldest event that fills the window leaves it (at least a second)."""
    since = now - timedelta(seconds=policy.window_s)
    recent = sorted(t for t in doc.get("times", ()) if t > since)
    if len(recent) < policy.limit:
        return 1.0
    leaves: datetime = recent[-policy.limit] + timedelta(seconds=policy.window_s)
    return max(1.0, (leaves - now).total_seconds())


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

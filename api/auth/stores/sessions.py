"""Sessions as refresh-token families, in the `sessions` collection.

    {_id: sid, user_id, refresh_digest, created_at, last_used_at, idle_expires_at, expires_at,
     rotations, revoked_at, revoked_reason, ip, user_agent, auth_time, amr,
     previous_digest, rotated_at}

`auth_time` is when the user last proved who they are in this session (the login, or a
re-authentication with the password); every access token of the session carries it. `ip` and
`user_agent` are what the user sees in their session list.

A login starts a family; each refresh rotates it with ONE compare-and-set on the current
token's SHA-256 digest, so of many concurrent refreshes with one token exactly one wins. A
refresh token is a signed JWT naming its family, so a valid signature whose digest is not the
family's current one can only be an already-rotated token: theft is assumed and the whole
family is revoked. Families end at `expires_at` (absolute) or after `idle_expires_at` passes
without a refresh; a TTL index removes them afterwards. Raw tokens are never stored.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from bson import ObjectId
from pymongo import ASCENDING
from pymongo.client_session import ClientSession
from pymongo.collection import Collection
from pymongo.database import Database

from api.auth.stores.security_log import USER_AGENT_MAX

COLLECTION = "sessions"


class Rotation(StrEnum):
    ROTATED = "rotated"
    GRACE = "grace"  # the token rotated a moment ago, presented again (see rotate)
    REUSED = "reused"
    REVOKED = "revoked"
    EXPIRED = "expired"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class Rotated:
    """What a rotation tells the refresh: when the user signed in, how, and when it rotated
    (GRACE: the earlier rotation, and the digest the family must still hold)."""

    auth_time: datetime
    amr: tuple[str, ...]
    rotated_at: datetime
    current_digest: bytes | None = None


def _rotated(doc: dict[str, Any], at: datetime, *, current: bytes | None = None) -> Rotated:
    return Rotated(
        auth_time=doc.get("auth_time") or doc["created_at"],
        amr=tuple(doc.get("amr") or ("pwd",)),
        rotated_at=at,
        current_digest=current,
    )


def token_digest(token: str) -> bytes:
    """Return the SHA-256 digest under which a refresh token is stored."""
    return hashlib.sha256(token.encode("utf-8")).digest()


def new_session_id() -> str:
    """Return a fresh, unguessable session (family) id."""
    return secrets.token_urlsafe(18)


class SessionStore:
    """Create, rotate and revoke refresh-token families."""

    def __init__(self, db: Database[Any], *, idle_s: int) -> None:
        self._sessions: Collection[Any] = db[COLLECTION]
        self._idle = timedelta(seconds=idle_s)

    def ensure_indexes(self) -> None:
        """Create the user index and the TTL index that drops ended families."""
        self._sessions.create_index([("user_id", ASCENDING)], name="user_id")
        self._sessions.create_index("expires_at", name="expires_ttl", expireAfterSeconds=0)

    def start(
        self,
        sid: str,
        user_id: ObjectId,
        refresh_token: str,
        *,
        now: datetime,
        expires_at: datetime,
        ip: str = "",
        user_agent: str = "",
        amr: tuple[str, ...] = ("pwd",),
    ) -> None:
        """Record a new family whose current refresh token is `refresh_token`, signed in by
        `amr` (the cap on a user's sessions is kept later: steps/eviction.py)."""
        self._sessions.insert_one(
            {
                "_id": sid,
                "user_id": user_id,
                "refresh_digest": token_digest(refresh_token),
                "created_at": now,
                "last_used_at": now,
                "idle_expires_at": min(now + self._idle, expires_at),
                "expires_at": expires_at,
                "rotations": 0,
                "revoked_at": None,
                "revoked_reason": None,
                "ip": ip,
                "user_agent": user_agent[:USER_AGENT_MAX],
                "auth_time": now,
                "amr": list(amr),
            }
        )

    def rotate(
        self,
        sid: str,
        user_id: ObjectId,
        presented: str,
        replacement: str,
        *,
        now: datetime,
        expires_at: datetime,
        grace_s: float = 0.0,
    ) -> tuple[Rotation, Rotated | None]:
        """Swap the family's current token `presented` for `replacement` in one atomic write;
        return the outcome and, when rotated, the session's sign-in facts. The token replaced
        last is remembered: presented again within `grace_s` of its rotation (two tabs, or a
        poll and a click, refreshing with one cookie) it is GRACE, not a reuse, and the caller
        answers with the same replacement (which the family must still hold)."""
        digest = token_digest(presented)
        updated = self._sessions.find_one_and_update(
            {
                "_id": sid,
                "user_id": user_id,
                "refresh_digest": digest,
                "revoked_at": None,
                "expires_at": {"$gt": now},
                "idle_expires_at": {"$gt": now},
            },
            {
                "$set": {
                    "refresh_digest": token_digest(replacement),
                    "previous_digest": digest,
                    "rotated_at": now,
                    "last_used_at": now,
                    "idle_expires_at": min(now + self._idle, expires_at),
                },
                "$inc": {"rotations": 1},
            },
            projection={"auth_time": 1, "created_at": 1, "amr": 1},
        )
        if updated is not None:
            return Rotation.ROTATED, _rotated(updated, now)
        return self._why_not_rotated(sid, user_id, digest, now, grace_s)

    def _why_not_rotated(
        self, sid: str, user_id: ObjectId, digest: bytes, now: datetime, grace_s: float
    ) -> tuple[Rotation, Rotated | None]:
        family = self._sessions.find_one({"_id": sid, "user_id": user_id})
        if family is None:
            return Rotation.UNKNOWN, None
        if family["revoked_at"] is not None:
            return Rotation.REVOKED, None
        if family["expires_at"] <= now or family["idle_expires_at"] <= now:
            return Rotation.EXPIRED, None
        rotated_at = family.get("rotated_at")
        if (
            family.get("previous_digest") == digest
            and rotated_at is not None
            and (now - rotated_at).total_seconds() <= grace_s
        ):
            return Rotation.GRACE, _rotated(family, rotated_at, current=family["refresh_digest"])
        if family["refresh_digest"] != digest:
            # A genuine token of this family that is no longer current: it was replayed. The
            # caller ends the family and its access tokens together (auth/steps/revocation.py).
            return Rotation.REUSED, None
        return Rotation.UNKNOWN, None

    def revoke(
        self, sid: str, *, reason: str, now: datetime, session: ClientSession | None = None
    ) -> bool:
        """End one family; return whether it was still active."""
        result = self._sessions.update_one(
            {"_id": sid, "revoked_at": None},
            {"$set": {"revoked_at": now, "revoked_reason": reason}},
            session=session,
        )
        return result.modified_count == 1

    def revoke_all(
        self,
        user_id: ObjectId,
        *,
        reason: str,
        now: datetime,
        session: ClientSession | None = None,
    ) -> int:
        """End every active family of a user; return how many were ended."""
        result = self._sessions.update_many(
            {"user_id": user_id, "revoked_at": None},
            {"$set": {"revoked_at": now, "revoked_reason": reason}},
            session=session,
        )
        return result.modified_count

    def reauthenticate(
        self, sid: str, user_id: ObjectId, replacement: str, *, now: datetime
    ) -> bool:
        """The user proved their password again in a live session: record the time and make
        `replacement` its current refresh token (the old one is dead from now); False if the
        session has ended."""
        result = self._sessions.update_one(
            {
                "_id": sid,
                "user_id": user_id,
                "revoked_at": None,
                "expires_at": {"$gt": now},
                "idle_expires_at": {"$gt": now},
            },
            {
                "$set": {
                    "refresh_digest": token_digest(replacement),
                    "auth_time": now,
                    "last_used_at": now,
                },
                "$inc": {"rotations": 1},
            },
        )
        return result.matched_count == 1

    def live(self, user_id: ObjectId, *, now: datetime, limit: int = 100) -> list[dict[str, Any]]:
        """Return the user's sessions that have not ended, most recently used first."""
        return list(
            self._sessions.find(
                {
                    "user_id": user_id,
                    "revoked_at": None,
                    "expires_at": {"$gt": now},
                    "idle_expires_at": {"$gt": now},
                },
                {"refresh_digest": 0},
            )
            .sort("last_used_at", -1)
            .limit(limit)
        )

    def over_cap(self, user_ids: list[ObjectId], *, cap: int, now: datetime) -> list[ObjectId]:
        """Return which of the users have more than `cap` live sessions (one aggregate)."""
        pipeline: list[dict[str, Any]] = [
            {"$match": {"user_id": {"$in": user_ids}, **_live(now)}},
            {"$group": {"_id": "$user_id", "n": {"$sum": 1}}},
            {"$match": {"n": {"$gt": cap}}},
        ]
        return [row["_id"] for row in self._sessions.aggregate(pipeline)]

    def oldest_beyond(self, user_id: ObjectId, *, cap: int, now: datetime) -> list[str]:
        """Return the ids of the user's live sessions beyond the `cap` newest."""
        docs = (
            self._sessions.find({"user_id": user_id, **_live(now)}, {"_id": 1})
            .sort([("created_at", -1), ("_id", -1)])
            .skip(cap)
        )
        return [doc["_id"] for doc in docs]

    def get(self, sid: str) -> dict[str, Any] | None:
        """Return a family document (for tests and diagnostics), or None."""
        doc: dict[str, Any] | None = self._sessions.find_one({"_id": sid})
        return doc


def _live(now: datetime) -> dict[str, Any]:
    return {"revoked_at": None, "expires_at": {"$gt": now}, "idle_expires_at": {"$gt": now}}

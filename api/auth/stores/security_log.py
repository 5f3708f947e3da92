"""The security log: an append-only record per user of what happened to their account, which the
user reads at GET /users/me/security-events.

    {_id: ObjectId (time-ordered), user_id, type, at, ip, user_agent}

Events are only inserted, never changed or deleted by the API. A few are also mailed to the user
(MAILED): their mail is a queue job whose idempotency key is the event id, so one event is one
mail. A successful login's event is written by the `user.login` job (the login audit), with the
job id as its id; everything else is written by the flow that caused it.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from bson import ObjectId
from pymongo import ASCENDING, DESCENDING
from pymongo.collection import Collection
from pymongo.database import Database

COLLECTION = "security_events"
USER_AGENT_MAX = 256
PAGE_MAX = 100


class EventType(StrEnum):
    LOGIN_SUCCEEDED = "login_succeeded"
    LOGIN_FAILED = "login_failed"
    NEW_DEVICE_LOGIN = "new_device_login"
    PASSWORD_CHANGED = "password_changed"
    PASSWORD_RESET = "password_reset"
    RESET_REQUESTED = "reset_requested"
    EMAIL_VERIFIED = "email_verified"
    SESSION_ENDED = "session_ended"
    REFRESH_REUSE_DETECTED = "refresh_reuse_detected"


MAILED = frozenset(
    {
        EventType.PASSWORD_CHANGED,
        EventType.PASSWORD_RESET,
        EventType.REFRESH_REUSE_DETECTED,
        EventType.NEW_DEVICE_LOGIN,
    }
)
"""Events the user is told about by mail, always (no setting turns them off)."""


class SecurityLog:
    """Append and page through users' security events."""

    def __init__(self, db: Database[Any]) -> None:
        self._events: Collection[dict[str, Any]] = db[COLLECTION]

    def ensure_indexes(self) -> None:
        """Create the index a user's newest-first page reads."""
        self._events.create_index([("user_id", ASCENDING), ("_id", DESCENDING)], name="user_page")

    def record(
        self,
        user_id: ObjectId,
        event: EventType,
        *,
        at: datetime,
        ip: str | None = None,
        user_agent: str | None = None,
        event_id: ObjectId | None = None,
    ) -> ObjectId:
        """Append one event; return its id (`event_id` makes a repeated write harmless)."""
        doc = {
            "user_id": user_id,
            "type": event.value,
            "at": at,
            "ip": ip,
            "user_agent": (user_agent or "")[:USER_AGENT_MAX] or None,
        }
        oid = event_id or ObjectId()
        self._events.update_one({"_id": oid}, {"$setOnInsert": doc}, upsert=True)
        return oid

    def page(
        self, user_id: ObjectId, *, before: ObjectId | None = None, limit: int = 20
    ) -> list[dict[str, Any]]:
        """Return up to `limit` of the user's events, newest first, older than `before`."""
        query: dict[str, Any] = {"user_id": user_id}
        if before is not None:
            query["_id"] = {"$lt": before}
        # One more than a page is allowed: the caller reads one extra to know a next page exists.
        cursor = self._events.find(query).sort("_id", DESCENDING).limit(min(limit, PAGE_MAX + 1))
        return list(cursor)

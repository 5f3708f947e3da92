"""The security log: an append-only record per user of what happened to their account, which the
user reads at GET /users/me/security-events.

    {_id: ObjectId (time-ordered), user_id, type, at, ip, user_agent}

Events are only inserted, never changed or deleted by the API. A few are also mailed to the user
(MAILED): their mail is a queue job whose idempotency key is the event id, so one event is one
mail. A successful login's event is written by the worker's login ledger (stores/ledger.py), a
moment after the login, in one write with the other logins of that moment; everything else is
written by the flow that caused it.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from bson import ObjectId
from pymongo import ASCENDING, DESCENDING
from pymongo.collection import Collection
from pymongo.database import Database
from pymongo.errors import BulkWriteError

COLLECTION = "security_events"
USER_AGENT_MAX = 256  # characters of a user agent kept (sessions, security log)
PAGE_MAX = 100


class EventType(StrEnum):
    LOGIN_SUCCEEDED = "login_succeeded"
    LOGIN_FAILED = "login_failed"
    NEW_DEVICE_LOGIN = "new_device_login"
    PASSWORD_CHANGED = "password_changed"
    PASSWORD_RESET = "password_reset"
    RESET_REQUESTED = "reset_requested"
    EMAIL_VERIFIED = "email_verified"
    MFA_ENABLED = "mfa_enabled"
    MFA_DISABLED = "mfa_disabled"
    RECOVERY_CODES_REGENERATED = "recovery_codes_regenerated"
    RECOVERY_CODE_USED = "recovery_code_used"
    MFA_FAILED = "mfa_failed"
    SESSIONS_ENDED_BY_ADMIN = "sessions_ended_by_admin"
    SESSION_ENDED = "session_ended"
    REFRESH_REUSE_DETECTED = "refresh_reuse_detected"


MAILED = frozenset(
    {
        EventType.PASSWORD_CHANGED,
        EventType.PASSWORD_RESET,
        EventType.REFRESH_REUSE_DETECTED,
        EventType.NEW_DEVICE_LOGIN,
        EventType.MFA_ENABLED,
        EventType.MFA_DISABLED,
        EventType.RECOVERY_CODES_REGENERATED,
        EventType.RECOVERY_CODE_USED,
        EventType.SESSIONS_ENDED_BY_ADMIN,
    }
)
"""Events the user is told about by mail, always (no setting turns them off)."""


def event_doc(
    user_id: ObjectId,
    event: EventType,
    *,
    at: datetime,
    ip: str | None = None,
    user_agent: str | None = None,
) -> dict[str, Any]:
    """Return a new event's document, its id made now (so a repeated write is harmless)."""
    return {
        "_id": ObjectId(),
        "user_id": user_id,
        "type": event.value,
        "at": at,
        "ip": ip,
        "user_agent": (user_agent or "")[:USER_AGENT_MAX] or None,
    }


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

    def record_many(self, events: list[dict[str, Any]]) -> None:
        """Append events built by `event_doc`, in one write; ones already there are skipped."""
        if not events:
            return
        try:
            self._events.insert_many(events, ordered=False)
        except BulkWriteError as exc:
            if any(e.get("code") != 11000 for e in exc.details.get("writeErrors", [])):
                raise

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

"""The dashboard's audit log: every action, who did it, to what (a job, a queue, a filter), and
how many jobs it changed. Append-only; the Audit page reads it newest first."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pymongo import DESCENDING
from pymongo.collection import Collection
from pymongo.database import Database

COLLECTION = "admin_audit"
Doc = dict[str, Any]


class AuditLog:
    """The `admin_audit` collection."""

    def __init__(self, db: Database[Doc]) -> None:
        self._entries: Collection[Doc] = db[COLLECTION]

    def ensure_indexes(self) -> None:
        """Create the index the Audit page reads by."""
        self._entries.create_index([("at", DESCENDING)], name="newest")

    def record(
        self, *, at: datetime, email: str, action: str, target: str, count: int = 1,
        filter: dict[str, str] | None = None,
    ) -> None:  # fmt: skip
        """Append one action: who, what, to what, with which filter, how many jobs."""
        self._entries.insert_one(
            {"at": at, "email": email, "action": action, "target": target, "count": count,
             "filter": filter or {}}
        )  # fmt: skip

    def newest(self, limit: int = 100) -> list[Doc]:
        """Return the latest `limit` entries, newest first."""
        return list(self._entries.find().sort("at", DESCENDING).limit(limit))

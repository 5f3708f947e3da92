"""The `schedules` collection: one document per schedule, shared by every scheduler.

    {_id: name, definition: {...}, next_tick, paused, paused_until, removed,
     created_at, updated_at, last_success_at, last_ticks: [{tick, outcome, job_id, count, at}]}

`next_tick` is the cursor: the first tick not yet dealt with. It only moves forward, and only by
compare-and-set on its current value (`advance`), after the jobs of the ticks it passes are in
the queue. Definitions are written by every scheduler at start (`sync`): a changed definition
keeps its cursor; a schedule no longer in the code is flagged `removed`, never deleted.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from pymongo.collection import Collection
from pymongo.database import Database
from pymongo.errors import DuplicateKeyError

from queue_worker.layout import SCHEDULES
from queue_worker.schedules.definition import Schedule

RECORDS_KEPT = 20
Doc = dict[str, Any]


class ScheduleStore:
    """Read and change schedule documents."""

    def __init__(self, db: Database[Doc]) -> None:
        self.collection: Collection[Doc] = db[SCHEDULES]

    def sync(self, definitions: Iterable[Schedule], first_ticks: dict[str, datetime | None], *,
             now: datetime) -> None:  # fmt: skip
        """Write each definition (a new one starts at its first tick after now) and flag the
        stored schedules the code no longer defines."""
        names = []
        for definition in definitions:
            names.append(definition.name)
            update: Doc = {
                "$set": {"definition": definition.as_doc(), "removed": False, "updated_at": now},
                "$setOnInsert": {
                    "next_tick": first_ticks[definition.name],
                    "paused": False,
                    "paused_until": None,
                    "created_at": now,
                    "last_success_at": None,
                    "last_ticks": [],
                },
            }
            try:
                self.collection.update_one({"_id": definition.name}, update, upsert=True)
            except DuplicateKeyError:  # another scheduler inserted it at the same moment
                self.collection.update_one({"_id": definition.name}, update)
        self.collection.update_many(
            {"_id": {"$nin": names}, "removed": {"$ne": True}},
            {"$set": {"removed": True, "updated_at": now}},
        )

    def load(self, names: Sequence[str]) -> dict[str, Doc]:
        return {doc["_id"]: doc for doc in self.collection.find({"_id": {"$in": list(names)}})}

    def get(self, name: str) -> Doc | None:
        return self.collection.find_one({"_id": name})

    def all(self) -> list[Doc]:
        return list(self.collection.find().sort("_id", 1))

    def advance(
        self,
        name: str,
        expected: datetime,
        next_tick: datetime | None,
        records: list[Doc],
        *,
        resume: bool = False,
    ) -> bool:
        """Move the cursor from `expected` to `next_tick` and append the records, if no other
        scheduler moved it first; True if this call did."""
        update: Doc = {"$set": {"next_tick": next_tick}}
        if records:
            update["$push"] = {"last_ticks": {"$each": records, "$slice": -RECORDS_KEPT}}
        if resume:
            update["$set"].update({"paused": False, "paused_until": None})
        result = self.collection.update_one({"_id": name, "next_tick": expected}, update)
        return result.modified_count == 1

    def pause(self, name: str, until: datetime | None) -> bool:
        result = self.collection.update_one(
            {"_id": name}, {"$set": {"paused": True, "paused_until": until}}
        )
        return result.matched_count == 1

    def resume(self, name: str, next_tick: datetime | None, *, now: datetime) -> bool:
        """Unpause; the cursor moves to `next_tick` (the first tick after now) if it is due."""
        found = self.collection.update_one(
            {"_id": name}, {"$set": {"paused": False, "paused_until": None}}
        )
        self.collection.update_one(
            {"_id": name, "next_tick": {"$lte": now}}, {"$set": {"next_tick": next_tick}}
        )
        return found.matched_count == 1

    def record_success(self, name: str, at: datetime) -> None:
        self.collection.update_one({"_id": name}, {"$max": {"last_success_at": at}})

    def record(self, name: str, records: list[Doc]) -> None:
        """Append records without moving the cursor (a manual trigger)."""
        self.collection.update_one(
            {"_id": name}, {"$push": {"last_ticks": {"$each": records, "$slice": -RECORDS_KEPT}}}
        )

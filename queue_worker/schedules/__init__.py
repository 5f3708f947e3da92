"""Periodic jobs without a leader: every supervisor runs a scheduler, and the unique idempotency
key of each tick's job (`cron:<schedule>:<tick>`) lets only one of them enqueue it.

    definition.py  `schedule(...)`, the Schedule dataclass and its policies, the registry
    timing.py      cron (Debian semantics, DST included) and interval ticks, in UTC
    store.py       the `schedules` collection: definition, forward-only cursor, pause, last ticks
    scheduler.py   one pass: enqueue each due tick first, then advance the cursor by compare-and-set
"""

from queue_worker.schedules.definition import (
    Missed,
    Overlap,
    Schedule,
    ScheduleRegistry,
    registry,
    schedule,
)

__all__ = ["Missed", "Overlap", "Schedule", "ScheduleRegistry", "registry", "schedule"]

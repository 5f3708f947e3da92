"""Periodic jobs through the real processes: two supervisors on one database, each with its
scheduler, and one of them SIGKILLed whole while they run. Every tick the schedulers dealt with
has exactly one job, and the jobs run.

A smoke test of the wiring (the scheduler child, its settings, its signals, the consumers running
the ticks' jobs). It waits on the schedules' stored cursor, never on the wall clock; the
policies under crashes, races and outages are proved by the simulation in
tests/queue/test_schedules_simulation.py, over many seeds and without real time.
"""

from __future__ import annotations

import signal
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from pymongo.database import Database
from supervisor_harness import Supervisor
from waiting import wait_until

from queue_worker.layout import IN_MOVE_ORDER, SCHEDULES
from queue_worker.schedules.scheduler import key_for

HELPERS = Path(__file__).resolve().parents[1] / "helpers"
ENV = {
    "QUEUE_TASK_MODULES": "queue_worker.builtin,supervisor_test_tasks,schedule_defs",
    "PYTHONPATH_EXTRA": str(HELPERS),
}
NAME = "test.every_second"  # missed="all": every tick gets its own job
S = timedelta(seconds=1)


def cursor(db: Database[Any]) -> datetime | None:
    doc = db[SCHEDULES].find_one({"_id": NAME})
    return doc["next_tick"] if doc else None


def ticks_dealt_with(db: Database[Any], first: datetime, n: int) -> datetime | None:
    """The cursor once it is `n` ticks past `first` (every tick before it has its job)."""
    now = cursor(db)
    return now if now is not None and now >= first + n * S else None


def jobs_by_key(db: Database[Any]) -> dict[str, list[dict[str, Any]]]:
    by_id = {d["_id"]: d for c in IN_MOVE_ORDER for d in db[c].find({"schedule": NAME})}
    found: dict[str, list[dict[str, Any]]] = {}
    for doc in by_id.values():
        found.setdefault(doc["idempotency_key"], []).append(doc)
    return found


def test_two_supervisors_and_a_killed_one_give_each_tick_one_job_that_runs(
    start_supervisor: Callable[..., Supervisor], db: Database[Any]
) -> None:
    """Two supervisors schedule the same ticks; one is killed with SIGKILL (master first, as a
    crash would) while the other goes on. Each tick up to the cursor has one job, and runs."""
    sups = [start_supervisor("--workers", "1", env=ENV) for _ in range(2)]
    for sup in sups:
        wait_until(lambda sup=sup: sup.children("scheduler"), 30, f"a scheduler\n{sup.output()}")
    first = wait_until(lambda: cursor(db), 30, "the schedule's first cursor")
    wait_until(lambda: ticks_dealt_with(db, first, 3), 60, "three ticks with both running")
    sups[0].signal(signal.SIGKILL)
    at_kill = wait_until(lambda: cursor(db), 5, "the cursor")
    end = wait_until(lambda: ticks_dealt_with(db, at_kill, 3), 60, "three ticks after the kill")
    expected = [key_for(NAME, first + n * S) for n in range(int((end - first) / S))]

    def all_ran() -> bool:
        found = jobs_by_key(db)
        return all(any(d["state"] == "succeeded" for d in found.get(k, [])) for k in expected)

    # A job the killed supervisor's consumer held is rescued when its lease (10 s) expires.
    wait_until(all_ran, 90, f"every tick's job to succeed\n{sups[1].output()}")
    sups[1].stop()
    found = jobs_by_key(db)
    counts = Counter({key: len(found.get(key, [])) for key in expected})
    assert [key for key, n in counts.items() if n != 1] == [], {k: found.get(k) for k in counts}

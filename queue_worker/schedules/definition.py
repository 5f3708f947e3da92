"""Defining periodic jobs in code, next to the tasks they run:

    from queue_worker import schedule

    schedule("reports.nightly", task="reports.build", cron="0 3 * * *", tz="Europe/Berlin",
             payload={"kind": "daily"})
    schedule("cache.refresh", task="cache.refresh", every_s=300, overlap="allow")

A module listed in QUEUE_TASK_MODULES registers its schedules when imported, like its tasks; every
supervisor's scheduler then keeps them. Policies (see docs/queue.md#periodic-jobs):

    missed            after downtime, of the ticks not enqueued in time: `latest` (default) one
                      catch-up job, `all` every tick still within `catch_up_s` (the newest
                      `max_catch_up`), `skip` none: only a tick enqueued on time runs
    catch_up_s        how late a tick may still be enqueued (default 1 h; at most the queue's
                      retention, for as long as a tick's key is remembered)
    start_deadline_s  a tick's job not started this long after its tick is cancelled unrun
    overlap           `skip` (default): no new tick's job while one of this schedule's jobs is
                      pending or running; `allow`
    jitter_s          run_at is the tick plus a deterministic 0..jitter_s delay (never the key)
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from queue_worker.enqueue import check_payload
from queue_worker.errors import ConfigError, PayloadError
from queue_worker.schedules.timing import Cron, Every, Timing, TimingError
from runtime import names


class Missed(StrEnum):
    LATEST = "latest"
    ALL = "all"
    SKIP = "skip"


class Overlap(StrEnum):
    SKIP = "skip"
    ALLOW = "allow"


@dataclass(frozen=True)
class Schedule:
    """One periodic job: what to enqueue, when, and the policies above."""

    name: str
    task: str
    cron: str | None = None
    every_s: float | None = None
    tz: str = "UTC"
    payload: Mapping[str, Any] = field(default_factory=dict)
    queue: str | None = None
    priority: int | None = None
    missed: Missed = Missed.LATEST
    catch_up_s: float = 3600.0
    max_catch_up: int = 100
    start_deadline_s: float | None = None
    overlap: Overlap = Overlap.SKIP
    jitter_s: float = 0.0

    def __post_init__(self) -> None:
        if not names.is_valid(self.name):
            raise ConfigError(f"schedule name {self.name!r}: use {names.RULE}")
        if (self.cron is None) == (self.every_s is None):
            raise ConfigError(f"schedule {self.name!r}: give exactly one of cron and every_s")
        object.__setattr__(self, "missed", _enum(Missed, self.missed, self.name))
        object.__setattr__(self, "overlap", _enum(Overlap, self.overlap, self.name))
        try:
            self.timing()
            check_payload(dict(self.payload))
        except (TimingError, PayloadError) as exc:
            raise ConfigError(f"schedule {self.name!r}: {exc}") from None
        if self.every_s is not None and self.tz != "UTC":
            raise ConfigError(f"schedule {self.name!r}: intervals ignore time zones; drop tz")
        if not self.catch_up_s >= 0 or self.max_catch_up < 1 or not self.jitter_s >= 0:
            raise ConfigError(
                f"schedule {self.name!r}: catch_up_s, jitter_s >= 0, max_catch_up >= 1"
            )
        if self.start_deadline_s is not None and not self.start_deadline_s > 0:
            raise ConfigError(f"schedule {self.name!r}: start_deadline_s must be > 0")

    def timing(self) -> Timing:
        if self.cron is not None:
            return Cron(self.cron, self.tz)
        assert self.every_s is not None
        return Every(self.every_s)

    def jitter(self, tick: datetime) -> timedelta:
        """Return this tick's delay: the same on every node, spread over [0, jitter_s)."""
        if not self.jitter_s:
            return timedelta(0)
        digest = hashlib.sha256(f"{self.name}|{tick.isoformat()}".encode()).digest()
        fraction = int.from_bytes(digest[:8], "big") / 2**64
        return timedelta(milliseconds=int(fraction * self.jitter_s * 1000))

    def as_doc(self) -> dict[str, Any]:
        """Return the definition as stored in the `schedules` collection (for people to read)."""
        return {
            "task": self.task,
            "cron": self.cron,
            "every_s": self.every_s,
            "tz": self.tz,
            "payload": dict(self.payload),
            "queue": self.queue,
            "priority": self.priority,
            "missed": self.missed.value,
            "catch_up_s": self.catch_up_s,
            "max_catch_up": self.max_catch_up,
            "start_deadline_s": self.start_deadline_s,
            "overlap": self.overlap.value,
            "jitter_s": self.jitter_s,
        }


def _enum(kind: type[Missed] | type[Overlap], value: object, name: str) -> Any:
    try:
        return kind(str(value))
    except ValueError:
        choices = ", ".join(member.value for member in kind)
        raise ConfigError(f"schedule {name!r}: {value!r} is not one of {choices}") from None


@dataclass
class ScheduleRegistry:
    """Name → Schedule, filled by importing task modules (like the task registry)."""

    schedules: dict[str, Schedule] = field(default_factory=dict)

    def add(self, definition: Schedule) -> Schedule:
        existing = self.schedules.get(definition.name)
        if existing is not None and existing != definition:
            raise ConfigError(f"schedule {definition.name!r} is defined twice")
        self.schedules[definition.name] = definition
        return definition

    def all(self) -> list[Schedule]:
        return sorted(self.schedules.values(), key=lambda s: s.name)


registry = ScheduleRegistry()
"""The process's schedules, filled by the task modules' `schedule(...)` calls."""


def schedule(name: str, task: str, **options: Any) -> Schedule:
    """Define the periodic job `name` enqueuing `task` (see the module docstring)."""
    return registry.add(Schedule(name, task, **options))

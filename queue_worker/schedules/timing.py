"""When a schedule fires: a 5-field cron expression in an IANA time zone, or a fixed interval.

Ticks are instants, always handled in UTC; a tick's identity (and its job's idempotency key) is
its UTC time, so every node computes the same ticks with no coordination.

Cron follows Debian cron, through `cronsim` (which matches it, DST included): a job at a fixed
local time (minute and hour fields without `*`) that falls in a spring-forward gap runs once,
right after the jump; one that falls in a fall-back overlap runs once, at the first occurrence.
Expressions with `*` in the minute or hour field run on real time: every real quarter hour, say,
through both passes of an overlap. Intervals are anchored at the Unix epoch (ticks at k × every_s
seconds, millisecond precision), so they ignore time zones and DST altogether.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MS = timedelta(milliseconds=1)
_CANDIDATES = 8  # cron matches before the one after an instant, at most (fall-back overlaps)


class TimingError(ValueError):
    """A cron expression, interval or time zone that cannot be used."""


class Timing(Protocol):
    def next_after(self, instant: datetime) -> datetime | None:
        """Return the first tick strictly after `instant` (UTC), None if there is none."""
        ...

    def describe(self) -> str: ...


@dataclass(frozen=True)
class Cron:
    """A 5-field cron expression evaluated in time zone `tz`."""

    expr: str
    tz: str = "UTC"

    def __post_init__(self) -> None:
        if len(self.expr.split()) != 5:
            raise TimingError(f"cron expression {self.expr!r} must have 5 fields")
        try:
            CronSim(self.expr, datetime.now(self.zone))
        except CronSimError as exc:
            raise TimingError(f"cron expression {self.expr!r}: {exc}") from None

    @property
    def zone(self) -> ZoneInfo:
        return zone(self.tz)

    def next_after(self, instant: datetime) -> datetime | None:
        matches = CronSim(self.expr, instant.astimezone(self.zone))
        for _ in range(_CANDIDATES):
            try:
                candidate = next(matches).astimezone(UTC)
            except StopIteration:
                return None  # no match within 50 years
            # In a fall-back overlap a fixed-time match can lie before the instant in real
            # time (its wall-clock time comes again): skip it, it has fired already.
            if candidate > instant:
                return candidate
        return None

    def describe(self) -> str:
        return f"cron {self.expr!r} in {self.tz}"


@dataclass(frozen=True)
class Every:
    """Every `seconds` seconds, at multiples of it since the Unix epoch."""

    seconds: float

    def __post_init__(self) -> None:
        if not self.seconds >= 0.001:
            raise TimingError("an interval must be at least 0.001 seconds")

    @property
    def step_ms(self) -> int:
        return max(1, round(self.seconds * 1000))

    def next_after(self, instant: datetime) -> datetime:
        elapsed_ms = (instant - EPOCH) // MS
        return EPOCH + MS * ((elapsed_ms // self.step_ms + 1) * self.step_ms)

    def count_between(self, start: datetime, end: datetime) -> int:
        """Return how many ticks lie in [start, end]."""
        if end < start:
            return 0
        first = (start - EPOCH) // MS
        last = (end - EPOCH) // MS
        return last // self.step_ms - (first - 1) // self.step_ms

    def describe(self) -> str:
        return f"every {self.seconds:g} s"


def zone(name: str) -> ZoneInfo:
    """Return the IANA time zone `name` (from the tzdata package when the OS has none)."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise TimingError(f"unknown time zone {name!r}") from None


def ticks(timing: Timing, start: datetime, end: datetime, *, limit: int) -> list[datetime]:
    """Return the ticks in [start, end], oldest first, at most `limit` of them."""
    found: list[datetime] = []
    tick = timing.next_after(start - MS)
    while tick is not None and tick <= end and len(found) < limit:
        found.append(tick)
        tick = timing.next_after(tick)
    return found


def tick_key(tick: datetime) -> str:
    """Return a tick's identity: its UTC time in ISO 8601 (milliseconds when it has them)."""
    utc = tick.astimezone(UTC)
    text = utc.strftime("%Y-%m-%dT%H:%M:%S")
    if utc.microsecond:
        text += f".{utc.microsecond // 1000:03d}"
    return text + "Z"


def shortest_gap_s(timing: Timing, start: datetime, *, samples: int = 500) -> float | None:
    """Return the shortest time between consecutive ticks among the next `samples` (within two
    years), None if it fires fewer than twice."""
    horizon = start + timedelta(days=731)
    previous = timing.next_after(start)
    shortest: float | None = None
    for _ in range(samples):
        if previous is None or previous > horizon:
            break
        following = timing.next_after(previous)
        if following is None:
            break
        gap = (following - previous).total_seconds()
        shortest = gap if shortest is None else min(shortest, gap)
        previous = following
    return shortest

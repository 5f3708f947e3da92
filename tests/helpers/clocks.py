"""The one fake clock of the suite: time moves only when a test moves it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

T0 = datetime(2036, 3, 1, 12, 0, 0, tzinfo=UTC)
"""A fixed, round instant tests can reason about (the default start). In the future on purpose:
the server's TTL monitor compares stored times with the *real* clock every 60 s, and would
delete a finished job (or a counter) stamped with a past fake time in the middle of a test."""


class FakeClock:
    """A clock that only moves when a test moves it (`advance`, or by setting `now`)."""

    def __init__(self, now: datetime | None = None) -> None:
        self.now = now or T0

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> datetime:
        """Move the clock forward and return the new time."""
        self.now += timedelta(seconds=seconds)
        return self.now


def wall_clock() -> FakeClock:
    """A fake clock starting at the real time (for code that also checks real time, such as
    JWT expiry in a library), moved only by the test."""
    return FakeClock(datetime.now(UTC))


class FakeMonotonic:
    """A monotonic clock in seconds (time.monotonic's stand-in) that only the test moves."""

    def __init__(self, now: float = 100.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> float:
        self.now += seconds
        return self.now

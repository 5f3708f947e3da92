"""When schedules fire: Debian-cron semantics across DST in three time zones (a one-hour shift
both ways, and Lord Howe's half hour), interval ticks, tick keys and definition checks."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from queue_worker.errors import ConfigError
from queue_worker.schedules import Schedule
from queue_worker.schedules.timing import (
    Cron,
    Every,
    TimingError,
    shortest_gap_s,
    tick_key,
    ticks,
)


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def fired(expr: str, tz: str, start: str, end: str) -> list[str]:
    """The ticks in [start, end] as local wall-clock times with their offsets."""
    cron = Cron(expr, tz)
    return [
        t.astimezone(cron.zone).isoformat() for t in ticks(cron, utc(start), utc(end), limit=50)
    ]


@pytest.mark.parametrize(
    ("tz", "expr", "start", "end", "expected"),
    [
        # Spring forward: 02:30 does not exist that night; it runs once, right after the jump.
        ("Europe/Berlin", "30 2 * * *", "2026-03-28T00:00", "2026-03-30T12:00",
         ["2026-03-28T02:30:00+01:00", "2026-03-29T03:00:00+02:00", "2026-03-30T02:30:00+02:00"]),
        ("America/New_York", "30 2 * * *", "2026-03-07T12:00", "2026-03-09T12:00",
         ["2026-03-08T03:00:00-04:00", "2026-03-09T02:30:00-04:00"]),
        # Lord Howe moves by 30 minutes: 02:15 falls in the 02:00-02:30 gap.
        ("Australia/Lord_Howe", "15 2 * * *", "2026-10-02T00:00", "2026-10-04T20:00",
         ["2026-10-03T02:15:00+10:30", "2026-10-04T02:30:00+11:00", "2026-10-05T02:15:00+11:00"]),
        # Fall back: 02:30 happens twice that night; it runs once, at the first.
        ("Europe/Berlin", "30 2 * * *", "2026-10-24T12:00", "2026-10-26T12:00",
         ["2026-10-25T02:30:00+02:00", "2026-10-26T02:30:00+01:00"]),
        ("America/New_York", "30 1 * * *", "2026-10-31T12:00", "2026-11-02T12:00",
         ["2026-11-01T01:30:00-04:00", "2026-11-02T01:30:00-05:00"]),
        ("Australia/Lord_Howe", "45 1 * * *", "2026-04-04T00:00", "2026-04-05T20:00",
         ["2026-04-05T01:45:00+11:00", "2026-04-06T01:45:00+10:30"]),
        # A wildcard hour runs on real time: both passes of the overlap.
        ("Europe/Berlin", "*/30 * * * *", "2026-10-25T00:00", "2026-10-25T01:30",
         ["2026-10-25T02:00:00+02:00", "2026-10-25T02:30:00+02:00", "2026-10-25T02:00:00+01:00",
          "2026-10-25T02:30:00+01:00"]),
    ],
)  # fmt: skip
def test_cron_across_dst_matches_debian_cron(
    tz: str, expr: str, start: str, end: str, expected: list[str]
) -> None:
    assert fired(expr, tz, start, end) == expected


def test_the_tick_after_an_instant_in_the_second_pass_of_an_overlap_is_not_in_the_past() -> None:
    """At 02:40 of the second pass, 02:30's first occurrence is past: the next is tomorrow."""
    cron = Cron("30 2 * * *", "Europe/Berlin")
    second_pass = utc("2026-10-25T01:40")  # 02:40 CET, after 02:30 CEST has fired
    assert cron.next_after(second_pass) == utc("2026-10-26T01:30")


def test_intervals_are_anchored_at_the_epoch() -> None:
    every = Every(15)
    assert every.next_after(utc("2026-01-01T00:00:07")) == utc("2026-01-01T00:00:15")
    assert every.next_after(utc("2026-01-01T00:00:15")) == utc("2026-01-01T00:00:30")
    assert every.count_between(utc("2026-01-01T00:00:00"), utc("2026-01-01T00:01:00")) == 5
    assert Every(0.25).next_after(utc("2026-01-01T00:00:00.1")) == utc("2026-01-01T00:00:00.25")


def test_tick_keys_are_utc_iso_8601() -> None:
    assert tick_key(utc("2026-03-29T01:00")) == "2026-03-29T01:00:00Z"
    assert tick_key(utc("2026-03-29T01:00:00.250")) == "2026-03-29T01:00:00.250Z"


def test_shortest_gap_finds_expressions_that_fire_too_often() -> None:
    start = utc("2026-01-01T00:00")
    assert shortest_gap_s(Cron("* * * * *"), start) == 60
    assert shortest_gap_s(Cron("0 9 * * 1-5", "Europe/Berlin"), start) == 86400
    assert shortest_gap_s(Cron("0 0 29 2 *"), start) is None  # once in the next two years
    with pytest.raises(TimingError):
        Cron("0 0 30 2 *")  # 30 February never comes: refused where it is defined


@pytest.mark.parametrize(
    "options",
    [
        {"cron": "61 * * * *"},
        {"cron": "* * * *"},
        {"cron": "0 3 * * *", "tz": "Mars/Olympus"},
        {"every_s": 0},
        {"cron": "0 3 * * *", "every_s": 60},
        {},
        {"every_s": 60, "missed": "sometimes"},
        {"every_s": 60, "tz": "Europe/Berlin"},
        {"every_s": 60, "payload": {"$bad": 1}},
        {"every_s": 60, "start_deadline_s": 0},
    ],
)
def test_bad_definitions_are_refused(options: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        Schedule("nightly", "reports.build", **options)  # type: ignore[arg-type]


def test_jitter_is_deterministic_and_bounded() -> None:
    definition = Schedule("spread", "t", every_s=60, jitter_s=30)
    tick = utc("2026-01-01T00:00")
    assert definition.jitter(tick) == definition.jitter(tick)
    delays = {definition.jitter(utc(f"2026-01-01T00:{m:02d}")).total_seconds() for m in range(60)}
    assert all(0 <= d < 30 for d in delays) and len(delays) > 30

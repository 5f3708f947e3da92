"""Helpers for the queue core tests (not fixtures): a settable clock, metric deltas, polling,
and views across the backlog and `jobs`."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from prometheus_client import REGISTRY

from queue_worker.store import JobStore

T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
"""The fake clock's start: a fixed, round instant tests can reason about."""


class FakeClock:
    """A clock that only moves when a test moves it."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> datetime:
        self.now += timedelta(seconds=seconds)
        return self.now


def metric(name: str, **labels: str) -> float:
    """Return a metric sample's current value (0 when it was never touched)."""
    return REGISTRY.get_sample_value(name, labels) or 0.0


def wait_until(predicate: Callable[[], bool], timeout_s: float = 30.0, what: str = "") -> None:
    """Poll `predicate` until it is true; fail after `timeout_s` (a bound on a hang, generous on
    purpose: machines differ by 3x from one day to the next)."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what or predicate}")
        time.sleep(0.01)


def live_count(store: JobStore, query: Mapping[str, Any] | None = None) -> int:
    """Count the jobs matching `query` that are not finished: in the backlog and in `jobs`."""
    flt = dict(query or {})
    return store.backlog.count_documents(flt) + store.jobs.count_documents(flt)


def promote_all(store: JobStore) -> int:
    """Move every backlog job into `jobs` whatever its run_at, as if all were due; return count."""
    far = datetime(9999, 1, 1, tzinfo=UTC)
    queues = list(store.backlog.distinct("queue"))
    moved = 0
    while queues and (batch := store.promote(queues, now=far)):
        moved += batch
    return moved

"""Helpers for the queue core tests (not fixtures): metric deltas and views across the backlog
and `jobs`. The clock and the deadline poll are the suite's (clocks.py, waiting.py), re-exported
here for the queue tests' imports."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from clocks import T0, FakeClock
from prometheus_client import REGISTRY
from waiting import wait_until

from queue_worker.store import JobStore


def metric(name: str, **labels: str) -> float:
    """Return a metric sample's current value (0 when it was never touched)."""
    return REGISTRY.get_sample_value(name, labels) or 0.0


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


__all__ = ["T0", "FakeClock", "live_count", "metric", "promote_all", "wait_until"]

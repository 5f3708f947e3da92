"""Fixtures for the queue core tests: settings on this test's database, a store, a fake clock."""

from __future__ import annotations

from typing import Any

import pytest
from pymongo.database import Database
from queue_helpers import T0, FakeClock

from queue_worker.settings import QueueSettings
from queue_worker.store import JobStore


@pytest.fixture
def queue_settings(mongo_uri: str, db_name: str) -> QueueSettings:
    """Settings for this test's database, with small, round numbers tests can reason about."""
    return QueueSettings(
        mongodb_uri=mongo_uri,
        mongodb_database=db_name,
        lease_s=30.0,
        heartbeat_s=10.0,
        poll_max_s=0.5,
        backoff_base_s=1.0,
        backoff_cap_s=60.0,
        max_attempts=3,
        timeout_s=300.0,
        poison_crashes=3,
    )


@pytest.fixture
def fake_clock() -> FakeClock:
    return FakeClock(T0)


@pytest.fixture
def live_store(db: Database[Any], queue_settings: QueueSettings) -> JobStore:
    """A JobStore on this test's database reading the real clock: for tests whose consumers
    run in other processes, on the real clock too."""
    store = JobStore(db, queue_settings)
    store.ensure_indexes()
    return store


@pytest.fixture
def job_store(db: Database[Any], queue_settings: QueueSettings, fake_clock: FakeClock) -> JobStore:
    """A JobStore on this test's fresh database, indexes created, reading the fake clock."""
    store = JobStore(db, queue_settings, clock=fake_clock)
    store.ensure_indexes()
    return store

"""Fixtures for the API tests: settings with fresh random secrets and bcrypt cost 4, a real
JobStore on the test's database, and a Falcon test client over `create_app`."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from apihelpers import Clock, secret_env
from falcon import testing
from pymongo.database import Database

from api.app import create_app
from api.auth.passwords import HashPool
from api.metrics import ApiMetrics
from api.settings import ApiSettings
from queue_worker import JobStore, QueueSettings


@pytest.fixture
def settings() -> ApiSettings:
    return ApiSettings.from_env(
        {
            **secret_env(),
            "API_LOGIN_MAX_FAILURES_PER_ACCOUNT": "5",
            "API_LOGIN_MAX_FAILURES_PER_IP": "8",
            "API_MAX_BODY_BYTES": "4096",
        }
    )


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def metrics() -> ApiMetrics:
    return ApiMetrics()


@pytest.fixture
def job_store(db: Database[dict[str, Any]]) -> JobStore:
    store = JobStore(db, QueueSettings.from_env({}))
    store.ensure_indexes()
    return store


@pytest.fixture
def client(
    settings: ApiSettings,
    db: Database[dict[str, Any]],
    job_store: JobStore,
    clock: Clock,
    metrics: ApiMetrics,
) -> Iterator[testing.TestClient]:
    pool = HashPool(2, metrics)
    app = create_app(settings, db, job_store, clock=clock, metrics=metrics, hash_pool=pool)
    yield testing.TestClient(app)
    pool.close()

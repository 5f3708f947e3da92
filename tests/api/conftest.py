"""Fixtures for the API tests: settings with fresh random secrets and bcrypt cost 4, a real
JobStore on the test's database, and a Falcon test client over `create_app`."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import localdb
import pytest
from aiosmtpd.controller import Controller
from apihelpers import AppFactory, Clock, secret_env
from clocks import wall_clock
from falcon import testing
from mailhelpers import Mailbox
from pymongo.database import Database

from api.app import create_app
from api.auth.passwords.hashing import HashPool
from api.auth.stores.user_cache import UserCache
from api.metrics import ApiMetrics
from api.settings import ApiSettings
from api.tasks import with_product_tasks
from queue_worker import JobStore, QueueSettings
from queue_worker.builtin import load_tasks


@pytest.fixture(autouse=True)
def close_user_caches() -> Iterator[None]:
    """Stop the change streams of the apps a test built (each has its user cache's watcher)."""
    yield
    for cache in list(UserCache.instances):
        cache.close()


@pytest.fixture
def settings() -> ApiSettings:
    return ApiSettings.from_env(
        {
            **secret_env(),
            "API_LOGIN_FREE_FAILURES": "5",
            "API_LOGIN_MAX_FAILURES_PER_ACCOUNT": "12",
            "API_LOGIN_MAX_FAILURES_PER_IP": "20",
            "API_MAX_BODY_BYTES": "4096",
            "API_SUBMITTABLE_TASKS": "bench.noop,bench.sleep",
            # In-process tests read the security log right after a login: no batching.
            "API_LOGIN_LEDGER_FLUSH_MS": "0",
        }
    )


@pytest.fixture
def clock() -> Clock:
    return wall_clock()


@pytest.fixture
def metrics() -> ApiMetrics:
    return ApiMetrics()


@pytest.fixture
def job_store(db: Database[dict[str, Any]]) -> JobStore:
    """The queue's store as api/wsgi.py builds it: with the task registry (api.tasks, and the
    bench tasks the API test settings allow clients to submit)."""
    settings = with_product_tasks(QueueSettings.from_env({"QUEUE_ENABLE_BENCH_TASKS": "1"}))
    store = JobStore(db, settings, registry=load_tasks(settings))
    store.ensure_indexes()
    return store


@pytest.fixture
def make_client(
    settings: ApiSettings, db: Database[dict[str, Any]], job_store: JobStore, clock: Clock
) -> Iterator[AppFactory]:
    """The API tests' one app factory: a Falcon test client over `create_app` with this test's
    settings, database, store and clock, each overridable (`make_client(other_settings,
    store=..., metrics=...)`); every app gets fresh metrics unless given, and the hash pools
    it made are closed after the test."""
    pools: list[HashPool] = []

    def make(
        app_settings: ApiSettings | None = None,
        *,
        store: JobStore | None = None,
        metrics: ApiMetrics | None = None,
        hash_threads: int = 2,
    ) -> testing.TestClient:
        metrics = metrics if metrics is not None else ApiMetrics()
        pools.append(HashPool(hash_threads, metrics))
        app = create_app(
            app_settings or settings, db, store or job_store, clock=clock, metrics=metrics,
            hash_pool=pools[-1],
        )  # fmt: skip
        return testing.TestClient(app)

    yield make
    for pool in pools:
        pool.close()


@pytest.fixture
def client(make_client: AppFactory, metrics: ApiMetrics) -> testing.TestClient:
    """A test client over the app with this test's settings, store, clock and metrics."""
    return make_client(metrics=metrics)


@pytest.fixture
def smtp_server() -> Iterator[tuple[Mailbox, int]]:
    """A real SMTP server on a free loopback port."""
    mailbox = Mailbox()
    port = localdb.free_port()
    controller = Controller(mailbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield mailbox, port
    finally:
        controller.stop()

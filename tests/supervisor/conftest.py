"""Fixtures for the supervisor's process tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from pymongo.database import Database
from supervisor_harness import FAST_ENV, Supervisor

from queue_worker.settings import QueueSettings
from queue_worker.store import JobStore


@pytest.fixture
def store(db: Database[dict[str, object]], mongo_env: dict[str, str]) -> JobStore:
    """A JobStore on this test's database, with the settings the supervisor will use."""
    settings = QueueSettings.from_env({**mongo_env, **FAST_ENV})
    store = JobStore(db, settings)
    store.ensure_indexes()
    return store


@pytest.fixture
def start_supervisor(
    mongo_env: dict[str, str], tmp_path: Path
) -> Iterator[Callable[..., Supervisor]]:
    """Start supervisors for this test; every one is stopped (and its family killed) after it."""
    started: list[Supervisor] = []

    def start(*args: str, env: dict[str, str] | None = None) -> Supervisor:
        sup = Supervisor(mongo_env, args, tmp_path / f"sup{len(started)}.log", env)
        started.append(sup)
        return sup

    yield start
    for sup in started:
        sup.stop()

"""Shared fixtures: one real database server per test session, a fresh database per test.

With MONGODB_URI set, that server is used and nothing is started; otherwise a local SecantusDB
server is started on a free port with a throwaway data directory and stopped at the end.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import localdb
import pytest
from apihelpers import secret_env
from pymongo import MongoClient
from pymongo.database import Database

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def mongo_uri() -> Iterator[str]:
    """The URI of the session's database server (MONGODB_URI, or a local server we start)."""
    external = os.environ.get("MONGODB_URI")
    if external:
        yield external
        return
    data_root = Path(tempfile.mkdtemp(prefix="test-db-", dir=_var_dir()))
    server = localdb.start(data_dir=data_root / "data", log_path=data_root / "server.log")
    try:
        yield server.uri()
    finally:
        server.stop()
        shutil.rmtree(data_root, ignore_errors=True)


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[localdb.LocalDB]:
    """A local database server of this test's own, which it may kill, freeze and restart (on
    its port and data directory: `localdb.start(port=own_server.port, data_dir=...)`)."""
    server = localdb.start(data_dir=tmp_path / "db", log_path=tmp_path / "db.log")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def mongo_client(mongo_uri: str) -> Iterator[MongoClient[dict[str, object]]]:
    client: MongoClient[dict[str, object]] = MongoClient(mongo_uri, tz_aware=True)
    yield client
    client.close()


@pytest.fixture
def db_name() -> str:
    """A database name no other test uses."""
    return f"test_{uuid.uuid4().hex[:12]}"


@pytest.fixture
def db(
    mongo_client: MongoClient[dict[str, object]], db_name: str
) -> Iterator[Database[dict[str, object]]]:
    """A fresh, empty database on the session's server, dropped after the test."""
    yield mongo_client[db_name]
    mongo_client.drop_database(db_name)


@pytest.fixture
def mongo_env(mongo_uri: str, db_name: str, db: Database[dict[str, object]]) -> dict[str, str]:
    """Environment for a subprocess that must use this test's database."""
    env = dict(os.environ)
    env["MONGODB_URI"] = mongo_uri
    env["MONGODB_DATABASE"] = db_name
    env["PYTHONPATH"] = str(ROOT)
    # The product's tasks, as its deployment configures them; they mint account links: a key.
    env["QUEUE_TASK_MODULES"] = "api.tasks"
    env["API_ACCOUNT_TOKEN_KEYS"] = secret_env()["API_ACCOUNT_TOKEN_KEYS"]
    return env


def _var_dir() -> Path:
    var = ROOT / "var"
    var.mkdir(exist_ok=True)
    return var

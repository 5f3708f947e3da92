"""Job submission and reads through the API, and account events when the queue is down."""

from __future__ import annotations

import dataclasses
import logging
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from apihelpers import PASSWORD, AppFactory, bearer, secret_env, signup, submitted_jobs
from falcon import testing
from pymongo import MongoClient
from pymongo.database import Database

from api.metrics import ApiMetrics
from api.settings import ApiSettings
from queue_worker import JobStore, QueueSettings, TaskRegistry
from queue_worker.layout import BACKLOG, JOBS

ROOT = Path(__file__).resolve().parents[2]


def submit(client: testing.TestClient, token: str, **body: Any) -> testing.Result:
    return client.simulate_post(
        "/jobs", json={"task": "bench.noop", "payload": {}, **body}, headers=bearer(token)
    )


def test_an_allowlisted_task_is_accepted_with_202(client: testing.TestClient, db: Database) -> None:
    """POST /jobs answers 202 {id, state} and stores the job with its submitter."""
    token = signup(client)["access_token"]
    result = submit(client, token, payload={"ms": 5}, priority=-3, delay_s=1.5)
    assert result.status_code == 202
    assert set(result.json) == {"id", "state"}
    assert result.json["state"] == "pending"
    stored = db[BACKLOG].find_one({"task": "bench.noop"})  # unkeyed: not yet promoted
    assert stored["priority"] == -3
    assert stored["submitted_by"] == str(db["users"].find_one()["_id"])


def test_tasks_off_the_allowlist_are_refused(client: testing.TestClient, db: Database) -> None:
    """Clients cannot submit internal tasks such as user.created (422), nor any unknown task."""
    token = signup(client)["access_token"]
    for task in ["user.created", "bench.crash", "nope"]:
        result = submit(client, token, task=task)
        assert result.status_code == 422
        assert result.json["error"]["code"] == "task_not_allowed"
    assert submitted_jobs(db) == 0


def test_payloads_that_cannot_be_stored_are_422(client: testing.TestClient) -> None:
    """Operator keys, dotted keys and integers beyond 64 bits are refused, not a 500."""
    token = signup(client)["access_token"]
    for payload in [{"$where": 1}, {"a.b": 1}, {"n": 2**70}, {"deep": [[[[{"$x": 1}]]]]}]:
        assert submit(client, token, payload=payload).status_code == 422


def test_only_the_owner_can_read_a_job(client: testing.TestClient) -> None:
    """The owner sees state, attempts and timestamps; another user gets 404 like an unknown id."""
    owner = signup(client)["access_token"]
    other = signup(client, email="eve@example.com")["access_token"]
    job_id = submit(client, owner).json["id"]
    mine = client.simulate_get(f"/jobs/{job_id}", headers=bearer(owner))
    assert mine.status_code == 200
    assert (
        mine.json["id"] == job_id and mine.json["state"] == "pending" and mine.json["attempts"] == 0
    )
    assert {"result", "last_error", "created_at", "run_at", "started_at", "finished_at"} <= set(
        mine.json
    )
    assert client.simulate_get(f"/jobs/{job_id}", headers=bearer(other)).status_code == 404
    assert client.simulate_get("/jobs/not-an-id", headers=bearer(owner)).status_code == 404
    assert (
        client.simulate_get("/jobs/6b059b67580172644f5dbbfa", headers=bearer(owner)).status_code
        == 404
    )


def test_idempotency_keys_are_scoped_to_the_user(client: testing.TestClient) -> None:
    """One user's key returns that user's job; the same key from another user is a new job."""
    alice = signup(client)["access_token"]
    eve = signup(client, email="eve@example.com")["access_token"]
    first = submit(client, alice, idempotency_key="k1").json["id"]
    assert submit(client, alice, idempotency_key="k1").json["id"] == first
    assert submit(client, eve, idempotency_key="k1").json["id"] != first


def test_jobs_require_an_access_token(client: testing.TestClient) -> None:
    """Without a token, POST /jobs and GET /jobs/{id} are 401."""
    assert client.simulate_post("/jobs", json={"task": "bench.noop"}).status_code == 401
    assert client.simulate_get("/jobs/6b059b67580172644f5dbbfa").status_code == 401


def test_signup_survives_a_failed_enqueue_and_login_enqueues_the_welcome_later(
    make_client: AppFactory, settings: ApiSettings, db: Database, job_store: JobStore
) -> None:
    """With the queue unreachable, sign-up still creates the account (201); the next login
    enqueues user.created, exactly once."""
    dead: MongoClient[dict[str, Any]] = MongoClient(
        "mongodb://127.0.0.1:1/?directConnection=true", serverSelectionTimeoutMS=100, timeoutMS=200
    )
    broken_queue = JobStore(dead["app"], QueueSettings.from_env({}))
    down = make_client(store=broken_queue)
    signup(down)
    assert db["users"].find_one()["welcome_enqueued"] is False
    up = make_client()
    for _ in range(2):
        result = up.simulate_post(
            "/users/login", json={"email": "ada@example.com", "password": PASSWORD}
        )
        assert result.status_code == 200
    assert db[JOBS].count_documents({"task": "user.created"}) == 1
    assert db["users"].find_one()["welcome_enqueued"] is True
    dead.close()


def test_jobs_the_api_enqueues_get_their_tasks_declared_defaults(
    client: testing.TestClient, db: Database
) -> None:
    """The welcome job runs with user.created's declared timeout (60 s), not the queue's global
    default (300 s): the API enqueues through the task registry."""
    signup(client)
    welcome = db[JOBS].find_one({"task": "user.created"})
    assert welcome is not None and welcome["timeout_s"] == 60.0


def test_a_submitted_task_lands_on_the_queue_its_task_declares(
    make_client: AppFactory, settings: ApiSettings, db: Database, job_store: JobStore
) -> None:
    """A task declared on another queue is enqueued on that queue, where its consumers look,
    whoever enqueues it: here a client through POST /jobs."""
    assert job_store.registry is not None
    own = TaskRegistry(dict(job_store.registry.specs))
    own.task("report.build", queue="reports", timeout_s=7)(lambda p, c: None)
    store = JobStore(db, job_store.settings, registry=own)
    allowed = dataclasses.replace(settings, submittable_tasks=frozenset({"report.build"}))
    api = make_client(allowed, store=store)
    token = signup(api)["access_token"]
    result = api.simulate_post("/jobs", json={"task": "report.build"}, headers=bearer(token))
    assert result.status_code == 202
    stored = db[BACKLOG].find_one({"task": "report.build"})
    assert stored is not None and (stored["queue"], stored["timeout_s"]) == ("reports", 7.0)


def test_a_bug_while_enqueueing_an_event_is_logged_and_counted_not_swallowed(
    make_client: AppFactory,
    settings: ApiSettings,
    db: Database,
    job_store: JobStore,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A programming error in the enqueue path (not a database outage) does not fail the
    sign-up, but is logged with its traceback and counted in api_event_errors_total."""

    def broken_enqueue(*args: Any, **kwargs: Any) -> Any:
        raise KeyError("a bug")

    job_store.enqueue = broken_enqueue  # type: ignore[method-assign]
    metrics = ApiMetrics()
    api = make_client(metrics=metrics)
    with caplog.at_level(logging.ERROR, logger="api.auth"):
        signup(api)
    errors = [r for r in caplog.records if "enqueue of user.created failed" in r.getMessage()]
    assert errors and errors[0].exc_info is not None
    assert errors[0].exc_info[0] is KeyError
    count = metrics.registry.get_sample_value("api_event_errors_total", {"task": "user.created"})
    assert count == 1
    assert db["users"].find_one()["welcome_enqueued"] is False  # retried at the next login


def test_no_task_is_submittable_unless_the_deployment_names_it(
    make_client: AppFactory, settings: ApiSettings, db: Database, job_store: JobStore
) -> None:
    """With API_SUBMITTABLE_TASKS unset, POST /jobs refuses every task, bench tasks included."""
    default = ApiSettings.from_env({k: v for k, v in secret_env().items()})
    assert default.submittable_tasks == frozenset()
    api = make_client(default)
    token = signup(api)["access_token"]
    for task in ["bench.noop", "bench.sleep"]:
        result = submit(api, token, task=task)
        assert (result.status_code, result.json["error"]["code"]) == (422, "task_not_allowed")


def test_clients_cannot_jump_the_queue(client: testing.TestClient, db: Database) -> None:
    """A priority above API_MAX_CLIENT_PRIORITY (0 by default) is a 422; nothing is enqueued."""
    token = signup(client)["access_token"]
    result = submit(client, token, priority=1)
    assert (result.status_code, result.json["error"]["code"]) == (422, "priority_too_high")
    assert submit(client, token, priority=0).status_code == 202
    assert submitted_jobs(db) == 1


def test_a_user_past_the_active_job_limit_gets_429_until_jobs_finish(
    make_client: AppFactory, settings: ApiSettings, db: Database, job_store: JobStore
) -> None:
    """With 3 pending or running jobs a user's next submission is 429 with Retry-After, while
    other users still submit; once a job is no longer pending or running, there is room."""
    limited = dataclasses.replace(settings, max_active_jobs_per_user=3)
    api = make_client(limited)
    token = signup(api)["access_token"]
    ids = [submit(api, token).json["id"] for _ in range(3)]
    refused = submit(api, token)
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) >= 1
    other = signup(api, email="bob@example.com")["access_token"]
    assert submit(api, other).status_code == 202
    assert job_store.cancel(ids[0]) is not None
    assert submit(api, token).status_code == 202


def test_a_retried_keyed_submission_at_the_active_job_limit_gets_its_own_job(
    make_client: AppFactory, settings: ApiSettings, db: Database, job_store: JobStore
) -> None:
    """A client retrying POST /jobs with its idempotency key gets back the job the key already
    has (202, same id), even when that job fills the user's active-job limit; a new key is 429."""
    limited = dataclasses.replace(settings, max_active_jobs_per_user=1)
    api = make_client(limited)
    token = signup(api)["access_token"]
    first = submit(api, token, idempotency_key="order-1")
    assert first.status_code == 202
    again = submit(api, token, idempotency_key="order-1")
    assert (again.status_code, again.json["id"]) == (202, first.json["id"])
    assert submit(api, token, idempotency_key="order-2").status_code == 429
    assert submitted_jobs(db) == 1


def test_the_api_refuses_to_start_with_an_unknown_submittable_task() -> None:
    """api.wsgi refuses to load when API_SUBMITTABLE_TASKS names a task no module registers
    (a typo, or bench tasks without QUEUE_ENABLE_BENCH_TASKS): a clear error at start, not a
    422 for every client."""
    env = {**secret_env(), "API_SUBMITTABLE_TASKS": "bench.noop", "PATH": "/usr/bin:/bin"}
    result = subprocess.run(
        [sys.executable, "-c", "import api.wsgi"],
        env={**env, "PYTHONPATH": str(ROOT)},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "API_SUBMITTABLE_TASKS" in result.stderr and "bench.noop" in result.stderr

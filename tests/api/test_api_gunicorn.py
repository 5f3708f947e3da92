"""Integration: real gunicorn with gevent workers, driven over HTTP on a free port."""

from __future__ import annotations

import http.client
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import localdb
import pytest
from apihelpers import PASSWORD, secret_env
from apiserver import GUNICORN, ROOT, ApiServer, Response, start_api
from pymongo.database import Database
from waiting import wait_until

from queue_worker.layout import JOBS


@pytest.fixture
def api(mongo_env: dict[str, str]) -> Iterator[ApiServer]:
    server = start_api(mongo_env, workers=2, API_LOGIN_FREE_FAILURES="4")
    yield server
    server.stop()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def parallel(count: int, call: Any) -> list[Response]:
    """Run `call()` `count` times at once (released together by a barrier)."""
    barrier = threading.Barrier(count)

    def run() -> Response:
        barrier.wait(timeout=30)
        result: Response = call()
        return result

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(lambda _: run(), range(count)))


def signup(api: ApiServer, email: str = "ada@example.com") -> dict[str, Any]:
    result = api.request(
        "POST", "/users/signup", {"name": "Ada", "email": email, "password": PASSWORD}
    )
    assert result.status == 201, result.body
    body: dict[str, Any] = result.json
    return body


def test_full_account_flow_over_http(api: ApiServer) -> None:
    """sign-up → login → profile → refresh twice → the first token, two rotations behind, is a
    reuse and revokes the family → logout → logout-all, each step as existing clients do it."""
    first = signup(api)
    login = api.request("POST", "/users/login", {"email": "ada@example.com", "password": PASSWORD})
    assert login.status == 200 and login.headers["cache-control"] == "no-store"
    session = login.json
    profile = api.request("GET", "/users/profile", headers=bearer(session["access_token"]))
    assert profile.status == 200 and profile.json["email"] == "ada@example.com"
    second = api.request("POST", "/users/refresh", headers=bearer(session["refresh_token"]))
    assert second.status == 200
    rotated = api.request("POST", "/users/refresh", headers=bearer(second.json["refresh_token"]))
    assert rotated.status == 200
    reused = api.request("POST", "/users/refresh", headers=bearer(session["refresh_token"]))
    assert reused.status == 401 and reused.json["error"]["code"] == "refresh_token_reused"
    newest = api.request("POST", "/users/refresh", headers=bearer(rotated.json["refresh_token"]))
    assert newest.status == 401  # the whole family went with the replay
    assert api.request("GET", "/users/profile", headers=bearer(first["access_token"])).status == 200
    assert api.request("POST", "/users/logout", headers=bearer(first["access_token"])).status == 204
    assert (
        api.request("POST", "/users/refresh", headers=bearer(first["refresh_token"])).status == 401
    )
    third = api.request(
        "POST", "/users/login", {"email": "ada@example.com", "password": PASSWORD}
    ).json
    fourth = api.request(
        "POST", "/users/login", {"email": "ada@example.com", "password": PASSWORD}
    ).json
    assert (
        api.request("POST", "/users/logout-all", headers=bearer(third["access_token"])).status
        == 204
    )
    for tokens in (third, fourth):
        assert (
            api.request("GET", "/users/profile", headers=bearer(tokens["access_token"])).status
            == 401
        )
        assert (
            api.request("POST", "/users/refresh", headers=bearer(tokens["refresh_token"])).status
            == 401
        )


def test_the_served_api_enqueues_with_the_tasks_declared_defaults(
    api: ApiServer, db: Database
) -> None:
    """api/wsgi.py builds the job store with the task registry: the welcome job of a sign-up
    through gunicorn carries user.created's declared timeout (60 s), not the global 300 s."""
    signup(api)
    welcome = db[JOBS].find_one({"task": "user.created"})
    assert welcome is not None and welcome["timeout_s"] == 60.0


def test_workers_patch_ssl_before_pymongo_imports_it(api: ApiServer) -> None:
    """The master never loads pymongo (queue_worker's names load lazily), so gevent patches ssl
    before pymongo's TLS code binds it: no MonkeyPatchWarning in the log."""
    assert api.request("GET", "/healthz").status == 200
    assert "MonkeyPatchWarning" not in api.log()


def test_the_failed_login_limit_is_shared_by_all_workers(api: ApiServer) -> None:
    """Failures counted by any worker add up (the counters live in the database): after 4
    free failures on separate connections, the next attempt must wait: 429 with Retry-After."""
    signup(api)
    wrong = {"email": "ada@example.com", "password": "not-the-password"}
    assert [api.request("POST", "/users/login", wrong).status for _ in range(4)] == [401] * 4
    limited = api.request(
        "POST", "/users/login", {"email": "ada@example.com", "password": PASSWORD}
    )
    assert limited.status == 429
    assert int(limited.headers["retry-after"]) >= 1


def test_parallel_wrong_logins_cannot_exceed_the_limit(api: ApiServer) -> None:
    """Once a client has failed against an account, each further attempt reserves its turn
    before the password check: after one failure, of 20 concurrent wrong logins against 4 free
    failures exactly 3 are checked (401) and 17 are refused (429)."""
    signup(api)
    wrong = {"email": "ada@example.com", "password": "not-the-password"}
    assert api.request("POST", "/users/login", wrong).status == 401
    results = parallel(20, lambda: api.request("POST", "/users/login", wrong))
    assert sorted(r.status for r in results) == [401] * 3 + [429] * 17


def test_the_signup_limit_is_shared_by_all_workers(api: ApiServer, db: Database) -> None:
    """Sign-ups counted by any worker add up: of 26 concurrent sign-ups from one IP under the
    default limit of 20, exactly 20 create accounts and 6 get 429 with Retry-After."""

    def one(index: int) -> Response:
        body = {"name": "Ada", "email": f"u{index}@example.com", "password": PASSWORD}
        return api.request("POST", "/users/signup", body)

    counter = iter(range(26))
    lock = threading.Lock()

    def next_signup() -> Response:
        with lock:
            index = next(counter)
        return one(index)

    results = parallel(26, next_signup)
    assert sorted(r.status for r in results) == [201] * 20 + [429] * 6
    assert all(int(r.headers["retry-after"]) >= 1 for r in results if r.status == 429)
    assert db["users"].count_documents({}) == 20


def test_twenty_parallel_refreshes_with_one_token_rotate_once_and_agree(
    api: ApiServer, db: Database
) -> None:
    """Rotation is one compare-and-set: of 20 concurrent refreshes with one token exactly one
    rotates the family, and the others, within the grace period, get that very same new
    refresh token (two tabs with one cookie are not a theft); no reuse is detected."""
    token = signup(api)["refresh_token"]
    results = parallel(20, lambda: api.request("POST", "/users/refresh", headers=bearer(token)))
    assert sorted(r.status for r in results) == [200] * 20
    assert len({r.json["refresh_token"] for r in results}) == 1
    session = db["sessions"].find_one()
    assert session is not None and session["rotations"] == 1 and session["revoked_at"] is None


def test_parallel_signups_with_one_email_create_exactly_one_user(
    api: ApiServer, db: Database
) -> None:
    """Ten concurrent sign-ups with one address: one 201, nine 409, one account."""
    body = {"name": "Ada", "email": "race@example.com", "password": PASSWORD}
    results = parallel(10, lambda: api.request("POST", "/users/signup", body))
    assert sorted(r.status for r in results) == [201] + [409] * 9
    assert db["users"].count_documents({"email": "race@example.com"}) == 1


def test_a_chunked_body_over_the_limit_is_413(api: ApiServer) -> None:
    """A body without Content-Length (chunked) is cut off at the limit with 413."""
    conn = http.client.HTTPConnection("127.0.0.1", api.port, timeout=30)
    chunks = (b'{"name": "' if i == 0 else b"a" * 8192 for i in range(20))
    conn.request(
        "POST", "/users/signup", body=chunks, headers={"Content-Type": "application/json"},
        encode_chunked=True,
    )  # fmt: skip
    resp = conn.getresponse()
    assert resp.status == 413
    assert b'"payload_too_large"' in resp.read()
    conn.close()


def test_a_small_chunked_body_is_read_normally(api: ApiServer) -> None:
    """A chunked body under the limit is decoded like any other (here: 401 for bad credentials)."""
    conn = http.client.HTTPConnection("127.0.0.1", api.port, timeout=30)
    parts = iter([b'{"email": "x@example.com", ', b'"password": "not-the-password"}'])
    conn.request("POST", "/users/login", body=parts, headers={"Content-Type": "application/json"},
                 encode_chunked=True)  # fmt: skip
    assert conn.getresponse().status == 401
    conn.close()


def test_bodies_that_broke_the_decoder_are_4xx_in_a_gevent_worker(api: ApiServer) -> None:
    """In a greenlet too, 30,000 levels of nesting in a job payload (within the 64 KiB limit)
    are 422 and invalid UTF-8 is 400: neither kills the request with a 500."""
    token = signup(api)["access_token"]
    deep = b'{"task": "bench.noop", "payload": {"a": ' + b"[" * 30000 + b"]" * 30000 + b"}}"
    nested = api.request("POST", "/jobs", deep, headers=bearer(token))
    assert nested.status == 422 and nested.json["error"]["code"] == "nested_too_deeply"
    broken = api.request("POST", "/users/login", b'{"email": "\xff", "password": "p"}')
    assert broken.status == 400 and broken.json["error"]["code"] == "malformed_json"
    assert api.request("GET", "/healthz").status == 200


def test_metrics_are_aggregated_over_all_workers(api: ApiServer) -> None:
    """/metrics counts every request whichever worker served it or the scrape."""
    for _ in range(30):
        assert api.request("GET", "/healthz").status == 200
    pattern = re.compile(
        r'http_requests_total\{method="GET",route="/healthz",status_class="2xx"\} (\S+)'
    )
    for _ in range(4):
        match = pattern.search(api.request("GET", "/metrics").body.decode())
        assert match is not None
        # 30 here, plus the start-up readiness probes (at least one).
        assert float(match.group(1)) >= 31
    assert len(list(Path(api.metrics_dir).glob("*.db"))) >= 2


def test_schemathesis_finds_no_server_errors(api: ApiServer, tmp_path: Path) -> None:
    """A bounded property-based run over /openapi.json (authenticated) gets no 5xx and
    responses that conform to the documented schemas."""
    token = signup(api, email="fuzz@example.com")["access_token"]
    result = subprocess.run(
        [
            str(Path(sys.executable).parent / "schemathesis"), "run",
            f"http://127.0.0.1:{api.port}/openapi.json",
            "--checks", "all",
            # Valid-by-schema bodies may still be refused on purpose (common passwords).
            "--exclude-checks", "positive_data_acceptance",
            # Logging out would revoke the token the rest of the run uses.
            "--exclude-path-regex", "logout",
            "-H", f"Authorization: Bearer {token}",
            "--max-examples", "25", "--seed", "4", "--no-shrink",
            # One worker: hypothesis parsing lambdas in threads hits a CPython 3.11 AST race.
            "--workers", "1",
        ],
        cwd=tmp_path, capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-6000:]
    assert "5xx" not in api.log()


def test_gunicorn_refuses_to_start_with_a_placeholder_secret(mongo_env: dict[str, str]) -> None:
    """With a placeholder JWT key the workers fail to boot and gunicorn exits non-zero."""
    env = {**mongo_env, **secret_env(), "API_JWT_KEYS": "k1:changeme", "API_JWT_ACTIVE_KID": "k1",
           "API_BIND": "127.0.0.1:0", "API_WORKERS": "1"}  # fmt: skip
    result = subprocess.run(
        [GUNICORN, "-c", "deploy/gunicorn.conf.py", "api.wsgi:app"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode != 0
    assert "API_JWT_KEYS" in result.stderr


def wait_until_stopped(pid: int, timeout_s: float = 10.0) -> None:
    """Poll /proc until every thread of `pid` is stopped (SIGSTOP is delivered asynchronously)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        states = [
            (task / "stat").read_text().rsplit(")", 1)[1].split()[0]
            for task in Path(f"/proc/{pid}/task").iterdir()
        ]
        if all(state == "T" for state in states):
            return
        time.sleep(0.01)  # polling with a deadline
    raise AssertionError(f"process {pid} did not stop")


def test_a_stalled_database_gives_fast_503s_and_recovers(
    mongo_env: dict[str, str], own_server: localdb.LocalDB
) -> None:
    """With the database frozen (SIGSTOP), /readyz and data routes answer 503 within about a
    second, also under concurrency; after SIGCONT the API is ready again."""
    server_db = own_server
    env = {**mongo_env, "MONGODB_URI": server_db.uri("stall")}
    api = start_api(env, workers=1, API_DB_TIMEOUT_MS="500", API_READY_TIMEOUT_MS="300")
    try:
        token = signup(api)["access_token"]
        assert api.request("GET", "/readyz").status == 200
        server_db.process.send_signal(signal.SIGSTOP)
        wait_until_stopped(server_db.pid)
        started = time.monotonic()
        assert api.request("GET", "/readyz").status == 503
        results = parallel(20, lambda: api.request("GET", "/users/profile", headers=bearer(token)))
        elapsed = time.monotonic() - started
        assert {r.status for r in results} == {503}
        assert results[0].json["error"]["code"] == "service_unavailable"
        assert elapsed < 30.0  # bounded, not piled up until the database returns
        server_db.process.send_signal(signal.SIGCONT)
        wait_until(lambda: api.request("GET", "/readyz").status == 200, what="ready again")
        assert api.request("GET", "/users/profile", headers=bearer(token)).status == 200
    finally:
        server_db.process.send_signal(signal.SIGCONT)
        api.stop()


def test_logins_and_reads_all_succeed_while_bcrypt_queues(mongo_env: dict[str, str]) -> None:
    """With one gevent worker hashing at cost 12 on one thread, profile reads keep answering
    while four logins queue for the hash pool (that the hash leaves the event loop free is
    tested deterministically in test_api_passwords)."""
    api = start_api(mongo_env, workers=1, API_BCRYPT_COST="12", API_HASH_THREADS="1")
    try:
        token = signup(api)["access_token"]
        body = {"email": "ada@example.com", "password": PASSWORD}
        logins_done = threading.Event()
        reads: list[int] = []

        def profile_reads() -> None:
            while not logins_done.is_set():
                reads.append(api.request("GET", "/users/profile", headers=bearer(token)).status)

        reader = threading.Thread(target=profile_reads)
        reader.start()
        results = parallel(4, lambda: api.request("POST", "/users/login", body))
        logins_done.set()
        reader.join(timeout=30)
        assert [r.status for r in results] == [200] * 4
        assert reads and set(reads) == {200}
    finally:
        api.stop()

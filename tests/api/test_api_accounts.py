"""Accounts through the Falcon test client and the real database: sign-up, login, profile."""

from __future__ import annotations

import bcrypt
from apihelpers import PASSWORD, Clock, bearer, signup
from falcon import testing
from pymongo.database import Database

from api.metrics import ApiMetrics
from queue_worker.layout import BACKLOG, JOBS

TOKEN_FIELDS = {"access_token", "refresh_token", "token_type", "expires_in"}


def jobs_of(db: Database, task: str) -> list[dict]:
    """The task's jobs wherever they wait: keyed ones in `jobs`, others in the backlog."""
    return [doc for name in (BACKLOG, JOBS) for doc in db[name].find({"task": task})]


def test_signup_returns_a_bearer_token_pair_that_is_not_cached(client: testing.TestClient) -> None:
    """Sign-up answers 201 with the token fields existing clients use, and no-store."""
    result = client.simulate_post(
        "/users/signup", json={"name": "Ada", "email": "ada@example.com", "password": PASSWORD}
    )
    assert result.status_code == 201
    assert set(result.json) == TOKEN_FIELDS
    assert result.json["token_type"] == "Bearer"
    assert result.json["expires_in"] == 900
    assert result.headers["Cache-Control"] == "no-store"


def test_signup_stores_a_normalised_email_and_a_bcrypt_hash_of_a_peppered_prehash(
    client: testing.TestClient, db: Database
) -> None:
    """The email is trimmed and lower-cased; the password is stored only as bcrypt of a pre-hash."""
    signup(client, email="  Ada@Example.COM ")
    user = db["users"].find_one()
    assert user["email"] == "ada@example.com"
    assert user["password_hash"].startswith("$2b$04$")
    assert PASSWORD not in str(user)
    assert not bcrypt.checkpw(PASSWORD.encode(), user["password_hash"].encode())


def test_signup_enqueues_one_user_created_job(client: testing.TestClient, db: Database) -> None:
    """Sign-up enqueues user.created {user_id, email, name} under a per-user idempotency key."""
    signup(client)
    user = db["users"].find_one()
    [job] = jobs_of(db, "user.created")
    assert job["payload"] == {
        "user_id": str(user["_id"]),
        "email": "ada@example.com",
        "name": "Ada",
    }
    assert job["idempotency_key"] == f"user.created:{user['_id']}"
    assert user["welcome_enqueued"] is True


def test_a_taken_email_is_a_generic_409_whatever_its_case(
    client: testing.TestClient, db: Database
) -> None:
    """Signing up again with the same address (other case, blanks) is 409 and adds no user."""
    signup(client)
    result = client.simulate_post(
        "/users/signup", json={"name": "Eve", "email": " ADA@example.com", "password": PASSWORD}
    )
    assert result.status_code == 409
    assert "ada@example.com" not in result.text
    assert db["users"].count_documents({}) == 1


def test_passwords_over_72_bytes_are_neither_truncated_nor_an_error(
    client: testing.TestClient,
) -> None:
    """Two long passwords that share their first 72 bytes are different passwords."""
    long_password = "\u00e9" * 60 + "tail-one"  # 128 characters max; 120 bytes of UTF-8 prefix
    signup(client, password=long_password)
    ok = client.simulate_post(
        "/users/login", json={"email": "ada@example.com", "password": long_password}
    )
    assert ok.status_code == 200
    other = "\u00e9" * 60 + "tail-two"
    bad = client.simulate_post("/users/login", json={"email": "ada@example.com", "password": other})
    assert bad.status_code == 401


def test_password_policy_rejects_short_long_and_common_passwords(
    client: testing.TestClient,
) -> None:
    """8-128 characters, and nothing from the shipped common-password list."""
    for password in ["short", "x" * 129, "password123", "Qwertyuiop"]:
        result = client.simulate_post(
            "/users/signup", json={"name": "A", "email": "a@example.com", "password": password}
        )
        assert result.status_code == 422, password
        assert result.json["error"]["request_id"]


def test_login_returns_tokens_and_logs_the_login(client: testing.TestClient, db: Database) -> None:
    """Login answers 200 with a token pair; the login ledger writes its security-log line with
    the IP and user agent (here at once: API_LOGIN_LEDGER_FLUSH_MS=0)."""
    signup(client)
    result = client.simulate_post(
        "/users/login",
        json={"email": "ADA@example.com", "password": PASSWORD},
        headers={"User-Agent": "pytest-agent"},
    )
    assert result.status_code == 200
    assert set(result.json) == TOKEN_FIELDS
    assert result.headers["Cache-Control"] == "no-store"
    [event] = db["security_events"].find({"type": "login_succeeded"})
    assert (event["ip"], event["user_agent"]) == ("127.0.0.1", "pytest-agent")
    assert jobs_of(db, "user.login") == []  # no job per login any more


def test_wrong_password_and_unknown_email_give_the_same_401(
    client: testing.TestClient, metrics: ApiMetrics
) -> None:
    """Both failures answer the same status and error body, and both run one bcrypt check."""
    signup(client)

    def count() -> float:
        samples = metrics.bcrypt_seconds.collect()[0].samples
        return next(s.value for s in samples if s.name.endswith("_count"))

    start = count()
    wrong = client.simulate_post(
        "/users/login", json={"email": "ada@example.com", "password": "nope-nope-nope"}
    )
    after_wrong = count()
    unknown = client.simulate_post(
        "/users/login", json={"email": "bob@example.com", "password": "nope-nope-nope"}
    )
    after_unknown = count()
    assert wrong.status_code == unknown.status_code == 401
    assert {**wrong.json["error"], "request_id": ""} == {**unknown.json["error"], "request_id": ""}
    # The unknown email also pays for a bcrypt check (plus one dummy hash, once per process).
    assert after_wrong - start == 1
    assert after_unknown - after_wrong >= 1


def login_as(
    client: testing.TestClient,
    password: str,
    *,
    ip: str = "127.0.0.1",
    email: str = "ada@example.com",
) -> testing.Result:
    return client.simulate_post(
        "/users/login", json={"email": email, "password": password}, remote_addr=ip
    )


def test_failed_logins_from_one_address_back_off_exponentially(
    client: testing.TestClient, clock: Clock
) -> None:
    """After 5 free failures of an account from one address, each next attempt waits 1, 2, 4 s
    after the last failure (429 with that Retry-After, even with the right password); a success
    ends the run, and the next failures are free again. Never a permanent wall."""
    signup(client)
    assert [login_as(client, "wrong-password").status_code for _ in range(5)] == [401] * 5
    for delay_s in (1, 2, 4):
        limited = login_as(client, PASSWORD)
        assert limited.status_code == 429
        assert int(limited.headers["Retry-After"]) == delay_s
        clock.advance(delay_s)
        if delay_s < 4:
            assert login_as(client, "wrong-password").status_code == 401
    assert login_as(client, PASSWORD).status_code == 200
    assert [login_as(client, "wrong-password").status_code for _ in range(5)] == [401] * 5


def test_successful_logins_do_not_use_up_the_failure_budget(client: testing.TestClient) -> None:
    """Eight good logins in a row all succeed under 5 free failures; failures still count."""
    signup(client)
    assert [login_as(client, PASSWORD).status_code for _ in range(8)] == [200] * 8
    statuses = [login_as(client, "wrong-password").status_code for _ in range(6)]
    assert statuses == [401] * 5 + [429]


def test_failed_logins_are_rate_limited_per_ip_across_accounts(client: testing.TestClient) -> None:
    """One address failing against many accounts is limited after 20 failures (429)."""
    statuses = [
        login_as(client, "wrong-password", email=f"u{i}@example.com").status_code for i in range(21)
    ]
    assert statuses == [401] * 20 + [429]


def test_strangers_failures_never_lock_the_user_out_of_a_known_network(
    client: testing.TestClient, clock: Clock
) -> None:
    """Failures from any number of other addresses use up the account's ceiling (12 here, 100 by
    default) and then refuse new networks for the window, but the user's own network, where
    they signed up or logged in before, still logs in with the right password."""
    signup(client)
    strangers = [f"198.51.{n}.7" for n in range(1, 7)]
    statuses = [
        login_as(client, "wrong-password", ip=ip).status_code for ip in strangers for _ in range(3)
    ]
    assert statuses.count(401) == 12 and statuses[12:] == [429] * 6
    assert login_as(client, PASSWORD, ip="203.0.113.9").status_code == 429  # a new network
    assert login_as(client, PASSWORD, ip="127.0.0.1").status_code == 200  # the user's own
    assert login_as(client, PASSWORD, ip="127.0.0.2").status_code == 200  # its /24 too
    clock.advance(60)
    assert login_as(client, PASSWORD, ip="203.0.113.9").status_code == 200  # the run has ended


def test_profile_returns_only_the_allowlisted_fields(client: testing.TestClient) -> None:
    """GET /users/profile returns id, name, email, age, created_at and nothing else."""
    tokens = signup(client)
    result = client.simulate_get("/users/profile", headers=bearer(tokens["access_token"]))
    assert result.status_code == 200
    assert set(result.json) == {"id", "name", "email", "age", "created_at", "email_verified"}
    assert result.json["email"] == "ada@example.com"
    assert result.json["age"] == 36


def test_public_user_has_no_email_hash_or_tokens(client: testing.TestClient, db: Database) -> None:
    """GET /users/{id} shows id, name and created_at only."""
    signup(client)
    user_id = str(db["users"].find_one()["_id"])
    result = client.simulate_get(f"/users/{user_id}")
    assert result.status_code == 200
    assert set(result.json) == {"id", "name", "created_at"}
    assert "$2b$" not in result.text and "example.com" not in result.text


def test_malformed_and_unknown_user_ids_are_404(client: testing.TestClient) -> None:
    """A malformed id and an unknown well-formed id both answer 404 JSON."""
    for user_id in ["nope", "0" * 24, "zz" * 12, "6b059b67580172644f5dbbfa0"]:
        result = client.simulate_get(f"/users/{user_id}")
        assert result.status_code == 404
        assert result.json["error"]["code"] == "not_found"


def test_profile_requires_an_access_token(client: testing.TestClient) -> None:
    """No token, a garbage token, or a refresh token in place of an access token: 401."""
    tokens = signup(client)
    for headers in [
        {},
        bearer("garbage"),
        bearer(tokens["refresh_token"]),
        {"Authorization": "Basic abc"},
    ]:
        result = client.simulate_get("/users/profile", headers=headers)
        assert result.status_code == 401
        assert result.headers["WWW-Authenticate"].startswith("Bearer")

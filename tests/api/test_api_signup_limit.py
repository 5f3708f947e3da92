"""Sign-ups are rate-limited per client IP, in the database, before the bcrypt hash."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import pytest
from apihelpers import PASSWORD, Clock, secret_env
from falcon import testing
from pymongo.database import Database

from api.app import create_app
from api.auth.passwords.hashing import HashPool
from api.metrics import ApiMetrics
from api.settings import ApiSettings
from queue_worker import JobStore
from runtime.env import SettingsError

LIMIT = 3
WINDOW_S = 3600


@pytest.fixture
def limited(
    settings: ApiSettings,
    db: Database[dict[str, Any]],
    job_store: JobStore,
    clock: Clock,
    metrics: ApiMetrics,
) -> Iterator[testing.TestClient]:
    """A client over an app that allows 3 sign-ups per IP per hour."""
    small = dataclasses.replace(settings, signup_max_per_ip=LIMIT, signup_window_s=WINDOW_S)
    pool = HashPool(2, metrics)
    app = create_app(small, db, job_store, clock=clock, metrics=metrics, hash_pool=pool)
    yield testing.TestClient(app)
    pool.close()


def attempt(client: testing.TestClient, email: str, ip: str = "198.51.100.7") -> testing.Result:
    body = {"name": "Ada", "email": email, "password": PASSWORD}
    return client.simulate_post("/users/signup", json=body, remote_addr=ip)


def hashes_done(metrics: ApiMetrics) -> float:
    return metrics.registry.get_sample_value("auth_bcrypt_seconds_count") or 0.0


def test_signups_over_the_limit_are_429_with_retry_after_and_create_no_user(
    limited: testing.TestClient, db: Database, metrics: ApiMetrics
) -> None:
    """The 4th sign-up from one IP within the window is 429 with Retry-After, is counted in
    auth_rate_limited_total{scope="signup_ip"}, hashes nothing and creates no account."""
    assert [attempt(limited, f"u{i}@example.com").status_code for i in range(LIMIT)] == [201] * 3
    hashed = hashes_done(metrics)
    assert hashed >= LIMIT
    refused = attempt(limited, "late@example.com")
    assert refused.status_code == 429, refused.text
    assert refused.json["error"]["code"] == "rate_limited"
    assert 1 <= int(refused.headers["Retry-After"]) <= WINDOW_S
    assert db["users"].count_documents({"email": "late@example.com"}) == 0
    assert db["users"].count_documents({}) == LIMIT
    assert hashes_done(metrics) == hashed
    scope = {"scope": "signup_ip"}
    assert metrics.registry.get_sample_value("auth_rate_limited_total", scope) == 1


def test_taken_emails_count_but_invalid_bodies_do_not(limited: testing.TestClient) -> None:
    """A taken email costs a hash, so it uses up the budget; a 422 (cheap) does not."""
    assert attempt(limited, "ada@example.com").status_code == 201
    assert attempt(limited, "ada@example.com").status_code == 409
    weak = {"name": "Ada", "email": "x@example.com", "password": "password"}
    for _ in range(5):
        result = limited.simulate_post("/users/signup", json=weak, remote_addr="198.51.100.7")
        assert result.status_code == 422
    assert attempt(limited, "bob@example.com").status_code == 201
    assert attempt(limited, "eve@example.com").status_code == 429


def test_the_signup_limit_resets_when_the_window_ends(
    limited: testing.TestClient, clock: Clock
) -> None:
    """A limited IP can sign up again once its window has passed (no permanent lockout)."""
    for i in range(LIMIT):
        assert attempt(limited, f"u{i}@example.com").status_code == 201
    refused = attempt(limited, "late@example.com")
    assert refused.status_code == 429
    clock.advance(int(refused.headers["Retry-After"]))
    assert attempt(limited, "late@example.com").status_code == 201


def test_the_signup_limit_is_per_ip(limited: testing.TestClient) -> None:
    """One IP over its limit does not stop sign-ups from other IPs."""
    for i in range(LIMIT + 1):
        attempt(limited, f"u{i}@example.com", ip="198.51.100.7")
    assert attempt(limited, "other@example.com", ip="203.0.113.5").status_code == 201
    assert attempt(limited, "v6@example.com", ip="2001:db8::1").status_code == 201


def test_the_signup_and_login_limits_do_not_share_counters(limited: testing.TestClient) -> None:
    """Failed logins from an IP do not use up its sign-up budget (separate scopes)."""
    wrong = {"email": "nobody@example.com", "password": "wrong-password"}
    for _ in range(3):
        result = limited.simulate_post("/users/login", json=wrong, remote_addr="198.51.100.7")
        assert result.status_code == 401
    assert attempt(limited, "ada@example.com").status_code == 201


def test_signup_limit_settings_have_defaults_and_bounds() -> None:
    """API_SIGNUP_WINDOW_S defaults to 3600 and API_SIGNUP_MAX_PER_IP to 20; bad values fail."""
    defaults = ApiSettings.from_env(secret_env())
    assert (defaults.signup_window_s, defaults.signup_max_per_ip) == (3600, 20)
    custom = ApiSettings.from_env(
        {**secret_env(), "API_SIGNUP_WINDOW_S": "60", "API_SIGNUP_MAX_PER_IP": "5"}
    )
    assert (custom.signup_window_s, custom.signup_max_per_ip) == (60, 5)
    for name, value in [("API_SIGNUP_WINDOW_S", "0"), ("API_SIGNUP_MAX_PER_IP", "many")]:
        with pytest.raises(SettingsError, match=name):
            ApiSettings.from_env({**secret_env(), name: value})

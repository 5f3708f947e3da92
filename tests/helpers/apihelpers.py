"""Helpers shared by the API tests (imported by name: tests/api is on sys.path)."""

from __future__ import annotations

import base64
import secrets
from collections.abc import Callable
from typing import Any

from clocks import FakeClock
from falcon import testing
from pymongo.database import Database

from queue_worker.layout import IN_MOVE_ORDER

PASSWORD = "correct horse battery staple"


def b64_secret() -> str:
    """Return a fresh random secret in the format the API_* secret variables take."""
    return base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("=")


def secret_env() -> dict[str, str]:
    """Return the secret environment variables a real API process needs (test values)."""
    return {
        "API_JWT_KEYS": f"k2:{b64_secret()},k1:{b64_secret()}",
        "API_JWT_ACTIVE_KID": "k2",
        "API_PASSWORD_PEPPER": b64_secret(),
        "API_ACCOUNT_TOKEN_KEYS": f"t1:{b64_secret()}",
        "API_MFA_KEYS": f"m1:{b64_secret()}",
        "API_BCRYPT_COST": "4",
    }


AppFactory = Callable[..., testing.TestClient]
"""The `make_client` fixture's type (tests/api/conftest.py): the API tests' one app factory."""

Clock = FakeClock
"""The API tests' clock: the shared fake clock, started at the real time (clocks.wall_clock),
because PyJWT checks expiry against the real time too."""


def signup(
    client: testing.TestClient, email: str = "ada@example.com", password: str = PASSWORD
) -> dict[str, Any]:
    """Sign up a user and return the token body."""
    result = client.simulate_post(
        "/users/signup", json={"name": "Ada", "email": email, "password": password, "age": 36}
    )
    assert result.status_code == 201, result.text
    body: dict[str, Any] = result.json
    return body


def bearer(token: str) -> dict[str, str]:
    """Return the Authorization header for a token."""
    return {"Authorization": f"Bearer {token}"}


def submitted_jobs(db: Database) -> int:
    """Count jobs a client submitted through POST /jobs, wherever the queue keeps them."""
    flt = {"submitted_by": {"$exists": True}}
    return sum(db[name].count_documents(flt) for name in IN_MOVE_ORDER)


def enrol_totp(
    client: testing.TestClient, access_token: str, clock: FakeClock
) -> tuple[str, list[str]]:
    """Turn on an authenticator for the token's user (the token's sign-in must be recent);
    return its secret and the recovery codes."""
    from api.auth.tokens.totp import code_at

    started = client.simulate_post("/users/me/mfa/totp", headers=bearer(access_token))
    assert started.status_code == 201, started.text
    secret: str = started.json["secret"]
    confirmed = client.simulate_post(
        "/users/me/mfa/totp/confirm",
        json={"code": code_at(secret, clock.now)},
        headers=bearer(access_token),
    )
    assert confirmed.status_code == 200, confirmed.text
    codes: list[str] = confirmed.json["recovery_codes"]
    return secret, codes


def next_code(secret: str, clock: FakeClock) -> str:
    """The authenticator's code one step (30 s) later: a step not spent yet."""
    from api.auth.tokens.totp import STEP_S, code_at

    clock.advance(STEP_S)
    return code_at(secret, clock.now)

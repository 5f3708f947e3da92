"""The holes a review found in the guessing limits, each closed: attempts are counted before
the secret is checked (a burst cannot outrun the count), a count that cannot be written means no
check at all (fail closed), windows roll (no budget is whole again at UTC midnight), IPv6 clients
are counted by their /64 (and watched by their /48), and the user's own network has a ceiling
too. Test settings: 5 free failures per (account, client), 20 per client network, 12 per
account from strangers."""

from __future__ import annotations

import dataclasses
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from threading import Barrier
from typing import Any

import pytest
from apihelpers import PASSWORD, AppFactory, Clock, signup
from falcon import testing
from pymongo.errors import NetworkTimeout

from api.auth.stores.limits import RateLimits
from api.metrics import ApiMetrics
from api.settings import ApiSettings


def login(client: testing.TestClient, password: str, ip: str = "127.0.0.1",
          email: str = "ada@example.com") -> Any:  # fmt: skip
    body = {"email": email, "password": password}
    return client.simulate_post("/users/login", json=body, remote_addr=ip)


def bcrypt_checks(metrics: ApiMetrics) -> float:
    samples = metrics.bcrypt_seconds.collect()[0].samples
    return next(s.value for s in samples if s.name.endswith("_count"))


def test_a_burst_of_parallel_wrong_passwords_gets_exactly_the_budget_checked(
    client: testing.TestClient, metrics: ApiMetrics
) -> None:
    """50 wrong passwords at once from one client at one account: exactly the 5 free ones
    are checked (401); the other 45 are refused (429) before any hash is computed."""
    signup(client)
    hashed = bcrypt_checks(metrics)
    barrier = Barrier(50)

    def attempt(_: int) -> int:
        barrier.wait()
        return int(login(client, "wrong password", ip="198.51.100.9").status_code)

    with ThreadPoolExecutor(50) as pool:
        statuses = sorted(pool.map(attempt, range(50)))
    assert statuses == [401] * 5 + [429] * 45
    assert bcrypt_checks(metrics) - hashed == 5


@pytest.mark.parametrize("password", ["wrong password", PASSWORD])
def test_an_attempt_that_cannot_be_counted_is_not_checked(
    client: testing.TestClient, metrics: ApiMetrics, monkeypatch: pytest.MonkeyPatch,
    password: str,
) -> None:  # fmt: skip
    """When the count cannot be written (the database timed out), the password is not checked
    at all: 503, right or wrong, so an overloaded API is no unlimited oracle."""
    signup(client)
    hashed = bcrypt_checks(metrics)

    def timed_out(self: RateLimits, *args: Any, **kwargs: Any) -> None:
        raise NetworkTimeout("the count did not answer")

    monkeypatch.setattr(RateLimits, "take", timed_out)
    result = login(client, password)
    assert result.status_code == 503
    assert bcrypt_checks(metrics) == hashed


def test_the_account_ceiling_rolls_and_does_not_reset_at_midnight(
    make_client: AppFactory, clock: Clock
) -> None:
    """The 12 failures strangers may spend on an account in 24 hours: spent at 23:59, they
    are still spent at 00:01 (a fixed daily window would be whole again)."""
    client = make_client()
    clock.now = datetime(2036, 3, 1, 23, 59, 0, tzinfo=UTC)
    signup(client)
    for n in range(12):
        assert login(client, "wrong password", ip=f"198.51.{n}.7").status_code == 401
    assert login(client, "wrong password", ip="198.51.99.7").status_code == 429
    clock.advance(120)  # past midnight UTC
    assert login(client, "wrong password", ip="198.51.100.7").status_code == 429
    clock.advance(86_400)
    assert login(client, "wrong password", ip="198.51.100.7").status_code == 401


def test_rotating_through_an_ipv6_64_gives_no_fresh_budget(client: testing.TestClient) -> None:
    """Spraying many accounts from new addresses of one /64 is counted as one client: after
    its 20 failures the /64 is refused, whichever address and account come next."""
    statuses = [
        login(
            client, "wrong password", ip=f"2001:db8:1:2::{n:x}", email=f"u{n}@example.com"
        ).status_code
        for n in range(1, 24)
    ]
    assert statuses[:20] == [401] * 20 and statuses[20:] == [429] * 3


def test_rotating_through_64s_of_one_48_is_watched_with_a_wider_budget(
    client: testing.TestClient,
) -> None:
    """Each /64 of a /48 has its own budget of 20, but the /48 together has 80: a client with a
    /48 gains four budgets, not 65,536."""
    statuses = [
        login(
            client, "wrong password", ip=f"2001:db8:7:{n:x}::1", email=f"u{n}@example.com"
        ).status_code
        for n in range(1, 86)
    ]
    assert statuses.count(401) == 80 and statuses[80:] == [429] * 5


def test_the_users_own_network_has_a_ceiling_too(
    make_client: AppFactory, settings: ApiSettings
) -> None:
    """Someone inside a network the user logs in from (a shared office /24) is not free to
    guess: their failures have a ceiling of their own (API_LOGIN_MAX_FAILURES_PER_KNOWN_NETWORK),
    separate from the strangers' so that strangers still cannot lock the user out."""
    client = make_client(dataclasses.replace(settings, login_max_failures_per_known_network=15))
    signup(client)  # from 127.0.0.1: its /24 is the user's own network now
    statuses = [login(client, "wrong password", ip=f"127.0.0.{n}").status_code
                for n in range(2, 20)]  # fmt: skip
    assert statuses.count(401) == 15 and statuses[15:] == [429] * 3

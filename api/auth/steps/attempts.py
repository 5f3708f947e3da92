"""Password and second-factor attempts: the limits around every check of a secret (login, the
login's code step, re-authentication, changing the password), so no entry point is a cheaper
way to guess.

    begin      count the attempt BEFORE the check, atomically, against every counter it falls
               under (limits.take, one round trip): the account and client network together
               (exponential backoff), the client network (IPv4 address or IPv6 /64) and its /48,
               and the account (a rolling ceiling: one for networks the user never used, and
               a separate one for the user's own networks, so strangers cannot lock the user
               out, and someone inside a known network still has a ceiling). Over a limit:
               429, and the secret is not checked. If the count cannot be written (the database
               is slow or away), the secret is not checked either: 503 (fail closed)
    failed     nothing more to write: the attempt is counted already
    succeeded  give the attempt back to the network counters and end the account's runs, in
               the login ledger (written a moment later, in bulk: stores/ledger.py)

`check_current_password` puts them together for a signed-in user proving their password again.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from api.auth.context import AuthContext, Client, Principal
from api.auth.networks import client_networks, is_known, network_digest
from api.auth.steps.notices import record_event
from api.auth.stores.limits import Action, Counted, account_key
from api.auth.stores.security_log import EventType
from api.errors import RateLimited, Unauthorized

NETWORK_COUNTERS = (Action.LOGIN_IP, Action.LOGIN_IP_WIDE)
ACCOUNT_COUNTERS = (Action.LOGIN_ACCOUNT, Action.LOGIN_ACCOUNT_KNOWN)


@dataclass(frozen=True)
class Attempt:
    """One check of a secret under way: the counters it was counted against."""

    keys: tuple[Counted, ...]
    now: datetime


def attempt_keys(email: str, ip: str, *, known_network: bool) -> tuple[Counted, ...]:
    """Return the counters one attempt at `email`'s secrets from `ip` counts against."""
    account = account_key(email)
    narrow, wide = client_networks(ip)
    keys: list[Counted] = [(Action.LOGIN_PAIR, f"{account}:{narrow}"), (Action.LOGIN_IP, narrow)]
    if wide is not None:
        keys.append((Action.LOGIN_IP_WIDE, wide))
    keys.append((Action.LOGIN_ACCOUNT_KNOWN if known_network else Action.LOGIN_ACCOUNT, account))
    return tuple(keys)


def begin(ctx: AuthContext, keys: tuple[Counted, ...], *, now: datetime) -> Attempt:
    """Count the attempt; raise RateLimited (counted in the metrics) if a limit refuses it, or
    ServiceUnavailable if it could not be counted. Only then may the secret be checked."""
    with ctx.admission.operation("rate_limits.take"):
        refusal = ctx.limits.take(keys, now=now)
    if refusal is not None:
        ctx.metrics.rate_limited.labels(refusal.scope).inc()
        ctx.metrics.login_failures.labels("rate_limited").inc()
        raise refusal
    return Attempt(keys, now)


def for_login(
    ctx: AuthContext, email: str, user: dict[str, Any] | None, client: Client, now: datetime
) -> Attempt:
    """Count an attempt at `email`'s secrets from `client` (the user's own network or not)."""
    network = network_digest(ctx.settings.password_pepper, client.ip)
    known = user is not None and is_known(user, network, now)
    return begin(ctx, attempt_keys(email, client.ip, known_network=known), now=now)


def failed(ctx: AuthContext, attempt: Attempt, *, reason: str = "bad_credentials") -> None:
    """A wrong secret: it is counted already; only the metrics remain."""
    ctx.metrics.login_failures.labels(reason).inc()


def succeeded(
    ctx: AuthContext, attempt: Attempt, *, events: tuple[dict[str, Any], ...] = ()
) -> None:
    """A good secret: give the attempt back to the network counters and end the account's runs
    of failures, with `events` for the security log, in the login ledger."""
    refunds = [(a, k) for a, k in attempt.keys if a in NETWORK_COUNTERS]
    ends = [(a, k) for a, k in attempt.keys if a not in NETWORK_COUNTERS]
    # The owner got in: the account's runs of failures end, from every kind of network.
    ends += [(other, k) for a, k in attempt.keys if a in ACCOUNT_COUNTERS
             for other in ACCOUNT_COUNTERS if other is not a]  # fmt: skip
    ctx.ledger.settle(refunds=refunds, ends=ends, events=events)


def check_current_password(
    ctx: AuthContext, principal: Principal, password: str, *, client: Client, now: datetime
) -> dict[str, Any]:
    """Check the signed-in user's password under the login limits; return their account
    document (hash, address, token version); raise Unauthorized or RateLimited."""
    with ctx.admission.operation("users.find"):
        user = ctx.users.find_for_password(principal.user_id)
    if user is None:
        raise Unauthorized("The token has been revoked.", code="token_revoked")
    attempt = for_login(ctx, user["email"], user, client, now)
    if not ctx.hasher.verify(password, user["password_hash"]):
        failed(ctx, attempt)
        record_event(ctx, principal.user_id, EventType.LOGIN_FAILED, now=now, client=client)
        raise Unauthorized("The password is not correct.", code="invalid_credentials")
    succeeded(ctx, attempt)
    return user


__all__ = [
    "Attempt",
    "RateLimited",
    "attempt_keys",
    "begin",
    "check_current_password",
    "failed",
    "for_login",
    "succeeded",
]

"""Password attempts: the limits around every check of a password (login, re-authentication,
changing the password), so no entry point is a cheaper way to guess.

    begin    read the counters (one round trip); refuse what the limits refuse for this client:
             its own failures against the account back off exponentially, its failures against
             any account are capped per window, and the account's consecutive failures from
             anywhere are capped too, except from a network the user has logged in from (so
             strangers cannot lock a user out); once the client has failures against the
             account, reserve its turn atomically
    failed   count the failure against all three
    succeeded  end this client's and this account's runs (the address's window count stays: it
             spans accounts); a clean record writes nothing

`check_current_password` puts them together for a signed-in user proving their password again
(re-authentication, changing the password): a wrong one is a failed login in every respect.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from api.auth.context import AuthContext, Client, Principal
from api.auth.networks import is_known, network_digest
from api.auth.steps.notices import record_event
from api.auth.stores.limits import Action, Counter, account_key
from api.auth.stores.security_log import EventType
from api.errors import RateLimited, ServiceUnavailable, Unauthorized


@dataclass(frozen=True)
class Attempt:
    """One password check under way: its counter keys, what they said, and its reservation."""

    keys: tuple[tuple[Action, str], ...]
    counters: dict[Action, Counter]
    reserved: bool
    now: datetime


def attempt_keys(email: str, ip: str) -> tuple[tuple[Action, str], ...]:
    """Return the counters one attempt at `email`'s password from `ip` counts against."""
    account = account_key(email)
    return (
        (Action.LOGIN_PAIR, f"{account}:{ip}"),
        (Action.LOGIN_IP, ip),
        (Action.LOGIN_ACCOUNT, account),
    )


def read_counters(
    ctx: AuthContext, email: str, ip: str, *, now: datetime
) -> tuple[tuple[tuple[Action, str], ...], dict[Action, Counter]]:
    """Read the attempt counters of (email, ip) in one round trip."""
    keys = attempt_keys(email, ip)
    with ctx.admission.operation("rate_limits.read"):
        return keys, ctx.limits.read(keys, now=now)


def begin(
    ctx: AuthContext,
    keys: tuple[tuple[Action, str], ...],
    counters: dict[Action, Counter],
    *,
    known_network: bool,
    now: datetime,
) -> Attempt:
    """Let an attempt go ahead, or raise RateLimited (counted in the metrics)."""
    refusal: RateLimited | None = None
    for action, _ in keys:
        if action is Action.LOGIN_ACCOUNT and known_network:
            continue  # the user's own network is not blocked by strangers' failures
        refusal = refusal or ctx.limits.over(action, counters[action], now=now)
    try:
        if refusal is not None:
            raise refusal
        pair_key = dict(keys)[Action.LOGIN_PAIR]
        with ctx.admission.operation("rate_limits.reserve"):
            reserved = ctx.limits.reserve(
                Action.LOGIN_PAIR, pair_key, counters[Action.LOGIN_PAIR], now=now
            )
    except RateLimited as exc:
        ctx.metrics.rate_limited.labels(exc.scope).inc()
        ctx.metrics.login_failures.labels("rate_limited").inc()
        raise
    return Attempt(keys, counters, reserved, now)


def failed(ctx: AuthContext, attempt: Attempt) -> None:
    """Count a wrong password against the attempt's counters (the reserved one is counted)."""
    unrecorded = [
        (a, k) for a, k in attempt.keys if not (attempt.reserved and a is Action.LOGIN_PAIR)
    ]
    with ctx.admission.operation("rate_limits.record"):
        ctx.limits.record_failure(unrecorded, now=attempt.now)
    ctx.metrics.login_failures.labels("bad_credentials").inc()


def succeeded(ctx: AuthContext, attempt: Attempt) -> None:
    """End the client's and the account's runs of failures; nothing is written without one."""
    runs = [
        (a, k)
        for a, k in attempt.keys
        if a is not Action.LOGIN_IP
        and (attempt.counters[a].count or (attempt.reserved and a is Action.LOGIN_PAIR))
    ]
    if not runs:
        return
    try:
        with ctx.admission.operation("rate_limits.reset"):
            ctx.limits.reset(runs, now=attempt.now)
    except ServiceUnavailable:
        pass  # Failing a good login over bookkeeping would be worse than a stale counter.


def check_current_password(
    ctx: AuthContext, principal: Principal, password: str, *, client: Client, now: datetime
) -> dict[str, Any]:
    """Check the signed-in user's password under the login limits; return their account
    document (hash, address, token version); raise Unauthorized or RateLimited."""
    with ctx.admission.operation("users.find"):
        user = ctx.users.find_for_password(principal.user_id)
    if user is None:
        raise Unauthorized("The token has been revoked.", code="token_revoked")
    keys, counters = read_counters(ctx, user["email"], client.ip, now=now)
    known = is_known(user, network_digest(ctx.settings.password_pepper, client.ip), now)
    attempt = begin(ctx, keys, counters, known_network=known, now=now)
    if not ctx.hasher.verify(password, user["password_hash"]):
        failed(ctx, attempt)
        record_event(ctx, principal.user_id, EventType.LOGIN_FAILED, now=now, client=client)
        raise Unauthorized("The password is not correct.", code="invalid_credentials")
    succeeded(ctx, attempt)
    return user

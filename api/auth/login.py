"""Login: check email and password, start a session, without handing strangers a lockout button.

read the attempt counters (one round trip) and the account → refuse what the limits refuse, for
this client: its own failures against this account back off exponentially; its failures against
any account are capped per window; an account's consecutive failures from anywhere are capped
too, but a network the user has logged in from before is let through, so strangers cannot lock a
user out → check the password (the same work and the same answer for an unknown email and a
wrong password) → a failure is counted against all three, a success resets the account's runs
→ remember the network → enqueue a missing welcome mail → start a session → enqueue the login
audit.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from api.auth.addresses import lookup_key
from api.auth.context import AuthContext, TokenPair
from api.auth.issue import start_session
from api.auth.limits import Action, Counter, account_key
from api.auth.networks import REFRESH_AFTER, is_known, last_seen, network_digest
from api.errors import RateLimited, ServiceUnavailable, Unauthorized
from api.schemas import LoginRequest

Keys = tuple[tuple[Action, str], ...]


def login(ctx: AuthContext, body: LoginRequest, *, ip: str, user_agent: str) -> TokenPair:
    """Check the credentials and return a new session's token pair; raise Unauthorized."""
    email = lookup_key(body.email)
    now = ctx.clock()
    account = account_key(email)
    keys: Keys = (
        (Action.LOGIN_PAIR, f"{account}:{ip}"),
        (Action.LOGIN_IP, ip),
        (Action.LOGIN_ACCOUNT, account),
    )
    with ctx.admission.operation("rate_limits.read"):
        counters = ctx.limits.read(keys, now=now)
    with ctx.admission.operation("users.find"):
        user = ctx.users.find_for_login(email)
    network = network_digest(ctx.settings.password_pepper, ip)
    known = user is not None and is_known(user, network, now)
    reserved = _take_turn(ctx, keys, counters, known_network=known, now=now)
    stored_hash = user["password_hash"] if user is not None else None
    if not ctx.hasher.verify(body.password, stored_hash) or user is None:
        unrecorded = [(a, k) for a, k in keys if not (reserved and a is Action.LOGIN_PAIR)]
        with ctx.admission.operation("rate_limits.record"):
            ctx.limits.record_failure(unrecorded, now=now)
        ctx.metrics.login_failures.labels("bad_credentials").inc()
        # One body for unknown email and wrong password: nothing tells them apart.
        raise Unauthorized("Invalid email or password.", code="invalid_credentials")
    _forget_failures(ctx, keys, counters, now, reserved=reserved)
    _remember_network(ctx, user, network, now)
    if not user.get("welcome_enqueued", True):
        ctx.events.welcome(user["_id"], email, str(user.get("name", "")))
    pair, sid = start_session(ctx, user, now=now, ip=ip, user_agent=user_agent)
    ctx.events.login(user["_id"], sid, ip=ip, user_agent=user_agent, at=now)
    return pair


def _take_turn(
    ctx: AuthContext,
    keys: Keys,
    counters: dict[Action, Counter],
    *,
    known_network: bool,
    now: datetime,
) -> bool:
    """Raise RateLimited if this attempt may not go ahead now (counted in the metrics); once
    this client has failures against the account, reserve its turn atomically. Return whether a
    turn was reserved."""
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
            return ctx.limits.reserve(
                Action.LOGIN_PAIR, pair_key, counters[Action.LOGIN_PAIR], now=now
            )
    except RateLimited as exc:
        ctx.metrics.rate_limited.labels(exc.scope).inc()
        ctx.metrics.login_failures.labels("rate_limited").inc()
        raise


def _forget_failures(
    ctx: AuthContext, keys: Keys, counters: dict[Action, Counter], now: datetime, *, reserved: bool
) -> None:
    """A success ends this client's and this account's run of failures (the address's window
    count stays: it spans accounts). Nothing is written when there was no run."""
    runs = [
        (a, k)
        for a, k in keys
        if a is not Action.LOGIN_IP and (counters[a].count or (reserved and a is Action.LOGIN_PAIR))
    ]
    if not runs:
        return
    try:
        with ctx.admission.operation("rate_limits.reset"):
            ctx.limits.reset(runs, now=now)
    except ServiceUnavailable:
        pass  # Failing a good login over bookkeeping would be worse than a stale counter.


def _remember_network(ctx: AuthContext, user: dict[str, Any], network: str, now: datetime) -> None:
    seen = last_seen(user, network)
    if seen is not None and now - seen < REFRESH_AFTER:
        return  # known and seen recently: no write
    try:
        with ctx.admission.operation("users.remember_network"):
            ctx.users.remember_network(user["_id"], network, now=now)
    except ServiceUnavailable:
        pass

"""Login: check email and password, start a session, and tell the user about a new device.

read the attempt counters and the account → let the attempt go ahead or refuse it (attempts.py:
exponential delays per client, caps per address and per account, never a lockout of the user's
own network) → check the password (the same work and the same answer for an unknown email and a
wrong password; a wrong one is a failed-login event in the user's security log) → end the runs
of failures → a network not seen in 90 days, after the first login, is a new-device event,
mailed at most once an hour → remember the network → enqueue a missing welcome mail → start a
session → enqueue the login audit (which records the successful login in the security log).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from api.auth.addresses import lookup_key
from api.auth.context import AuthContext, Client, TokenPair
from api.auth.networks import REFRESH_AFTER, is_known, last_seen, network_digest
from api.auth.steps import attempts
from api.auth.steps.issue import start_session
from api.auth.steps.notices import record_event
from api.auth.stores.limits import Action
from api.auth.stores.security_log import EventType
from api.errors import RateLimited, ServiceUnavailable, Unauthorized
from api.schemas import LoginRequest


def login(ctx: AuthContext, body: LoginRequest, *, client: Client) -> TokenPair:
    """Check the credentials and return a new session's token pair; raise Unauthorized."""
    email = lookup_key(body.email)
    now = ctx.clock()
    keys, counters = attempts.read_counters(ctx, email, client.ip, now=now)
    with ctx.admission.operation("users.find"):
        user = ctx.users.find_for_login(email)
    network = network_digest(ctx.settings.password_pepper, client.ip)
    known = user is not None and is_known(user, network, now)
    attempt = attempts.begin(ctx, keys, counters, known_network=known, now=now)
    stored_hash = user["password_hash"] if user is not None else None
    if not ctx.hasher.verify(body.password, stored_hash) or user is None:
        attempts.failed(ctx, attempt)
        if user is not None:
            record_event(ctx, user["_id"], EventType.LOGIN_FAILED, now=now, client=client)
        # One body for unknown email and wrong password: nothing tells them apart.
        raise Unauthorized("Invalid email or password.", code="invalid_credentials")
    attempts.succeeded(ctx, attempt)
    if not user.get("first_login_done"):
        _first_login(ctx, user)  # a new account has no usual network yet: no alert
    elif not known:
        _new_network(ctx, user, client, now)
    _remember_network(ctx, user, network, now)
    if not user.get("welcome_enqueued", True):
        ctx.events.welcome(user["_id"], email, str(user.get("name", "")))
    pair, sid = start_session(ctx, user, now=now, ip=client.ip, user_agent=client.user_agent)
    ctx.events.login(user["_id"], sid, ip=client.ip, user_agent=client.user_agent, at=now)
    return pair


def _first_login(ctx: AuthContext, user: dict[str, Any]) -> None:
    try:
        with ctx.admission.operation("users.mark_first_login"):
            ctx.users.mark_first_login(user["_id"])
    except ServiceUnavailable:
        pass


def _new_network(ctx: AuthContext, user: dict[str, Any], client: Client, now: datetime) -> None:
    """A login from a network not seen in 90 days: a security event, mailed at most once an
    hour."""
    try:
        with ctx.admission.operation("rate_limits.consume"):
            ctx.limits.consume(Action.NEW_DEVICE_MAIL, str(user["_id"]), now=now)
        mail = True
    except (RateLimited, ServiceUnavailable):
        mail = False  # logged, not mailed: one such mail an hour is enough
    record_event(ctx, user["_id"], EventType.NEW_DEVICE_LOGIN, now=now, client=client, mail=mail)


def _remember_network(ctx: AuthContext, user: dict[str, Any], network: str, now: datetime) -> None:
    seen = last_seen(user, network)
    if seen is not None and now - seen < REFRESH_AFTER:
        return  # known and seen recently: no write
    try:
        with ctx.admission.operation("users.remember_network"):
            ctx.users.remember_network(user["_id"], network, now=now)
    except ServiceUnavailable:
        pass

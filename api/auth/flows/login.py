"""Login: check email and password, then either start a session or, for an account with a second
factor, open the code step (flows/mfa.py finishes it).

read the account → count the attempt against its limits BEFORE the check, in one atomic round
trip (steps/attempts.py: a burst cannot outrun it; if it cannot be counted, 503 and no check) →
check the password (the same work and the same answer for an unknown email and a wrong password;
a wrong one is a failed-login event in the user's security log) → an enrolled account: a
challenge, no tokens → otherwise: a network not seen in 90 days, after the first login, is a
new-device event, mailed at most once an hour → remember the network → enqueue a missing welcome
mail → start a session → the login ledger gives the attempt back and logs the login, a moment
later and in bulk (stores/ledger.py). A password-only login with nothing to remember costs three
database commands: the read, the count, the session.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from api.auth.addresses import lookup_key
from api.auth.context import AuthContext, Client, TokenPair
from api.auth.networks import REFRESH_AFTER, is_known, last_seen, network_digest
from api.auth.steps import attempts
from api.auth.steps.attempts import Attempt
from api.auth.steps.issue import start_session
from api.auth.steps.notices import record_event
from api.auth.stores.limits import Action
from api.auth.stores.mfa import mfa_of
from api.auth.stores.security_log import EventType, event_doc
from api.errors import RateLimited, ServiceUnavailable, Unauthorized
from api.schemas import LoginRequest


@dataclass(frozen=True)
class MfaChallenge:
    """The password was right; the account has a second factor: send its code with this."""

    mfa_token: str
    expires_in: int


def login(ctx: AuthContext, body: LoginRequest, *, client: Client) -> TokenPair | MfaChallenge:
    """Check the credentials; return a new session's token pair, or the challenge of the code
    step for an account with a second factor; raise Unauthorized."""
    email = lookup_key(body.email)
    now = ctx.clock()
    with ctx.admission.operation("users.find"):
        user = ctx.users.find_for_login(email)
    attempt = attempts.for_login(ctx, email, user, client, now)
    stored_hash = user["password_hash"] if user is not None else None
    if not ctx.hasher.verify(body.password, stored_hash) or user is None:
        attempts.failed(ctx, attempt)
        if user is not None:
            record_event(ctx, user["_id"], EventType.LOGIN_FAILED, now=now, client=client)
        # One body for unknown email and wrong password: nothing tells them apart.
        raise Unauthorized("Invalid email or password.", code="invalid_credentials")
    if mfa_of(user).get("enabled"):
        # The attempt stays counted until the code step succeeds too.
        with ctx.admission.operation("mfa.open_challenge"):
            token = ctx.mfa.open_challenge(user["_id"], now=now)
        return MfaChallenge(token, ctx.mfa_challenge_ttl_s)
    pair, _ = finish(ctx, user, attempt, client=client, now=now, amr=("pwd",))
    return pair


def finish(
    ctx: AuthContext,
    user: dict[str, Any],
    attempt: Attempt,
    *,
    client: Client,
    now: datetime,
    amr: tuple[str, ...],
) -> tuple[TokenPair, str]:
    """Every step of a successful login after its last secret was checked: start the session
    and owe its bookkeeping to the ledger. Return the pair and the session id."""
    network = network_digest(ctx.settings.password_pepper, client.ip)
    known = is_known(user, network, now)
    if not user.get("first_login_done"):
        _first_login(ctx, user)  # a new account has no usual network yet: no alert
    elif not known:
        _new_network(ctx, user, client, now)
    _remember_network(ctx, user, network, now)
    if not user.get("welcome_enqueued", True):
        ctx.events.welcome(user["_id"], user["email"], str(user.get("name", "")))
    pair, sid = start_session(
        ctx, user, now=now, ip=client.ip, user_agent=client.user_agent, amr=amr
    )
    logged = event_doc(
        user["_id"], EventType.LOGIN_SUCCEEDED, at=now, ip=client.ip, user_agent=client.user_agent
    )
    attempts.succeeded(ctx, attempt, events=(logged,))
    ctx.ledger.owe_eviction(user["_id"])
    return pair, sid


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

"""Login: check email and password, start a session.

count the attempt against the account and the client address (before bcrypt, atomically, so
concurrent guesses cannot pass a check made before any of them was counted) → check the password
(the same work and the same answer for an unknown email and a wrong password) → give the attempt
back (only failures use up the budget) → enqueue a missing welcome mail → start a session →
enqueue the login audit.
"""

from __future__ import annotations

from api.auth.context import AuthContext, TokenPair
from api.auth.issue import start_session
from api.auth.limits import Action, account_key
from api.auth.user_store import normalize_email
from api.errors import RateLimited, ServiceUnavailable, Unauthorized
from api.schemas import LoginRequest


def login(ctx: AuthContext, body: LoginRequest, *, ip: str, user_agent: str) -> TokenPair:
    """Check the credentials and return a new session's token pair; raise Unauthorized."""
    email = normalize_email(body.email) or body.email.strip().lower()
    now = ctx.clock()
    attempts = ((Action.LOGIN_ACCOUNT, account_key(email)), (Action.LOGIN_IP, ip))
    try:
        with ctx.admission.operation("rate_limits.consume"):
            ctx.limits.consume_all(attempts, now=now)
    except RateLimited as exc:
        ctx.metrics.rate_limited.labels(exc.scope).inc()
        ctx.metrics.login_failures.labels("rate_limited").inc()
        raise
    with ctx.admission.operation("users.find"):
        user = ctx.users.find_for_login(email)
    stored_hash = user["password_hash"] if user is not None else None
    if not ctx.hasher.verify(body.password, stored_hash) or user is None:
        ctx.metrics.login_failures.labels("bad_credentials").inc()
        # One body for unknown email and wrong password: nothing tells them apart.
        raise Unauthorized("Invalid email or password.", code="invalid_credentials")
    try:
        with ctx.admission.operation("rate_limits.give_back"):
            for action, key in attempts:
                ctx.limits.give_back(action, key, now=now)
    except ServiceUnavailable:
        pass  # One extra counted attempt is harmless; failing a good login is not.
    if not user.get("welcome_enqueued", True):
        ctx.events.welcome(user["_id"], email, str(user.get("name", "")))
    version = int(user.get("token_version", 0))
    pair, sid = start_session(ctx, user["_id"], version=version, now=now)
    ctx.events.login(user["_id"], sid, ip=ip, user_agent=user_agent, at=now)
    return pair

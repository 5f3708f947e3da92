"""Sign-up: create an account and start its first session.

validate (the address's normal form, addresses.py; name; password policy) → count against the
client address (before the hash: only attempts that cost bcrypt use up the budget, a taken
email included) → hash → insert (the unique index decides races) → enqueue the welcome mail →
start a session.
"""

from __future__ import annotations

from api.auth.addresses import InvalidAddress, normalize_email
from api.auth.context import AuthContext, TokenPair
from api.auth.networks import network_digest
from api.auth.passwords.policy import check_policy
from api.auth.steps.issue import start_session
from api.auth.stores.limits import Action
from api.errors import RateLimited, ValidationFailed
from api.schemas import SignupRequest


def signup(ctx: AuthContext, body: SignupRequest, *, ip: str, user_agent: str = "") -> TokenPair:
    """Create an account and return its first token pair (rate-limited per client address)."""
    try:
        email = normalize_email(body.email)
    except InvalidAddress as exc:
        raise ValidationFailed(str(exc), code="invalid_email") from None
    name = body.name.strip()
    if not name:
        raise ValidationFailed("The name must not be blank.", code="invalid_name")
    check_policy(body.password, email=email)
    now = ctx.clock()
    try:
        with ctx.admission.operation("rate_limits.consume"):
            ctx.limits.consume(Action.SIGNUP, ip, now=now)
    except RateLimited as exc:
        ctx.metrics.rate_limited.labels(exc.scope).inc()
        raise
    password_hash = ctx.hasher.hash(body.password)
    with ctx.admission.operation("users.insert"):
        user_id = ctx.users.create(
            name=name,
            email=email,
            age=body.age,
            password_hash=password_hash,
            network=network_digest(ctx.settings.password_pepper, ip),
            now=now,
        )
    ctx.events.welcome(user_id, email, name)
    new_user = {"_id": user_id, "token_version": 0, "email_verified": False}
    pair, _ = start_session(ctx, new_user, now=now, ip=ip, user_agent=user_agent)
    return pair

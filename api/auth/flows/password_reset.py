"""Forgotten passwords: a mailed link that resets the password once, within 30 minutes.

forgot  POST /users/forgot-password {email} → always 202 with the same body and headers,
        and the same work, for known, unknown and unverified addresses: the API enqueues a
        `user.password_reset` job for the address whatever it is, and the job (in a
        consumer, out of the request's timing) looks the account up, mints the token and
        mails the link. More than FORGOT_PER_ADDRESS requests per hour for one address send
        nothing more (still 202); more than FORGOT_PER_CLIENT per minute from one client
        address are refused (429).
reset   POST /users/reset-password {token, password} → 204: the policy is checked first (a
        refused password does not burn the link), then the token is redeemed (once), the
        password set, every session and every access token issued before ended, the
        address marked verified (the link proved it), a "your password was reset" mail
        sent. No automatic login: the user logs in with the new password (and, once
        enrolled, their second factor: a reset never bypasses it).
"""

from __future__ import annotations

from uuid import uuid4

from api.auth.addresses import lookup_key
from api.auth.context import AuthContext, Client
from api.auth.flows.verification import INVALID_TOKEN
from api.auth.passwords.policy import check_policy
from api.auth.steps.notices import record_event
from api.auth.steps.revocation import reset_password_and_end_sessions
from api.auth.stores.account_tokens import Purpose
from api.auth.stores.limits import Action, account_key
from api.auth.stores.security_log import EventType
from api.errors import BadRequest, RateLimited


def forgot_password(ctx: AuthContext, email: str, *, client: Client) -> None:
    """Start a reset for whatever account the address may have (see the module docstring)."""
    now = ctx.clock()
    try:
        with ctx.admission.operation("rate_limits.consume"):
            ctx.limits.consume(Action.FORGOT_CLIENT, client.ip, now=now)
    except RateLimited as exc:
        ctx.metrics.rate_limited.labels(exc.scope).inc()
        raise
    address = lookup_key(email)
    try:
        with ctx.admission.operation("rate_limits.consume"):
            ctx.limits.consume(Action.FORGOT_ADDRESS, account_key(address), now=now)
    except RateLimited:
        ctx.metrics.account_flows.labels("forgot_password", "suppressed").inc()
        return  # Enough links went to this address this hour: send nothing, say nothing.
    ctx.events.password_reset(address, request_id=uuid4().hex)
    ctx.metrics.account_flows.labels("forgot_password", "ok").inc()


def reset_password(ctx: AuthContext, token: str, password: str, *, client: Client) -> None:
    """Set a new password with a reset token; BadRequest if the token is not live."""
    now = ctx.clock()
    with ctx.admission.operation("account_tokens.peek"):
        pending = ctx.tokens.peek(Purpose.RESET_PASSWORD, token, now=now)
    if pending is None:
        ctx.metrics.account_flows.labels("reset_password", "invalid_token").inc()
        raise BadRequest(INVALID_TOKEN, code="invalid_token")
    with ctx.admission.operation("users.find"):
        email = ctx.users.email_of(pending.user_id)
    check_policy(password, email=email)  # before the token is spent on a refused password
    with ctx.admission.operation("account_tokens.redeem"):
        redeemed = ctx.tokens.redeem(Purpose.RESET_PASSWORD, token, now=now)
    if redeemed is None:  # a parallel reset spent it first
        ctx.metrics.account_flows.labels("reset_password", "invalid_token").inc()
        raise BadRequest(INVALID_TOKEN, code="invalid_token")
    password_hash = ctx.hasher.hash(password)
    reset_password_and_end_sessions(ctx, redeemed.user_id, password_hash, now=now)
    ctx.metrics.account_flows.labels("reset_password", "ok").inc()
    record_event(ctx, redeemed.user_id, EventType.PASSWORD_RESET, now=now, client=client)

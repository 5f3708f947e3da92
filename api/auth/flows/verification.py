"""Email verification: prove that the address of an account is its owner's.

Sign-up's welcome mail carries the first link (the `user.created` job mints its token). Then:

    resend   POST /users/me/verify-email (access token) → always 202: nothing to do when the
             address is verified already, and at most one mail per cooldown (a Window of one per
             VERIFY_COOLDOWN_S); the `user.verify_email` job mints a fresh token, which replaces
             the previous one
    confirm  POST /users/verify-email {token} → 204: redeem the token (once; 24 h), and mark the
             address verified if it is still the address the token was sent to; the profile and
             new access tokens then say email_verified: true
"""

from __future__ import annotations

from api.auth.context import AuthContext, Client, Principal
from api.auth.steps.notices import record_event
from api.auth.stores.account_tokens import Purpose
from api.auth.stores.limits import Action
from api.auth.stores.security_log import EventType
from api.errors import BadRequest, RateLimited

INVALID_TOKEN = "This link is invalid or has expired; ask for a new one."


def request_verification(ctx: AuthContext, principal: Principal) -> None:
    """Send a fresh verification link, unless verified already or asked too recently."""
    if principal.user.get("email_verified"):
        return
    now = ctx.clock()
    try:
        with ctx.admission.operation("rate_limits.consume"):
            ctx.limits.consume(Action.VERIFY_RESEND, str(principal.user_id), now=now)
            ctx.limits.consume(Action.VERIFY_DAILY, str(principal.user_id), now=now)
    except RateLimited:
        # Asked moments ago, or too often today (API_VERIFY_MAX_PER_DAY in any 24 hours): the
        # answer stays 202, nothing more is sent.
        return
    window = str(int(now.timestamp()) // ctx.limits.window_s(Action.VERIFY_RESEND))
    ctx.events.verification(principal.user_id, window=window)


def confirm_email(ctx: AuthContext, token: str, *, client: Client) -> None:
    """Redeem a verification token and mark its address verified; BadRequest if it is not a
    live token for the account's current address."""
    now = ctx.clock()
    with ctx.admission.operation("account_tokens.redeem"):
        redeemed = ctx.tokens.redeem(Purpose.VERIFY_EMAIL, token, now=now)
    if redeemed is None or redeemed.email is None:
        ctx.metrics.account_flows.labels("verify_email", "invalid_token").inc()
        raise BadRequest(INVALID_TOKEN, code="invalid_token")
    with ctx.admission.operation("users.mark_verified"):
        marked = ctx.users.mark_verified(redeemed.user_id, email=redeemed.email)
    if not marked:  # the account's address changed since the link was sent
        ctx.metrics.account_flows.labels("verify_email", "invalid_token").inc()
        raise BadRequest(INVALID_TOKEN, code="invalid_token")
    ctx.metrics.account_flows.labels("verify_email", "ok").inc()
    record_event(ctx, redeemed.user_id, EventType.EMAIL_VERIFIED, now=now, client=client)

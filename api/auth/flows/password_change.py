"""Changing the password, knowing the current one (OWASP ASVS 6.2.2, 6.2.3).

POST /users/me/password {current_password, new_password, keep_other_sessions?} with an access
token: the current password is checked under the same limits as a login (a wrong one is a 401
and counts as a failed login) → the new one must differ and meet the policy → it is set, and
unless `keep_other_sessions` every session and access token ends, in one transaction → the
caller gets a fresh token pair (a new session; with `keep_other_sessions`, its own session
rotated) → the user is told by mail.

The new hash is written only if the hash that was checked is still the account's (a
compare-and-set): of two changes at once, one wins and the other is a 401, because the
password it presented is no longer the current one.
"""

from __future__ import annotations

from api.auth.context import AuthContext, Client, Principal, TokenPair
from api.auth.flows.session_control import rotate_current
from api.auth.passwords.policy import check_policy
from api.auth.steps import attempts
from api.auth.steps.issue import start_session
from api.auth.steps.notices import record_event
from api.auth.steps.revocation import PasswordRaced, end_all_sessions
from api.auth.stores.security_log import EventType
from api.errors import Unauthorized, ValidationFailed


def change_password(
    ctx: AuthContext,
    principal: Principal,
    current: str,
    new: str,
    *,
    keep_other_sessions: bool,
    client: Client,
) -> TokenPair:
    """Replace the password; return the caller's fresh token pair."""
    now = ctx.clock()
    user = attempts.check_current_password(ctx, principal, current, client=client, now=now)
    if new == current:
        raise ValidationFailed(
            "The new password must differ from the current one.", code="password_unchanged"
        )
    check_policy(new, email=user["email"])
    password_hash, checked = ctx.hasher.hash(new), user["password_hash"]
    if keep_other_sessions:
        with ctx.admission.operation("users.set_password"):
            if not ctx.users.set_password(principal.user_id, password_hash, expected_hash=checked):
                raise _raced()
        pair = rotate_current(ctx, principal, user, now=now)
    else:
        try:
            end_all_sessions(
                ctx,
                principal.user_id,
                reason="password_changed",
                now=now,
                password_hash=password_hash,
                expected_hash=checked,
            )
        except PasswordRaced:
            raise _raced() from None
        renewed = {**user, "token_version": int(user.get("token_version", 0)) + 1}
        pair, _ = start_session(ctx, renewed, now=now, ip=client.ip, user_agent=client.user_agent)
    ctx.metrics.account_flows.labels("change_password", "ok").inc()
    record_event(ctx, principal.user_id, EventType.PASSWORD_CHANGED, now=now, client=client)
    return pair


def _raced() -> Unauthorized:
    return Unauthorized(
        "The password was changed meanwhile; the current password is not correct.",
        code="invalid_credentials",
    )

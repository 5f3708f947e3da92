"""The second factor (TOTP, RFC 6238): enrolment, the login's code step, turning it off, new
recovery codes. Each step is one short function that reads like its rule.

    enrol        POST /users/me/mfa/totp: needs a sign-in or re-authentication within
                 RECENT_AUTH_S; a new secret, sealed, kept pending; the answer is its otpauth URI,
                 the secret as text (for typing) and a QR code as SVG
    confirm      POST /users/me/mfa/totp/confirm {code}: a code of the pending secret turns the
                 factor on (that code spent) and answers 10 recovery codes, once; mailed
    code step    POST /users/login/mfa {mfa_token, code | recovery_code}: the challenge a right
                 password opened (login.py); the attempt is counted under the login limits
                 before the code is checked; a TOTP step is accepted once (one conditional
                 write), a recovery code once (ditto); then the challenge is used up (a delete:
                 one winner) and the session starts with amr ["pwd","otp"] or ["pwd","rec"]
    disable      POST /users/me/mfa/disable {code | recovery_code}: a second-factor step now,
                 then off; mailed
    regenerate   POST /users/me/mfa/recovery-codes {code | recovery_code}: likewise; the old
                 codes stop working; mailed

A password reset never touches the factor (and never signs in): the next login still asks for it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from bson import ObjectId

from api.auth.context import AuthContext, Client, Principal, TokenPair
from api.auth.flows.login import finish
from api.auth.flows.session_control import require_recent_auth
from api.auth.steps import attempts
from api.auth.steps.notices import record_event
from api.auth.stores.mfa import mfa_of
from api.auth.stores.security_log import EventType
from api.auth.tokens import totp
from api.auth.tokens.totp import SealedSecretError
from api.errors import BadRequest, Conflict, Unauthorized
from api.schemas import MfaCodeRequest, MfaEnrolment, MfaLoginRequest, MfaStatus, RecoveryCodes

WRONG_CODE = "The code is not right, or it was used already. Try the next one."


def status(ctx: AuthContext, principal: Principal) -> MfaStatus:
    """Whether the caller's factor is on, and how many recovery codes are unused."""
    with ctx.admission.operation("mfa.get"):
        mfa = mfa_of(ctx.mfa.get(principal.user_id) or {})
    left = sum(1 for code in mfa.get("recovery", ()) if code.get("used_at") is None)
    return MfaStatus(enabled=bool(mfa.get("enabled")), recovery_codes_left=left)


def enrol(ctx: AuthContext, principal: Principal, *, client: Client) -> MfaEnrolment:
    """Start an enrolment: a pending secret, shown as an otpauth URI, text and a QR code."""
    require_recent_auth(ctx, principal)
    now = ctx.clock()
    secret = totp.new_secret()
    sealed = ctx.totp_keys.seal(secret, principal.user_id)
    with ctx.admission.operation("mfa.start_enrolment"):
        started = ctx.mfa.start_enrolment(principal.user_id, sealed, now=now)
    if not started:
        raise Conflict("A second factor is on already.", code="mfa_already_enabled")
    account = str(principal.user.get("email", ""))
    uri = totp.provisioning_uri(secret, account=account, issuer=ctx.settings.mfa_issuer)
    return MfaEnrolment(otpauth_uri=uri, secret=secret, qr_svg=totp.qr_svg(uri))


def confirm(ctx: AuthContext, principal: Principal, code: str, *, client: Client) -> RecoveryCodes:
    """Turn the pending factor on with one of its codes; return the recovery codes, once."""
    now = ctx.clock()
    with ctx.admission.operation("mfa.get"):
        state = ctx.mfa.get(principal.user_id) or {}
    pending = mfa_of(state).get("pending")
    if mfa_of(state).get("enabled"):
        raise Conflict("A second factor is on already.", code="mfa_already_enabled")
    if not pending:
        raise BadRequest("Start the enrolment first.", code="mfa_not_enrolling")
    attempt = attempts.for_login(ctx, str(state.get("email", "")), None, client, now)
    step = _matching_step(ctx, pending, principal.user_id, code, now)
    if step is None:
        attempts.failed(ctx, attempt, reason="bad_code")
        raise BadRequest(WRONG_CODE, code="invalid_code")
    codes = totp.new_recovery_codes()
    kid = ctx.totp_keys.active_kid
    digests = [ctx.totp_keys.recovery_digest(c, kid) for c in codes]
    with ctx.admission.operation("mfa.enable"):
        enabled = ctx.mfa.enable(
            principal.user_id, pending, step=step, recovery_kid=kid, digests=digests, now=now
        )
    if not enabled:
        raise Conflict("The enrolment changed meanwhile; start again.", code="mfa_conflict")
    attempts.succeeded(ctx, attempt)
    record_event(ctx, principal.user_id, EventType.MFA_ENABLED, now=now, client=client)
    return RecoveryCodes(recovery_codes=codes)


def complete_login(ctx: AuthContext, body: MfaLoginRequest, *, client: Client) -> TokenPair:
    """The login's code step: a live challenge and one right, unspent code or recovery code."""
    now = ctx.clock()
    with ctx.admission.operation("mfa.challenge"):
        challenge = ctx.mfa.challenge(body.mfa_token, now=now)
    if challenge is None:
        raise Unauthorized("Sign in again: this step has expired.", code="invalid_mfa_token")
    with ctx.admission.operation("users.find"):
        user = ctx.users.find_for_login_by_id(challenge["user_id"])
    if user is None or not mfa_of(user).get("enabled"):
        raise Unauthorized("Sign in again: this step has expired.", code="invalid_mfa_token")
    attempt = attempts.for_login(ctx, user["email"], user, client, now)
    amr = _second_factor(ctx, user, body.code, body.recovery_code, client=client, now=now)
    if amr is None:
        attempts.failed(ctx, attempt, reason="bad_code")
        with ctx.admission.operation("mfa.fail_challenge"):
            ctx.mfa.fail_challenge(body.mfa_token)
        record_event(ctx, user["_id"], EventType.MFA_FAILED, now=now, client=client)
        raise Unauthorized(WRONG_CODE, code="invalid_code")
    with ctx.admission.operation("mfa.close_challenge"):
        closed = ctx.mfa.close_challenge(body.mfa_token, now=now)
    if closed is None:  # a parallel step used it first
        raise Unauthorized("Sign in again: this step has expired.", code="invalid_mfa_token")
    pair, _ = finish(ctx, user, attempt, client=client, now=now, amr=amr)
    return pair


def disable(
    ctx: AuthContext, principal: Principal, body: MfaCodeRequest, *, client: Client
) -> None:
    """Turn the factor off after a second-factor step now."""
    now = ctx.clock()
    user = _prove_factor(ctx, principal, body, client=client, now=now)
    with ctx.admission.operation("mfa.disable"):
        ctx.mfa.disable(user["_id"])
    record_event(ctx, principal.user_id, EventType.MFA_DISABLED, now=now, client=client)


def regenerate(
    ctx: AuthContext, principal: Principal, body: MfaCodeRequest, *, client: Client
) -> RecoveryCodes:
    """Replace the recovery codes after a second-factor step now; return the new ones, once."""
    now = ctx.clock()
    _prove_factor(ctx, principal, body, client=client, now=now)
    codes = totp.new_recovery_codes()
    kid = ctx.totp_keys.active_kid
    with ctx.admission.operation("mfa.replace_recovery"):
        ctx.mfa.replace_recovery(
            principal.user_id,
            kid=kid,
            digests=[ctx.totp_keys.recovery_digest(c, kid) for c in codes],
        )
    record_event(
        ctx, principal.user_id, EventType.RECOVERY_CODES_REGENERATED, now=now, client=client
    )
    return RecoveryCodes(recovery_codes=codes)


# -- shared steps ------------------------------------------------------------------------------


def _prove_factor(
    ctx: AuthContext, principal: Principal, body: MfaCodeRequest, *, client: Client, now: datetime
) -> dict[str, Any]:
    """A second-factor step by a signed-in user, counted under the login limits."""
    with ctx.admission.operation("users.find"):
        user = ctx.users.find_for_login_by_id(principal.user_id)
    if user is None or not mfa_of(user).get("enabled"):
        raise Conflict("No second factor is on.", code="mfa_not_enabled")
    attempt = attempts.for_login(ctx, user["email"], user, client, now)
    if _second_factor(ctx, user, body.code, body.recovery_code, client=client, now=now) is None:
        attempts.failed(ctx, attempt, reason="bad_code")
        record_event(ctx, user["_id"], EventType.MFA_FAILED, now=now, client=client)
        raise Unauthorized(WRONG_CODE, code="invalid_code")
    attempts.succeeded(ctx, attempt)
    return user


def _second_factor(
    ctx: AuthContext,
    user: dict[str, Any],
    code: str | None,
    recovery_code: str | None,
    *,
    client: Client,
    now: datetime,
) -> tuple[str, ...] | None:
    """Spend a TOTP code (amr otp) or a recovery code (amr rec), once; None if neither is right."""
    mfa = user["mfa"]
    if code:
        step = _matching_step(ctx, mfa["secret"], user["_id"], code, now)
        if step is None:
            return None
        with ctx.admission.operation("mfa.spend_step"):
            spent = ctx.mfa.spend_step(user["_id"], step)
        return ("pwd", "otp") if spent else None
    if recovery_code:
        try:
            digest = ctx.totp_keys.recovery_digest(recovery_code, mfa.get("recovery_kid"))
        except SealedSecretError:
            return None
        with ctx.admission.operation("mfa.spend_recovery"):
            left = ctx.mfa.spend_recovery(user["_id"], digest, now=now)
        if left is None:
            return None
        record_event(ctx, user["_id"], EventType.RECOVERY_CODE_USED, now=now, client=client)
        return ("pwd", "rec")
    return None


def _matching_step(
    ctx: AuthContext, sealed: dict[str, Any], user_id: ObjectId, code: str, now: datetime
) -> int | None:
    """The time step `code` is of, for the user's sealed secret; None if it is of none (or the
    secret does not open)."""
    try:
        secret = ctx.totp_keys.open(sealed, user_id)
    except SealedSecretError:
        return None
    return totp.matching_step(secret, code, now)

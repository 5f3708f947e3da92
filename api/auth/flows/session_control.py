"""The user's control over their sessions (OWASP ASVS 7.5.2): list them, end one, prove the
password again.

    list            GET /users/me/sessions: the live sessions (id, created, last used, expires,
                    client address, user agent, whether it is the caller's)
    end             DELETE /users/me/sessions/{id}: the caller's own ends like a logout; any other
                    needs authentication within RECENT_AUTH_S (else 401
                    reauthentication_required), and another user's id is a 404
    reauthenticate  POST /users/me/reauthenticate {password}: the password, checked under the
                    login limits, renews the session's auth_time; the answer is a token pair
                    (the session's refresh token is rotated: the previous one is dead)

Logout-all needs recent authentication too (logout.py).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from api.auth.context import AuthContext, Client, Principal, TokenPair
from api.auth.steps import attempts
from api.auth.steps.issue import access_token, new_refresh_token
from api.auth.steps.notices import record_event
from api.auth.steps.revocation import end_session
from api.auth.stores.security_log import EventType
from api.errors import NotFound, Unauthorized
from api.schemas import SessionResponse

RECENT_AUTH_S = 300


def list_sessions(ctx: AuthContext, principal: Principal) -> list[SessionResponse]:
    """Return the caller's live sessions, most recently used first."""
    now = ctx.clock()
    with ctx.admission.operation("sessions.list"):
        docs = ctx.sessions.live(principal.user_id, now=now)
    return [
        SessionResponse(
            id=doc["_id"],
            created_at=doc["created_at"],
            last_used_at=doc["last_used_at"],
            expires_at=min(doc["expires_at"], doc["idle_expires_at"]),
            ip=doc.get("ip") or "",
            user_agent=doc.get("user_agent") or "",
            current=doc["_id"] == principal.claims.sid,
        )
        for doc in docs
    ]


def require_recent_auth(ctx: AuthContext, principal: Principal) -> None:
    """Raise 401 reauthentication_required unless the caller proved who they are recently."""
    auth_time = principal.claims.auth_time
    if auth_time is None or ctx.clock().timestamp() - auth_time > RECENT_AUTH_S:
        raise Unauthorized(
            "Enter your password again to do this.", code="reauthentication_required"
        )


def end_one(ctx: AuthContext, principal: Principal, session_id: str, *, client: Client) -> None:
    """End one of the caller's sessions (see the module docstring)."""
    now = ctx.clock()
    if session_id != principal.claims.sid:
        require_recent_auth(ctx, principal)
    with ctx.admission.operation("sessions.find"):
        live = {doc["_id"] for doc in ctx.sessions.live(principal.user_id, now=now)}
    if session_id not in live:
        raise NotFound()
    end_session(ctx, principal.user_id, session_id, reason="ended_by_user", now=now)
    record_event(ctx, principal.user_id, EventType.SESSION_ENDED, now=now, client=client)


def reauthenticate(
    ctx: AuthContext, principal: Principal, password: str, *, client: Client
) -> TokenPair:
    """Check the password again and return a pair with a fresh auth_time; raise 401."""
    now = ctx.clock()
    user = attempts.check_current_password(ctx, principal, password, client=client, now=now)
    return rotate_current(ctx, principal, user, now=now)


def rotate_current(
    ctx: AuthContext, principal: Principal, user: dict[str, Any], *, now: datetime
) -> TokenPair:
    """Give the caller's session a new refresh token and a fresh auth_time; return the pair."""
    sub, sid = principal.claims.sub, principal.claims.sid
    version = int(user.get("token_version", 0))
    with ctx.admission.operation("sessions.find"):
        family = ctx.sessions.get(sid)
    if family is None:
        raise Unauthorized("The session has ended.", code="session_ended")
    refresh = new_refresh_token(ctx, sub, sid, version, now, family["expires_at"])
    with ctx.admission.operation("sessions.reauthenticate"):
        renewed = ctx.sessions.reauthenticate(sid, principal.user_id, refresh, now=now)
    if not renewed:
        raise Unauthorized("The session has ended.", code="session_ended")
    amr = tuple(family.get("amr") or ("pwd",))  # how the session was signed in stays true
    access = access_token(ctx, sub, sid, version, now, auth_time=now, user=user, amr=amr)
    return TokenPair(access, refresh, ctx.settings.access_ttl_s)

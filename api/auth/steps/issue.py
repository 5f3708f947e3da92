"""Issuing tokens: a new session with its first token pair, and access tokens within a session.

An access token carries what the API's checks read without the database: the user's token
version, the session, `auth_time` (when the user last proved who they are: recent enough for
ending other sessions?) and `email_verified`; and, for other services reading it, `amr` (how
the user authenticated: a password) and `roles` (the dashboard role, if any).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from bson import ObjectId

from api.auth.context import AuthContext, TokenPair
from api.auth.stores.sessions import new_session_id


def start_session(
    ctx: AuthContext,
    user: dict[str, Any],
    *,
    now: datetime,
    ip: str = "",
    user_agent: str = "",
) -> tuple[TokenPair, str]:
    """Start a token family for the user (its `_id`, `token_version`, `email_verified`); return
    its first pair and its session id."""
    user_id: ObjectId = user["_id"]
    sid = new_session_id()
    sub = str(user_id)
    version = int(user.get("token_version", 0))
    # Whole seconds, so the refresh token's `exp` and the family's expiry agree exactly.
    expires_at = datetime.fromtimestamp(int(now.timestamp()) + ctx.settings.session_max_age_s, UTC)
    refresh = new_refresh_token(ctx, sub, sid, version, now, expires_at)
    with ctx.admission.operation("sessions.start"):
        ctx.sessions.start(
            sid, user_id, refresh, now=now, expires_at=expires_at, ip=ip, user_agent=user_agent
        )
    access = access_token(ctx, sub, sid, version, now, auth_time=now, user=user)
    return TokenPair(access, refresh, ctx.settings.access_ttl_s), sid


def new_refresh_token(
    ctx: AuthContext, sub: str, sid: str, version: int, now: datetime, expires_at: datetime
) -> str:
    """Return a refresh token of session `sid` that expires with the session."""
    return ctx.codec.issue("refresh", sub=sub, sid=sid, ver=version, now=now, expires_at=expires_at)


def access_token(
    ctx: AuthContext,
    sub: str,
    sid: str,
    version: int,
    now: datetime,
    *,
    auth_time: datetime,
    user: dict[str, Any],
) -> str:
    """Return a fresh access token of session `sid` for `user` (its verified flag and role)."""
    role = user.get("role")
    return ctx.codec.issue(
        "access",
        sub=sub,
        sid=sid,
        ver=version,
        now=now,
        expires_at=now + timedelta(seconds=ctx.settings.access_ttl_s),
        extra={
            "auth_time": int(auth_time.timestamp()),
            "email_verified": bool(user.get("email_verified", False)),
            "amr": ["pwd"],
            "roles": [role] if isinstance(role, str) else [],
        },
    )

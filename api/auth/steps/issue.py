"""Issuing tokens: a new session with its first token pair, and access tokens within a session.

An access token carries what the API's checks read without the database: the user's token
version, the session, `auth_time` (when the user last proved who they are: recent enough for
ending other sessions?) and `email_verified`; and, for other services reading it, `amr` (how
the user signed in, RFC 8176: `["pwd"]`, `["pwd", "otp"]` or `["pwd", "rec"]` for a recovery
code; kept by the session, so a refreshed token says the same) and `roles` (the dashboard
role, if any).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
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
    amr: tuple[str, ...] = ("pwd",),
) -> tuple[TokenPair, str]:
    """Start a token family for the user (its `_id`, `token_version`, `email_verified`), signed
    in by `amr`; return its first pair and its session id."""
    user_id: ObjectId = user["_id"]
    sid = new_session_id()
    sub = str(user_id)
    version = int(user.get("token_version", 0))
    # Whole seconds, so the refresh token's `exp` and the family's expiry agree exactly.
    expires_at = datetime.fromtimestamp(int(now.timestamp()) + ctx.settings.session_max_age_s, UTC)
    refresh = new_refresh_token(ctx, sub, sid, version, now, expires_at)
    with ctx.admission.operation("sessions.start"):
        ctx.sessions.start(
            sid,
            user_id,
            refresh,
            now=now,
            expires_at=expires_at,
            ip=ip,
            user_agent=user_agent,
            amr=amr,
        )
    access = access_token(ctx, sub, sid, version, now, auth_time=now, user=user, amr=amr)
    return TokenPair(access, refresh, ctx.settings.access_ttl_s), sid


def new_refresh_token(
    ctx: AuthContext,
    sub: str,
    sid: str,
    version: int,
    now: datetime,
    expires_at: datetime,
    *,
    replaces: str | None = None,
) -> str:
    """Return a refresh token of session `sid` that expires with the session. The successor of
    token `replaces` is a function of it (its `jti` a keyed digest of that token) and of `now`,
    so a refresh repeated within the grace period can answer with exactly the same token."""
    extra = {"jti": successor_jti(ctx, replaces)} if replaces is not None else None
    return ctx.codec.issue(
        "refresh", sub=sub, sid=sid, ver=version, now=now, expires_at=expires_at, extra=extra
    )


def successor_jti(ctx: AuthContext, replaced: str) -> str:
    """The `jti` of the token that replaces `replaced`: unguessable without the refresh key."""
    key = ctx.settings.jwt_keys[ctx.settings.jwt_active_kid]
    digest = hmac.new(key, b"jobauth refresh successor" + replaced.encode(), hashlib.sha256)
    return base64.urlsafe_b64encode(digest.digest()).decode().rstrip("=")


def access_token(
    ctx: AuthContext,
    sub: str,
    sid: str,
    version: int,
    now: datetime,
    *,
    auth_time: datetime,
    user: dict[str, Any],
    amr: tuple[str, ...] = ("pwd",),
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
            "amr": list(amr),
            "roles": [role] if isinstance(role, str) else [],
        },
    )

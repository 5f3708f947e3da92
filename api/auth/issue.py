"""Issuing tokens: a new session with its first token pair, and access tokens within a session."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from bson import ObjectId

from api.auth.context import AuthContext, TokenPair
from api.auth.session_store import new_session_id


def start_session(
    ctx: AuthContext, user_id: ObjectId, *, version: int, now: datetime
) -> tuple[TokenPair, str]:
    """Start a token family for the user; return its first pair and its session id."""
    sid = new_session_id()
    sub = str(user_id)
    # Whole seconds, so the refresh token's `exp` and the family's expiry agree exactly.
    expires_at = datetime.fromtimestamp(int(now.timestamp()) + ctx.settings.session_max_age_s, UTC)
    refresh = ctx.codec.issue(
        "refresh", sub=sub, sid=sid, ver=version, now=now, expires_at=expires_at
    )
    with ctx.admission.operation("sessions.start"):
        ctx.sessions.start(sid, user_id, refresh, now=now, expires_at=expires_at)
    access = access_token(ctx, sub, sid, version, now)
    return TokenPair(access, refresh, ctx.settings.access_ttl_s), sid


def access_token(ctx: AuthContext, sub: str, sid: str, version: int, now: datetime) -> str:
    """Return a fresh access token of session `sid`."""
    expires_at = now + timedelta(seconds=ctx.settings.access_ttl_s)
    return ctx.codec.issue("access", sub=sub, sid=sid, ver=version, now=now, expires_at=expires_at)

"""Authenticating a request: a valid access token whose session and version still stand.

verify the token (signature, claims, expiry) → the user's document, from the worker's cache kept
fresh by a change stream (user_cache.py), else one read (the profile route needs it anyway) →
refuse if the user is gone, the token's version is older than the user's (logout-all), or its
session was ended; an HS256 token in the grace after the switch to ES256 must also name a live
session (codec.py).
"""

from __future__ import annotations

from typing import Any

from bson import ObjectId

from api.auth.context import AuthContext, Principal
from api.auth.stores.users import parse_user_id, session_revoked
from api.errors import Unauthorized


def authenticate(ctx: AuthContext, access_token: str) -> Principal:
    """Return the request's principal; raise Unauthorized."""
    claims = ctx.codec.verify(access_token, "access", now=ctx.clock())
    user_id = parse_user_id(claims.sub)
    if user_id is None:
        raise Unauthorized(code="invalid_token")
    if ctx.user_cache is not None:
        user = ctx.user_cache.get(user_id)
    else:
        user = read_user(ctx, user_id)
    if (
        user is None
        or int(user.get("token_version", 0)) != claims.ver
        or session_revoked(user, claims.sid)
    ):
        raise Unauthorized("The token has been revoked.", code="token_revoked")
    if claims.legacy and not _session_stands(ctx, user_id, claims.sid):
        raise Unauthorized("The token has been revoked.", code="token_revoked")
    return Principal(claims=claims, user_id=user_id, user=user)


def read_user(ctx: AuthContext, user_id: ObjectId) -> dict[str, Any] | None:
    """Read the user's auth document from the database (admitted like every operation)."""
    with ctx.admission.operation("users.find"):
        return ctx.users.find_for_auth(user_id)


def _session_stands(ctx: AuthContext, user_id: ObjectId, sid: str) -> bool:
    """An HS256 access token in the grace after ES256 took over names a live session of its
    user (one read; only such tokens pay it)."""
    with ctx.admission.operation("sessions.find"):
        family = ctx.sessions.get(sid)
    now = ctx.clock()
    return (
        family is not None
        and family["user_id"] == user_id
        and family["revoked_at"] is None
        and min(family["expires_at"], family["idle_expires_at"]) > now
    )

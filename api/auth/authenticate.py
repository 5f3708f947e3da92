"""Authenticating a request: a valid access token whose session and version still stand.

verify the token (signature, claims, expiry) → read the user once (the profile route needs that
read anyway) → refuse if the user is gone, the token's version is older than the user's (logout
-all), or its session was ended.
"""

from __future__ import annotations

from api.auth.context import AuthContext, Principal
from api.auth.user_store import parse_user_id, session_revoked
from api.errors import Unauthorized


def authenticate(ctx: AuthContext, access_token: str) -> Principal:
    """Return the request's principal; raise Unauthorized."""
    claims = ctx.codec.verify(access_token, "access", now=ctx.clock())
    user_id = parse_user_id(claims.sub)
    if user_id is None:
        raise Unauthorized(code="invalid_token")
    with ctx.admission.operation("users.find"):
        user = ctx.users.find_for_auth(user_id)
    if (
        user is None
        or int(user.get("token_version", 0)) != claims.ver
        or session_revoked(user, claims.sid)
    ):
        raise Unauthorized("The token has been revoked.", code="token_revoked")
    return Principal(claims=claims, user_id=user_id, user=user)

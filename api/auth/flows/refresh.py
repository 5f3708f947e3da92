"""Refresh: rotate a refresh token within its family; a replayed one ends the family.

verify the signature → read the user's token version → swap the family's current digest for
the replacement in ONE compare-and-set (of concurrent refreshes with one token exactly one wins)
→ a validly signed token that is no longer current can only be a replay: end the family and its
access tokens together (revocation.py), log it and tell the user → issue the new pair.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from api.auth.context import AuthContext, Client, TokenPair
from api.auth.steps.issue import access_token, new_refresh_token
from api.auth.steps.notices import record_event
from api.auth.steps.revocation import end_session
from api.auth.stores.security_log import EventType
from api.auth.stores.sessions import Rotation
from api.auth.stores.users import parse_user_id
from api.errors import Unauthorized

log = logging.getLogger("api.auth")


def refresh(ctx: AuthContext, refresh_token: str, *, client: Client | None = None) -> TokenPair:
    """Rotate `refresh_token` and return the new pair; raise Unauthorized. A replay is recorded
    in the user's security log and mailed to them."""
    now = ctx.clock()
    claims = ctx.codec.verify(refresh_token, "refresh", now=now)
    user_id = parse_user_id(claims.sub)
    if user_id is None:
        raise Unauthorized(code="invalid_token")
    with ctx.admission.operation("users.find"):
        user = ctx.users.find_for_refresh(user_id)
    if user is None:
        raise Unauthorized(code="invalid_token")
    version = int(user.get("token_version", 0))
    expires_at = datetime.fromtimestamp(claims.exp, UTC)
    replacement = new_refresh_token(ctx, claims.sub, claims.sid, version, now, expires_at)
    with ctx.admission.operation("sessions.rotate"):
        outcome, auth_time = ctx.sessions.rotate(
            claims.sid, user_id, refresh_token, replacement, now=now, expires_at=expires_at
        )
    if outcome is Rotation.REUSED:
        ctx.metrics.refresh_reuse_detected.inc()
        log.warning("refresh token reuse detected; session revoked user_id=%s", user_id)
        end_session(ctx, user_id, claims.sid, reason="reuse", now=now)
        record_event(ctx, user_id, EventType.REFRESH_REUSE_DETECTED, now=now, client=client)
        raise Unauthorized("The session has been revoked.", code="refresh_token_reused")
    if outcome is not Rotation.ROTATED or auth_time is None:
        raise Unauthorized("The session has ended.", code="session_ended")
    access = access_token(
        ctx,
        claims.sub,
        claims.sid,
        version,
        now,
        auth_time=auth_time,
        user=user,
    )
    return TokenPair(access, replacement, ctx.settings.access_ttl_s)

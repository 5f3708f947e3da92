"""Refresh: rotate a refresh token within its family; a replayed one ends the family.

verify the signature → read the user's token version → swap the family's current digest for
the replacement in ONE compare-and-set (of concurrent refreshes with one token exactly one wins)
→ the token rotated a moment ago (API_REFRESH_GRACE_S), presented again: two tabs or a poll and
a click racing with one cookie, not a theft; answer with the same new refresh token the first
got (its successor is a function of it: issue.py) and a fresh access token of the session →
any other validly signed token that is no longer current can only be a replay: end the family
and its access tokens together (revocation.py), log it and tell the user → issue the new pair.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from api.auth.context import AuthContext, Client, TokenPair
from api.auth.steps.issue import access_token, new_refresh_token
from api.auth.steps.notices import record_event
from api.auth.steps.revocation import end_session
from api.auth.stores.security_log import EventType
from api.auth.stores.sessions import Rotation, token_digest
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
    replacement = new_refresh_token(
        ctx, claims.sub, claims.sid, version, now, expires_at, replaces=refresh_token
    )
    with ctx.admission.operation("sessions.rotate"):
        outcome, rotated = ctx.sessions.rotate(
            claims.sid, user_id, refresh_token, replacement, now=now, expires_at=expires_at,
            grace_s=ctx.settings.refresh_grace_s,
        )  # fmt: skip
    if outcome is Rotation.GRACE and rotated is not None:
        # The same successor the first refresh issued, rebuilt from its time of rotation.
        replacement = new_refresh_token(
            ctx, claims.sub, claims.sid, version, rotated.rotated_at, expires_at,
            replaces=refresh_token,
        )  # fmt: skip
        if token_digest(replacement) != rotated.current_digest:
            outcome = Rotation.REUSED  # rotated again since: this token is two behind
    if outcome is Rotation.REUSED:
        ctx.metrics.refresh_reuse_detected.inc()
        log.warning("refresh token reuse detected; session revoked user_id=%s", user_id)
        end_session(ctx, user_id, claims.sid, reason="reuse", now=now)
        record_event(ctx, user_id, EventType.REFRESH_REUSE_DETECTED, now=now, client=client)
        raise Unauthorized("The session has been revoked.", code="refresh_token_reused")
    if outcome not in (Rotation.ROTATED, Rotation.GRACE) or rotated is None:
        raise Unauthorized("The session has ended.", code="session_ended")
    access = access_token(
        ctx, claims.sub, claims.sid, version, now, auth_time=rotated.auth_time, user=user,
        amr=rotated.amr,
    )  # fmt: skip
    return TokenPair(access, replacement, ctx.settings.access_ttl_s)

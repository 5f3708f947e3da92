"""Logout: end this session, or every session of the user (revocation.py does the writing).
Ending every session needs recent authentication (session_control.RECENT_AUTH_S)."""

from __future__ import annotations

from api.auth.context import AuthContext, Principal
from api.auth.flows.session_control import require_recent_auth
from api.auth.steps.revocation import end_all_sessions, end_session


def logout(ctx: AuthContext, principal: Principal) -> None:
    """End the caller's session: its refresh and access tokens stop working."""
    end_session(ctx, principal.user_id, principal.claims.sid, reason="logout", now=ctx.clock())


def logout_all(ctx: AuthContext, principal: Principal) -> None:
    """End every session of the caller and every access token issued before now."""
    require_recent_auth(ctx, principal)
    end_all_sessions(ctx, principal.user_id, reason="logout_all", now=ctx.clock())

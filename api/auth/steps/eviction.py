"""The cap on a user's live sessions (API_MAX_SESSIONS_PER_USER): beyond it, the oldest end.

Sessions are otherwise unlimited: a script logging in in a loop, or an attacker holding a stolen
password, would pile them up. The check runs in the login ledger's flush, once for all the users
who started sessions in that moment (one aggregate), so a login does not pay for it; the users
over the cap then have their oldest sessions ended like a logout (revocation.py), reason
`evicted`.
"""

from __future__ import annotations

from bson import ObjectId

from api.auth.context import AuthContext
from api.auth.steps.revocation import end_session


def evict_beyond_cap(ctx: AuthContext, user_ids: set[ObjectId]) -> int:
    """End the oldest live sessions of each user beyond the cap; return how many ended."""
    now = ctx.clock()
    cap = ctx.settings.max_sessions_per_user
    ended = 0
    for user_id in ctx.sessions.over_cap(sorted(user_ids), cap=cap, now=now):
        for sid in ctx.sessions.oldest_beyond(user_id, cap=cap, now=now):
            end_session(ctx, user_id, sid, reason="evicted", now=now)
            ended += 1
    return ended

"""Ending sessions: a token family and its access tokens end together, in one transaction.

A session's refresh token lives in its `sessions` document; its access tokens are refused
through the user document (`revoked_sessions`, or `token_version` for all of them). Ending a session
changes both. Written one after the other, a failure in between (a 503, a crash) could leave the
family ended but its access tokens valid for the rest of their lifetime; so both writes run in
one transaction (the queue already requires a replica set): either both apply or neither, and a
retry of the whole request finishes the job.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from datetime import datetime, timedelta

from bson import ObjectId
from pymongo.client_session import ClientSession
from pymongo.errors import PyMongoError
from pymongo.read_concern import ReadConcern
from pymongo.write_concern import WriteConcern

from api.auth.context import AuthContext

TRANSIENT = "TransientTransactionError"
ATTEMPTS = 10
BACKOFF_S = 0.005


def end_session(
    ctx: AuthContext, user_id: ObjectId, sid: str, *, reason: str, now: datetime
) -> None:
    """End one session: its refresh token and every access token issued in it."""

    # Its access tokens were issued at `now` at the latest; they are accepted until their expiry
    # plus the clock-skew leeway, and refused until then.
    until = now + timedelta(seconds=ctx.settings.access_ttl_s + ctx.settings.jwt_leeway_s)

    def both(session: ClientSession) -> None:
        ctx.sessions.revoke(sid, reason=reason, now=now, session=session)
        ctx.users.revoke_session_access(user_id, sid, until=until, now=now, session=session)

    with ctx.admission.operation("sessions.end"):
        _in_transaction(ctx, both)


def end_all_sessions(ctx: AuthContext, user_id: ObjectId, *, reason: str, now: datetime) -> None:
    """End every session of the user and every access token issued before now."""

    def both(session: ClientSession) -> None:
        ctx.users.end_all_tokens(user_id, session=session)
        ctx.sessions.revoke_all(user_id, reason=reason, now=now, session=session)

    with ctx.admission.operation("sessions.end_all"):
        _in_transaction(ctx, both)


def _in_transaction(ctx: AuthContext, writes: Callable[[ClientSession], None]) -> None:
    """Run `writes` in one transaction, retrying a write conflict with a growing, jittered pause.

    Conflicts are expected: the 19 losers of a 20-way refresh race all end the same session at
    once. The writes are idempotent, so a retry after another one committed changes nothing."""
    for attempt in range(ATTEMPTS):
        if attempt:
            time.sleep(random.uniform(0, BACKOFF_S * 2**attempt))
        with ctx.db.client.start_session() as session:
            try:
                with session.start_transaction(
                    read_concern=ReadConcern("snapshot"),
                    write_concern=WriteConcern(w="majority", j=True),
                ):
                    writes(session)
                return
            except PyMongoError as exc:
                if not exc.has_error_label(TRANSIENT) or attempt == ATTEMPTS - 1:
                    raise

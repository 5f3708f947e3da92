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


class PasswordRaced(Exception):
    """The password changed between its check and the write that replaces it."""


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
    _forget(ctx, user_id)


def end_all_sessions(
    ctx: AuthContext,
    user_id: ObjectId,
    *,
    reason: str,
    now: datetime,
    password_hash: str | None = None,
    verified: bool = False,
    expected_hash: str | None = None,
) -> None:
    """End every session of the user and every access token issued before now; with a
    `password_hash`, set it in the same transaction (and mark the address verified). With
    `expected_hash`, nothing happens unless that is still the password hash: PasswordRaced."""

    def together(session: ClientSession) -> None:
        version = ctx.users.end_all_tokens(
            user_id,
            password_hash=password_hash,
            verified=verified,
            expected_hash=expected_hash,
            session=session,
        )
        if version is None:
            raise PasswordRaced()  # aborts the transaction
        ctx.sessions.revoke_all(user_id, reason=reason, now=now, session=session)

    with ctx.admission.operation("sessions.end_all"):
        _in_transaction(ctx, together)
    _forget(ctx, user_id)


def reset_password_and_end_sessions(
    ctx: AuthContext, user_id: ObjectId, password_hash: str, *, now: datetime
) -> None:
    """A reset: the new password, the address verified (the mailed link proved it), and every
    session and access token ended, all or nothing."""
    end_all_sessions(
        ctx, user_id, reason="password_reset", now=now, password_hash=password_hash, verified=True
    )


def _forget(ctx: AuthContext, user_id: ObjectId) -> None:
    """This worker refuses the ended tokens at once; the others hear of it from the stream."""
    if ctx.user_cache is not None:
        ctx.user_cache.forget(user_id)


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

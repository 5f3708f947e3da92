"""The account mail that carries links or reports security events.

    user.verify_email     {user_id}           a fresh verification link (if still unverified)
    user.password_reset   {email}             a reset link, if the address has an account; the
                                              API enqueues this for every address it is asked
                                              about, so only this job learns whether it exists
    user.security_notice  {user_id, event_id, event}
                                              "your password was changed", "...reset", "we
                                              signed out a device", "a new device logged in"

Links are minted in the job: the raw token exists only in this process and in the mail. A job
that runs again after a crash mints a new token (the one in a mail that may have gone out dies)
and sends it under a Message-ID that names the attempt, so a receiver that drops duplicates by
Message-ID never drops the mail with the live link. Notices have no token: their Message-ID is
the job's, and the job's idempotency key is the event id, so one event is one mail.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from bson import ObjectId
from bson.errors import InvalidId

from api.auth.stores.security_log import EventType
from api.mail.messages import account_message
from api.tasks.resources import ACCOUNTS, MAILER
from queue_worker.errors import NonRetryableError
from queue_worker.job import parse_job_id
from queue_worker.tasks import TaskContext, task

MAIL_ATTEMPTS = 25
"""Mail retries for a long time (over an hour with the default backoff, at least a minute apart
while the outbox's disk is out): a relay or disk outage must not lose it."""

NOTICES: dict[str, tuple[str, str]] = {
    EventType.PASSWORD_CHANGED: (
        "Your password was changed",
        "The password of your account was just changed{where}. If this was you, there is "
        "nothing to do. If it was not, reset your password now and review your sessions.",
    ),
    EventType.PASSWORD_RESET: (
        "Your password was reset",
        "The password of your account was just reset with a link sent to this address{where}. "
        "Every session was signed out. If this was not you, reset your password again now.",
    ),
    EventType.REFRESH_REUSE_DETECTED: (
        "We signed out a device",
        "A sign-in token of your account was used twice, which happens when a token is "
        "copied. We signed out that session to be safe. If you did not expect this, change "
        "your password and review your sessions.",
    ),
    EventType.NEW_DEVICE_LOGIN: (
        "New sign-in to your account",
        "Your account was just signed in to from a network we have not seen before{where}. "
        "If this was you, there is nothing to do. If not, change your password now.",
    ),
    EventType.MFA_ENABLED: (
        "Two-step sign-in was turned on",
        "An authenticator app was added to your account{where}: signing in now needs its code "
        "too. If this was not you, reset your password and contact us.",
    ),
    EventType.MFA_DISABLED: (
        "Two-step sign-in was turned off",
        "The authenticator app of your account was removed{where}: a password alone signs in "
        "again. If this was not you, reset your password and turn it back on.",
    ),
    EventType.RECOVERY_CODES_REGENERATED: (
        "New recovery codes were made",
        "New recovery codes were made for your account{where}; the old ones no longer work. "
        "If this was not you, reset your password now.",
    ),
    EventType.RECOVERY_CODE_USED: (
        "A recovery code was used",
        "A recovery code was used to sign in to your account{where}; it cannot be used again. "
        "If this was not you, reset your password and make new recovery codes.",
    ),
    EventType.SESSIONS_ENDED_BY_ADMIN: (
        "You were signed out everywhere",
        "An administrator ended every session of your account. Sign in again to go on.",
    ),
}


def token_mail_key(ctx: TaskContext) -> str:
    """Return the Message-ID key of a mail carrying a token: the job and its attempt."""
    return f"{ctx.job_id}.{ctx.attempt}"


@task("user.verify_email", timeout_s=60, max_attempts=MAIL_ATTEMPTS, uses=(MAILER, ACCOUNTS))
def user_verify_email(payload: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
    """Mail a fresh verification link to the account's current address."""
    accounts = ctx.resource(ACCOUNTS)
    contact = accounts.users.find_contact(object_id(payload, "user_id"))
    if contact is None or contact.get("email_verified"):
        return {"sent": False}
    url = accounts.verify_url(contact["_id"], contact["email"], now=datetime.now(UTC))
    text = (
        "Please confirm that this address is yours (the link works for 24 hours):\n"
        f"{url}\n\nIf you did not ask for this, ignore this message."
    )
    return send_to(ctx, contact, "Confirm your email address", text, key=token_mail_key(ctx))


@task("user.password_reset", timeout_s=60, max_attempts=MAIL_ATTEMPTS, uses=(MAILER, ACCOUNTS))
def user_password_reset(payload: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
    """Mail a reset link if the address has an account; else do nothing (and say so only in
    the job's result, which no client can read)."""
    accounts = ctx.resource(ACCOUNTS)
    email = payload.get("email")
    if not isinstance(email, str) or not email:
        raise NonRetryableError("payload field 'email' is required")
    user = accounts.users.find_by_email(email)
    if user is None:
        return {"sent": False}
    now = datetime.now(UTC)
    event_id = parse_job_id(ctx.job_id)  # the event of this request, written once
    accounts.security.record(user["_id"], EventType.RESET_REQUESTED, at=now, event_id=event_id)
    url = accounts.reset_url(user["_id"], now=now)
    text = (
        "Someone (we hope you) asked to reset the password of your account. Choose a new "
        f"password here (the link works for 30 minutes, once):\n{url}\n\n"
        "If you did not ask for this, ignore this message: your password stays as it is."
    )
    return send_to(ctx, user, "Reset your password", text, key=token_mail_key(ctx))


@task("user.security_notice", timeout_s=60, max_attempts=MAIL_ATTEMPTS, uses=(MAILER, ACCOUNTS))
def user_security_notice(payload: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
    """Tell the user about one security event of their account."""
    accounts = ctx.resource(ACCOUNTS)
    event = payload.get("event")
    if event not in NOTICES:
        raise NonRetryableError(f"no notice for event {event!r}")
    contact = accounts.users.find_contact(object_id(payload, "user_id"))
    if contact is None:
        return {"sent": False}
    subject, text = NOTICES[event]
    where = payload.get("where")
    text = text.format(where=f" (from {where})" if isinstance(where, str) and where else "")
    return send_to(ctx, contact, subject, text, key=ctx.job_id)


def send_to(
    ctx: TaskContext, contact: dict[str, Any], subject: str, text: str, *, key: str
) -> dict[str, Any]:
    """Mail `text` to the account `contact` describes; the outbox file is named by the job."""
    mailer = ctx.resource(MAILER)
    message = account_message(
        to=contact["email"],
        subject=subject,
        text=text,
        sender=mailer.sender,
        key=key,
    )
    mailer.deliver(message, name=ctx.job_id)
    return {"sent": True, "via": mailer.via}


def object_id(payload: dict[str, Any], key: str) -> ObjectId:
    """Return the payload's ObjectId field; NonRetryableError if it is missing or malformed."""
    value = payload.get(key)
    try:
        if not isinstance(value, str):
            raise TypeError(key)
        return ObjectId(value)
    except (InvalidId, TypeError):
        raise NonRetryableError(f"payload field {key!r} must be an object id") from None

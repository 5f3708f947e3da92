"""Tasks the API enqueues about accounts: the welcome email and the login audit entry.

Both are safe to run twice, because a job may run again after its worker crashed:
- `user.created`: the message's Message-ID and outbox file name derive from the job id.
- `user.login`: the audit entry's `_id` is the job id and is written with an upsert.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from api.mail.messages import welcome_message
from api.tasks.resources import MAILER
from queue_worker.errors import NonRetryableError
from queue_worker.job import parse_job_id
from queue_worker.tasks import DATABASE, TaskContext, task

LOGIN_AUDIT = "login_audit"


# Mail retries for a long time (25 attempts: over an hour with the default backoff, at least a
# minute apart while the outbox's disk is out): a relay or disk outage must not lose it.
MAIL_ATTEMPTS = 25


@task("user.created", timeout_s=60, max_attempts=MAIL_ATTEMPTS, uses=(MAILER,))
def user_created(payload: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
    """Send the welcome email to a new user (SMTP, or the outbox without an SMTP server)."""
    email = _required_str(payload, "email")
    if "@" not in email or any(ch.isspace() for ch in email):
        raise NonRetryableError("payload field 'email' is not an email address")
    name = payload.get("name") or ""
    if not isinstance(name, str):
        raise NonRetryableError("payload field 'name' must be a string")
    mailer = ctx.resource(MAILER)
    message = welcome_message(to=email, name=name, sender=mailer.sender, key=ctx.job_id)
    mailer.deliver(message, name=ctx.job_id)
    # The result is stored on the job: keep it small and free of the address itself.
    return {"via": mailer.via, "message_id": message["Message-ID"]}


@task("user.login", timeout_s=30, uses=(DATABASE,))
def user_login(payload: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
    """Record a login audit entry (user, time, IP, user agent), once per job."""
    entry = {
        "user_id": _required_str(payload, "user_id"),
        "ip": _optional_str(payload, "ip"),
        "user_agent": _optional_str(payload, "user_agent"),
        "at": parse_at(payload.get("at")),
        "recorded_at": datetime.now(UTC),
    }
    key = parse_job_id(ctx.job_id) or ctx.job_id
    audit = ctx.resource(DATABASE)[LOGIN_AUDIT]
    audit.update_one({"_id": key}, {"$setOnInsert": entry}, upsert=True)
    return {"audit_id": ctx.job_id}


def parse_at(value: object) -> datetime:
    """Return the login time as an aware UTC datetime (ISO 8601 string; naive means UTC)."""
    if isinstance(value, datetime):
        at = value
    elif isinstance(value, str):
        try:
            at = datetime.fromisoformat(value)
        except ValueError:
            raise NonRetryableError("payload field 'at' is not an ISO 8601 time") from None
    else:
        raise NonRetryableError("payload field 'at' is required (ISO 8601 time)")
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


def _required_str(payload: dict[str, Any], key: str) -> str:
    value = payload.get(key)
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, str) or not value:
        raise NonRetryableError(f"payload field {key!r} is required (a non-empty string)")
    return value


def _optional_str(payload: dict[str, Any], key: str) -> str | None:
    value = payload.get(key)
    if value is None or isinstance(value, str):
        return value
    raise NonRetryableError(f"payload field {key!r} must be a string")

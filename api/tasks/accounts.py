"""Tasks the API enqueues about accounts: the welcome email and the login's security event.

Both are safe to run twice, because a job may run again after its worker crashed:
- `user.created`: the welcome mail, with the first verification link (minted here; see
  account_mail.py for why a re-run's Message-ID names its attempt). The outbox file name is the
  job id, so a re-run replaces the file.
- `user.login`: a `login_succeeded` event in the user's security log whose `_id` is the job id,
  written with an upsert. Logins now write that line through the login ledger
  (api/auth/stores/ledger.py); the task stays for jobs an earlier version enqueued.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from api.auth.stores.security_log import EventType
from api.mail.messages import welcome_message
from api.tasks.account_mail import MAIL_ATTEMPTS, object_id, token_mail_key
from api.tasks.resources import ACCOUNTS, MAILER
from queue_worker.errors import NonRetryableError
from queue_worker.job import parse_job_id
from queue_worker.tasks import TaskContext, task


@task("user.created", timeout_s=60, max_attempts=MAIL_ATTEMPTS, uses=(MAILER, ACCOUNTS))
def user_created(payload: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
    """Send the welcome email to a new user (SMTP, or the outbox without an SMTP server), with a
    verification link while the address is unverified."""
    email = _required_str(payload, "email")
    if "@" not in email or any(ch.isspace() for ch in email):
        raise NonRetryableError("payload field 'email' is not an email address")
    name = payload.get("name") or ""
    if not isinstance(name, str):
        raise NonRetryableError("payload field 'name' must be a string")
    user_id = object_id(payload, "user_id")
    mailer, accounts = ctx.resource(MAILER), ctx.resource(ACCOUNTS)
    contact = accounts.users.find_contact(user_id)
    verify_url = None
    if contact is not None and contact["email"] == email and not contact.get("email_verified"):
        verify_url = accounts.verify_url(user_id, email, now=datetime.now(UTC))
    message = welcome_message(
        to=email,
        sender=mailer.sender,
        key=token_mail_key(ctx) if verify_url else ctx.job_id,
        verify_url=verify_url,
    )
    mailer.deliver(message, name=ctx.job_id)
    # The result is stored on the job: keep it small and free of the address itself.
    return {"via": mailer.via, "message_id": message["Message-ID"]}


@task("user.login", timeout_s=30, uses=(ACCOUNTS,))
def user_login(payload: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
    """Record the login in the user's security log (time, IP, user agent), once per job."""
    user_id = object_id(payload, "user_id")
    at = parse_at(payload.get("at"))
    ip, user_agent = _optional_str(payload, "ip"), _optional_str(payload, "user_agent")
    ctx.resource(ACCOUNTS).security.record(
        user_id,
        EventType.LOGIN_SUCCEEDED,
        at=at,
        ip=ip,
        user_agent=user_agent,
        event_id=parse_job_id(ctx.job_id),
    )
    return {"event_id": ctx.job_id}


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

"""The messages the account flows send, built with a Message-ID that depends only on the job.

A message's Message-ID is derived from the job id, so a re-run after a crash (the first send may
have reached the server before the worker died) carries the same Message-ID and receivers can
drop the duplicate.
"""

from __future__ import annotations

from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, formataddr

from queue_worker.errors import NonRetryableError


def message_id_for(key: str, sender: str) -> str:
    """Return a Message-ID that depends only on `key` (a job id) and the sender's domain."""
    domain = sender.rpartition("@")[2] or "localhost"
    return f"<{key}@{domain}>"


def welcome_message(
    *, to: str, name: str, sender: str, key: str, date: datetime | None = None
) -> EmailMessage:
    """Build the welcome email for a new user; `key` (the job id) fixes its Message-ID."""
    msg = EmailMessage()
    try:
        msg["From"] = sender
        msg["To"] = formataddr((name, to)) if name else to
        msg["Subject"] = "Welcome aboard"
        msg["Message-ID"] = message_id_for(key, sender)
    except (ValueError, TypeError) as exc:  # CR/LF in a header: a malformed payload
        raise NonRetryableError(f"cannot build the welcome email: {exc}") from exc
    msg["Date"] = format_datetime(date or datetime.now(UTC))
    greeting = f"Hello {name}," if name else "Hello,"
    msg.set_content(f"{greeting}\n\nWelcome aboard! Your account is ready.\n")
    return msg

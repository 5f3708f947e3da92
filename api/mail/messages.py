"""The messages the account flows send, built with a Message-ID that depends only on the job.

A message's Message-ID is derived from the job id, so a re-run after a crash (the first send may
have reached the server before the worker died) carries the same Message-ID and receivers can
drop the duplicate.
"""

from __future__ import annotations

import unicodedata
from datetime import UTC, datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime

from queue_worker.errors import NonRetryableError


def mailbox(addr_spec: str, display_name: str = "") -> Address:
    """Return an address header value whose display name can never be read as an address.

    The email package quotes the name (or RFC 2047-encodes it whole), so angle brackets,
    quotes, commas and "@" in a name stay part of the name when the header is parsed again.
    Line breaks and other control characters are folded to spaces first: a name is shown, never
    interpreted. Raises ValueError for an unusable address."""
    cleaned = "".join(" " if unicodedata.category(ch)[0] == "C" else ch for ch in display_name)
    return Address(display_name=" ".join(cleaned.split()), addr_spec=addr_spec)


def message_id_for(key: str, sender: str) -> str:
    """Return a Message-ID that depends only on `key` (a job id) and the sender's domain."""
    domain = sender.rpartition("@")[2] or "localhost"
    return f"<{key}@{domain}>"


def account_message(
    *,
    to: str,
    subject: str,
    text: str,
    sender: str,
    key: str,
    date: datetime | None = None,
) -> EmailMessage:
    """Build a plain-text message to a user; `key` (the job id) fixes its Message-ID."""
    msg = EmailMessage()
    try:
        msg["From"] = sender
        # The account's name is the sign-up's own text: an attacker signing up with someone
        # else's address would choose it. It appears nowhere in the mail, header or body.
        msg["To"] = mailbox(to)
        msg["Subject"] = subject
        msg["Message-ID"] = message_id_for(key, sender)
    except (ValueError, TypeError, IndexError) as exc:  # an address that is no address
        raise NonRetryableError(f"cannot build the message: {exc}") from exc
    msg["Date"] = format_datetime(date or datetime.now(UTC))
    msg.set_content(f"Hello,\n\n{text.strip()}\n")
    return msg


def welcome_message(
    *,
    to: str,
    sender: str,
    key: str,
    verify_url: str | None = None,
    date: datetime | None = None,
) -> EmailMessage:
    """Build the welcome email for a new user, with the verification link if there is one."""
    text = "Welcome aboard! Your account is ready."
    if verify_url:
        text += (
            "\n\nPlease confirm that this address is yours (the link works for 24 hours):\n"
            f"{verify_url}\n\nIf you did not sign up, ignore this message."
        )
    return account_message(
        to=to, subject="Welcome aboard", text=text, sender=sender, key=key, date=date
    )

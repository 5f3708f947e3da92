"""Mail delivery for built-in tasks: SMTP when a server is configured, else an outbox directory.

Failures are classified so the queue does the right thing with them:

    SMTP 5xx about this message (recipient, sender or data refused) -> NonRetryableError
    SMTP 4xx, refused or dropped connection, timeout, TLS, auth     -> MailDeliveryError (retried)

Authentication and TLS failures are retried rather than buried: they are the operator's
configuration, not the message's fault, and the job should go through once the config is fixed.

A message's Message-ID is derived from the job id, so a re-run after a crash (the first send may
have reached the server before the worker died) carries the same Message-ID and receivers can
drop the duplicate; the outbox file is named by the job id, so a re-run overwrites it.
"""

from __future__ import annotations

import os
import re
import smtplib
import ssl
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, formataddr
from pathlib import Path

from queue_worker.errors import NonRetryableError
from queue_worker.settings import QueueSettings

DEFAULT_SENDER = "noreply@localhost"
_SAFE_NAME = re.compile(r"^[A-Za-z0-9._-]{1,128}$")


class MailDeliveryError(Exception):
    """A temporary delivery failure: the job fails this attempt and is retried with backoff."""


@dataclass(frozen=True)
class MailConfig:
    """Where mail goes: an SMTP server (host non-empty) or the outbox directory."""

    host: str = ""
    port: int = 25
    sender: str = DEFAULT_SENDER
    user: str = ""
    password: str = ""
    starttls: bool = False
    outbox_dir: Path = Path("var/outbox")
    timeout_s: float = 10.0

    def __repr__(self) -> str:
        # The password must never reach a log line through a repr.
        return (
            f"MailConfig(host={self.host!r}, port={self.port}, sender={self.sender!r}, "
            f"user={self.user!r}, starttls={self.starttls}, outbox_dir={str(self.outbox_dir)!r})"
        )

    @classmethod
    def from_settings(cls, settings: QueueSettings) -> MailConfig:
        """Build the config from the queue settings (SMTP_* and QUEUE_OUTBOX_DIR)."""
        return cls(
            host=settings.smtp_host,
            port=settings.smtp_port,
            sender=settings.smtp_from or DEFAULT_SENDER,
            user=settings.smtp_user,
            password=settings.smtp_password,
            starttls=settings.smtp_starttls,
            outbox_dir=Path(settings.outbox_dir),
        )


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


def deliver(message: EmailMessage, config: MailConfig, *, name: str) -> str:
    """Send `message` by SMTP, or write it to the outbox as `<name>.eml`; return where it went."""
    if config.host:
        send_smtp(message, config)
        return f"smtp://{config.host}:{config.port}"
    return str(write_outbox(message, config.outbox_dir, name))


def write_outbox(message: EmailMessage, outbox_dir: Path, name: str) -> Path:
    """Write the message atomically (temp file + rename) as `<outbox_dir>/<name>.eml`."""
    if not _SAFE_NAME.match(name):
        raise NonRetryableError(f"unsafe outbox file name {name!r}")
    outbox_dir.mkdir(parents=True, exist_ok=True)
    target = outbox_dir / f"{name}.eml"
    fd, tmp = tempfile.mkstemp(dir=outbox_dir, prefix=f".{name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(message.as_bytes())
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def send_smtp(message: EmailMessage, config: MailConfig) -> None:
    """Send one message to the configured SMTP server, classifying failures (module docstring)."""
    try:
        with smtplib.SMTP(config.host, config.port, timeout=config.timeout_s) as smtp:
            if config.starttls:
                smtp.starttls(context=ssl.create_default_context())
            if config.user:
                smtp.login(config.user, config.password)
            smtp.send_message(message)
    except smtplib.SMTPRecipientsRefused as exc:
        codes = [code for code, _ in exc.recipients.values()]
        if codes and all(_permanent(code) for code in codes):
            raise NonRetryableError(f"recipient refused: {_codes(exc.recipients)}") from exc
        raise MailDeliveryError(f"recipient temporarily refused: {_codes(exc.recipients)}") from exc
    except (smtplib.SMTPSenderRefused, smtplib.SMTPDataError) as exc:
        reason = f"{type(exc).__name__} {exc.smtp_code}"
        if _permanent(exc.smtp_code):
            raise NonRetryableError(f"message refused: {reason}") from exc
        raise MailDeliveryError(f"message temporarily refused: {reason}") from exc
    except smtplib.SMTPAuthenticationError as exc:
        # Never include the server's reply text: some echo the credentials back.
        raise MailDeliveryError(f"SMTP login failed ({exc.smtp_code})") from exc
    except (smtplib.SMTPException, OSError) as exc:
        raise MailDeliveryError(
            f"SMTP {config.host}:{config.port} unavailable: {type(exc).__name__}: {exc}"
        ) from exc


def _permanent(code: int) -> bool:
    return 500 <= code < 600


def _codes(recipients: dict[str, tuple[int, bytes]]) -> str:
    return ", ".join(str(code) for code, _ in recipients.values())

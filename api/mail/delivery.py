"""Mail delivery: SMTP when a server is configured, else an outbox directory.

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

import errno
import os
import re
import smtplib
import ssl
import tempfile
from email.message import EmailMessage
from pathlib import Path

from api.mail.settings import MailSettings
from queue_worker.errors import NonRetryableError, RetryAfter

# Errors of the outbox's disk, not of the message: wait for the operator, retry later.
OUTAGE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO})
OUTAGE_RETRY_S = 60.0
_SAFE_NAME = re.compile(r"^[A-Za-z0-9._-]{1,128}$")


class MailDeliveryError(Exception):
    """A temporary delivery failure: the job fails this attempt and is retried with backoff."""


class Mailer:
    """Deliver messages as the settings say; built once per consumer process (api/tasks)."""

    def __init__(self, settings: MailSettings) -> None:
        self.settings = settings

    @property
    def sender(self) -> str:
        return self.settings.sender

    @property
    def via(self) -> str:
        """Return "smtp" or "outbox": where messages go."""
        return "smtp" if self.settings.smtp_host else "outbox"

    def deliver(self, message: EmailMessage, *, name: str) -> str:
        """Send by SMTP, or write to the outbox as `<name>.eml`; return where it went."""
        if self.settings.smtp_host:
            send_smtp(message, self.settings)
            return f"smtp://{self.settings.smtp_host}:{self.settings.smtp_port}"
        return str(write_outbox(message, Path(self.settings.outbox_dir), name))


def write_outbox(message: EmailMessage, outbox_dir: Path, name: str) -> Path:
    """Write the message atomically (temp file + rename) as `<outbox_dir>/<name>.eml`.

    A full, read-only or failing disk is an outage of the outbox, not a fault of the message:
    the job is retried no sooner than OUTAGE_RETRY_S (RetryAfter), on a longer schedule than a
    message the server refused."""
    if not _SAFE_NAME.match(name):
        raise NonRetryableError(f"unsafe outbox file name {name!r}")
    target = outbox_dir / f"{name}.eml"
    try:
        outbox_dir.mkdir(parents=True, exist_ok=True)
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
    except OSError as exc:
        if exc.errno in OUTAGE_ERRNOS:
            raise RetryAfter(
                f"outbox unavailable: {os.strerror(exc.errno or 0)}", delay_s=OUTAGE_RETRY_S
            ) from exc
        raise
    return target


def send_smtp(message: EmailMessage, config: MailSettings) -> None:
    """Send one message to the configured SMTP server, classifying failures (module docstring)."""
    try:
        with smtplib.SMTP(config.smtp_host, config.smtp_port, timeout=config.timeout_s) as smtp:
            if config.smtp_starttls:
                smtp.starttls(context=ssl.create_default_context())
            if config.smtp_user:
                smtp.login(config.smtp_user, config.smtp_password)
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
            f"SMTP {config.smtp_host}:{config.smtp_port} unavailable: {type(exc).__name__}: {exc}"
        ) from exc


def _permanent(code: int) -> bool:
    return 500 <= code < 600


def _codes(recipients: dict[str, tuple[int, bytes]]) -> str:
    return ", ".join(str(code) for code, _ in recipients.values())

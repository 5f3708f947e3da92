"""Helpers for tests of the product's tasks: a real SMTP server, and a task context."""

from __future__ import annotations

import email
import email.policy
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session
from pymongo.database import Database
from task_context import TaskCtx

from api.mail.delivery import Mailer
from api.mail.settings import MailSettings
from api.settings import AccountSettings
from api.tasks.resources import ACCOUNTS, MAILER, Accounts

TOKEN_KEYS = {"t1": bytes(range(1, 33))}


def mail_ctx(job_id: str, settings: MailSettings, db: Database[Any]) -> TaskCtx:
    """A context whose mailer delivers as `settings` say, with the accounts of `db`."""
    accounts = Accounts(AccountSettings(TOKEN_KEYS), db)
    return TaskCtx(job_id, {MAILER.name: Mailer(settings), ACCOUNTS.name: accounts})


@dataclass
class Mailbox:
    """An aiosmtpd handler: refuses recipients by prefix, keeps every accepted message."""

    messages: list[EmailMessage] = field(default_factory=list)

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if address.startswith("nobody@"):
            return "550 5.1.1 no such user"
        if address.startswith("busy@"):
            return "451 4.3.0 mailbox busy, try later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or b""
        parsed = email.message_from_bytes(raw, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        self.messages.append(parsed)
        return "250 Message accepted"


def smtp_settings(port: int, tmp_path: Path) -> MailSettings:
    return MailSettings(
        smtp_host="127.0.0.1",
        smtp_port=port,
        sender="hello@example.test",
        outbox_dir=str(tmp_path / "outbox"),
    )


def outbox_settings(tmp_path: Path) -> MailSettings:
    return MailSettings(sender="hello@example.test", outbox_dir=str(tmp_path / "ob"))

"""Mail settings: where mail goes (an SMTP server, else an outbox directory) and who sends it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from runtime import env as envspec
from runtime.env import Option

DEFAULT_SENDER = "noreply@localhost"


@dataclass(frozen=True)
class MailSettings:
    """An SMTP server (host non-empty) or the outbox directory, and the sender address."""

    smtp_host: str = ""
    smtp_port: int = 25
    sender: str = DEFAULT_SENDER
    smtp_user: str = ""
    smtp_password: str = field(default="", repr=False)  # never in a log line via repr
    smtp_starttls: bool = False
    outbox_dir: str = "var/outbox"
    timeout_s: float = 10.0

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> MailSettings:
        """Build the settings from SMTP_* and MAIL_OUTBOX_DIR; raise SettingsError."""
        return cls(**envspec.read(OPTIONS, env))


OPTIONS: tuple[Option[Any], ...] = (
    Option("SMTP_HOST", "smtp_host", envspec.text, "SMTP server; empty: the outbox"),
    Option("SMTP_PORT", "smtp_port", envspec.integer(1, 65535), "SMTP port"),
    Option("SMTP_FROM", "sender", envspec.text, "sender address"),
    Option("SMTP_USER", "smtp_user", envspec.text, "SMTP login"),
    Option("SMTP_PASSWORD", "smtp_password", envspec.text, "SMTP password", secret=True),
    Option("SMTP_STARTTLS", "smtp_starttls", envspec.flag, "STARTTLS"),
    Option("MAIL_OUTBOX_DIR", "outbox_dir", envspec.text, "outbox without SMTP"),
)

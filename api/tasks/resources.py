"""The resources the product's tasks declare (queue_worker.tasks.Resource keys)."""

from __future__ import annotations

from api.mail.delivery import Mailer
from api.mail.settings import MailSettings
from queue_worker.tasks import Resource, ResourceSetup


def _mailer(setup: ResourceSetup) -> Mailer:
    return Mailer(MailSettings.from_env(setup.env))


MAILER: Resource[Mailer] = Resource("mailer", _mailer)
"""Delivers mail by SMTP or to the outbox (SMTP_*, MAIL_OUTBOX_DIR), one per consumer process."""

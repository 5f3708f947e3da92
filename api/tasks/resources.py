"""The resources the product's tasks declare (queue_worker.tasks.Resource keys)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from bson import ObjectId
from pymongo.database import Database

from api.auth.stores.account_tokens import AccountTokens, Purpose
from api.auth.stores.security_log import SecurityLog
from api.auth.stores.users import UserStore
from api.mail.delivery import Mailer
from api.mail.settings import MailSettings
from api.settings import AccountSettings
from queue_worker.tasks import Resource, ResourceSetup


def _mailer(setup: ResourceSetup) -> Mailer:
    return Mailer(MailSettings.from_env(setup.env))


MAILER: Resource[Mailer] = Resource("mailer", _mailer)
"""Delivers mail by SMTP or to the outbox (SMTP_*, MAIL_OUTBOX_DIR), one per consumer process."""


class Accounts:
    """What the account mail tasks read and write: the users, their security log, and the
    account links (whose tokens are minted here, in the job, never in the API's request)."""

    def __init__(self, settings: AccountSettings, db: Database[Any]) -> None:
        self.users = UserStore(db)
        self.security = SecurityLog(db)
        self._tokens = AccountTokens(db, settings.token_keys)
        self._base = settings.link_base

    def verify_url(self, user_id: ObjectId, email: str, *, now: datetime) -> str:
        """Mint a verification token for (user, address) and return its link."""
        token = self._tokens.issue(Purpose.VERIFY_EMAIL, user_id, now=now, email=email)
        return f"{self._base}/verify-email#token={token}"

    def reset_url(self, user_id: ObjectId, *, now: datetime) -> str:
        """Mint a password-reset token for the user and return its link."""
        token = self._tokens.issue(Purpose.RESET_PASSWORD, user_id, now=now)
        return f"{self._base}/reset-password#token={token}"


def _accounts(setup: ResourceSetup) -> Accounts:
    return Accounts(AccountSettings.from_env(setup.env), setup.db)


ACCOUNTS: Resource[Accounts] = Resource("accounts", _accounts)
"""The users, security log and account links (API_ACCOUNT_TOKEN_KEYS, API_PUBLIC_URL,
API_ACCOUNT_LINKS_URL: the consumers need the same values as the API)."""

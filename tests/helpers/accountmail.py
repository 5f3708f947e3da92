"""Running the account mail jobs in a test: a real Consumer over the test's JobStore, mailing
to an outbox directory, so a test reads the mails a user would get and follows their links."""

from __future__ import annotations

import email
import email.policy
import re
import time
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path

from api.mail.delivery import Mailer
from api.mail.settings import MailSettings
from api.settings import AccountSettings
from api.tasks.resources import ACCOUNTS, MAILER, Accounts
from queue_worker import JobStore
from queue_worker.consumer import Consumer
from queue_worker.tasks import Resources

TOKEN_RE = re.compile(r"#token=([A-Za-z0-9._~-]+)")


class MailRunner:
    """Run every ready job with a consumer, and hand out the mails that arrived since."""

    def __init__(self, job_store: JobStore, settings: AccountSettings, outbox: Path) -> None:
        self.outbox = outbox
        mailer = Mailer(MailSettings(sender="hello@example.test", outbox_dir=str(outbox)))
        accounts = Accounts(settings, job_store.db)
        resources = Resources({MAILER.name: mailer, ACCOUNTS.name: accounts})
        self.consumer = Consumer(
            job_store,
            job_store.registry,
            job_store.settings,
            owner="test-mail:1",
            concurrency=1,
            resources=resources,
        )
        self._seen: dict[str, float] = {}

    def run(self, timeout_s: float = 30) -> list[EmailMessage]:
        """Run jobs until none is ready or running; return the new (or rewritten) mails."""
        deadline = time.monotonic() + timeout_s
        while True:
            now = datetime.now(UTC)
            self.consumer.wakeup.claim_now()  # whatever the idle back-off says
            started = self.consumer.run_once(now)
            if not started and not self.consumer.slots.active:
                break
            assert time.monotonic() < deadline, "the mail jobs did not finish"
            self.consumer.wait_for_work(now, max_s=0.05)
        return self._new_mail()

    def _new_mail(self) -> list[EmailMessage]:
        found = []
        for path in sorted(self.outbox.glob("*.eml")) if self.outbox.exists() else []:
            stamp = path.stat().st_mtime_ns
            if self._seen.get(path.name) != stamp:
                self._seen[path.name] = stamp
                parsed = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
                assert isinstance(parsed, EmailMessage)
                found.append(parsed)
        return found


def body_of(message: EmailMessage) -> str:
    part = message.get_body(("plain",))
    assert part is not None
    return str(part.get_content())


def token_in(message: EmailMessage) -> str:
    """Return the token of the one link in a mail."""
    found = TOKEN_RE.findall(body_of(message))
    assert len(found) == 1, body_of(message)
    return str(found[0])


def only(messages: list[EmailMessage], subject: str) -> EmailMessage:
    """Return the one message with `subject`."""
    matching = [m for m in messages if m["Subject"] == subject]
    assert len(matching) == 1, [m["Subject"] for m in messages]
    return matching[0]


def reset_token(runner: MailRunner) -> str:
    """Run the mail jobs and return the token of the one password-reset mail."""
    return token_in(only(runner.run(), "Reset your password"))

"""The product's tasks (api/tasks): the welcome email (real SMTP server on loopback, and the
outbox) and the login's security event, each reaching mail and the database through declared
resources."""

from __future__ import annotations

import email
import email.policy
import errno
import os
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import localdb
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from bson import ObjectId
from mailhelpers import TOKEN_KEYS, Mailbox, mail_ctx, outbox_settings, smtp_settings
from pymongo.database import Database

from api.auth.stores.security_log import COLLECTION as SECURITY_EVENTS
from api.mail.delivery import MailDeliveryError, Mailer, send_smtp
from api.mail.messages import welcome_message
from api.mail.settings import MailSettings
from api.settings import AccountSettings
from api.tasks import accounts
from api.tasks.resources import ACCOUNTS, MAILER, Accounts
from queue_worker.consumer import Consumer
from queue_worker.errors import NonRetryableError, RetryAfter
from queue_worker.job import JobState
from queue_worker.settings import QueueSettings
from queue_worker.store import JobStore
from queue_worker.tasks import Resources, load_task_modules, registry

USER_ID = str(ObjectId())


def test_welcome_email_arrives_at_a_real_smtp_server(
    db: Database[Any], smtp_server: tuple[Mailbox, int], tmp_path: Path
) -> None:
    """user.created delivers the welcome email over SMTP, its Message-ID derived from the job."""
    mailbox, port = smtp_server
    job_id = str(ObjectId())
    ctx = mail_ctx(job_id, smtp_settings(port, tmp_path), db)
    payload = {"user_id": USER_ID, "email": "ada@example.test", "name": "Ada"}
    result = accounts.user_created(payload, ctx)
    assert len(mailbox.messages) == 1
    msg = mailbox.messages[0]
    assert msg["To"] == "ada@example.test"  # the sign-up's own name is in no mail
    assert msg["From"] == "hello@example.test"
    assert msg["Subject"] == "Welcome aboard"
    assert msg["Message-ID"] == f"<{job_id}@example.test>"
    body = msg.get_body(("plain",))
    assert body is not None and body.get_content().startswith("Hello,")
    assert result == {"via": "smtp", "message_id": f"<{job_id}@example.test>"}
    assert not (tmp_path / "outbox").exists()


def test_rerun_of_the_same_job_sends_the_same_message_id(
    db: Database[Any], smtp_server: tuple[Mailbox, int], tmp_path: Path
) -> None:
    """Re-running user.created for one job re-sends the same Message-ID (receivers dedupe)."""
    mailbox, port = smtp_server
    ctx = mail_ctx(str(ObjectId()), smtp_settings(port, tmp_path), db)
    for _ in range(2):
        accounts.user_created({"user_id": USER_ID, "email": "ada@example.test"}, ctx)
    assert len({m["Message-ID"] for m in mailbox.messages}) == 1


def test_refused_recipient_is_a_non_retryable_failure(
    db: Database[Any], smtp_server: tuple[Mailbox, int], tmp_path: Path
) -> None:
    """A 5xx recipient refusal fails the job without further attempts."""
    _, port = smtp_server
    ctx = mail_ctx(str(ObjectId()), smtp_settings(port, tmp_path), db)
    with pytest.raises(NonRetryableError, match="550"):
        accounts.user_created({"user_id": USER_ID, "email": "nobody@example.test"}, ctx)


def test_temporarily_refused_recipient_is_retryable(
    db: Database[Any], smtp_server: tuple[Mailbox, int], tmp_path: Path
) -> None:
    """A 4xx recipient refusal is a retryable failure."""
    _, port = smtp_server
    ctx = mail_ctx(str(ObjectId()), smtp_settings(port, tmp_path), db)
    with pytest.raises(MailDeliveryError, match="451"):
        accounts.user_created({"user_id": USER_ID, "email": "busy@example.test"}, ctx)


def test_unreachable_smtp_server_is_retryable(db: Database[Any], tmp_path: Path) -> None:
    """A refused connection is a retryable failure, not a dead job."""
    ctx = mail_ctx(str(ObjectId()), smtp_settings(localdb.free_port(), tmp_path), db)
    with pytest.raises(MailDeliveryError, match="unavailable"):
        accounts.user_created({"user_id": USER_ID, "email": "ada@example.test"}, ctx)


def test_smtp_errors_never_show_the_password(tmp_path: Path) -> None:
    """The config repr and delivery errors leave the SMTP password out."""
    config = MailSettings(
        smtp_host="127.0.0.1", smtp_port=localdb.free_port(), smtp_user="u", smtp_password="s3cr3t"
    )
    assert "s3cr3t" not in repr(config)
    message = welcome_message(to="a@example.test", sender="x@example.test", key="k")
    with pytest.raises(MailDeliveryError) as info:
        send_smtp(message, config)
    assert "s3cr3t" not in str(info.value)


def test_without_smtp_host_the_message_goes_to_the_outbox(
    db: Database[Any], tmp_path: Path
) -> None:
    """With no SMTP host the email is written as <job id>.eml; a re-run overwrites it."""
    job_id = str(ObjectId())
    ctx = mail_ctx(job_id, outbox_settings(tmp_path), db)
    accounts.user_created({"user_id": USER_ID, "email": "ada@example.test", "name": "Ada"}, ctx)
    accounts.user_created({"user_id": USER_ID, "email": "ada@example.test", "name": "Ada"}, ctx)
    files = sorted(p.name for p in (tmp_path / "ob").iterdir())
    assert files == [f"{job_id}.eml"]  # no duplicate, no leftover temp file
    parsed = email.message_from_bytes((tmp_path / "ob" / files[0]).read_bytes())
    assert parsed["To"] == "ada@example.test"
    assert parsed["Message-ID"] == f"<{job_id}@example.test>"


@pytest.mark.parametrize(
    "payload",
    [{}, {"email": "not-an-address"}, {"email": "a@b.test\r\nBcc: x@y.test"}, {"email": 5}],
)
def test_bad_welcome_payload_is_non_retryable(
    db: Database[Any], payload: dict[str, Any], tmp_path: Path
) -> None:
    """A payload without a usable address (or with header injection) fails without retries."""
    ctx = mail_ctx(str(ObjectId()), outbox_settings(tmp_path), db)
    with pytest.raises(NonRetryableError):
        accounts.user_created(payload, ctx)


def test_the_login_event_is_recorded_once_per_job(db: Database[Any], tmp_path: Path) -> None:
    """user.login writes one login_succeeded security event per job, even when run twice."""
    job_id = str(ObjectId())
    ctx = mail_ctx(job_id, outbox_settings(tmp_path), db)
    payload = {
        "user_id": USER_ID,
        "ip": "10.0.0.1",
        "user_agent": "curl/8",
        "at": "2026-01-02T03:04:05Z",
    }
    accounts.user_login(payload, ctx)
    accounts.user_login(payload, ctx)
    entries = list(db[SECURITY_EVENTS].find())
    assert len(entries) == 1
    entry = entries[0]
    assert entry["_id"] == ObjectId(job_id)
    assert (entry["user_id"], entry["type"]) == (ObjectId(USER_ID), "login_succeeded")
    assert (entry["ip"], entry["user_agent"]) == ("10.0.0.1", "curl/8")
    assert entry["at"] == datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


@pytest.mark.parametrize(
    "payload",
    [{"ip": "1.2.3.4", "at": "2026-01-01T00:00:00Z"}, {"user_id": USER_ID, "at": "yesterday"}],
)
def test_bad_login_payload_is_non_retryable(
    payload: dict[str, Any], db: Database[Any], tmp_path: Path
) -> None:
    """A login payload without a user or with an unreadable time fails without retries."""
    with pytest.raises(NonRetryableError):
        accounts.user_login(payload, mail_ctx(str(ObjectId()), outbox_settings(tmp_path), db))
    assert db[SECURITY_EVENTS].count_documents({}) == 0


def test_a_rerun_of_a_token_mail_sends_a_new_live_link(db: Database[Any], tmp_path: Path) -> None:
    """A token mail that runs again mints a new token (the first dies) and names the attempt in
    its Message-ID, so a receiver dropping duplicates keeps the mail whose link works."""
    user_id = db.users.insert_one(
        {"email": "ada@example.test", "name": "Ada", "email_verified": False}
    ).inserted_id
    job_id = str(ObjectId())
    payload = {"user_id": str(user_id), "email": "ada@example.test", "name": "Ada"}
    first = mail_ctx(job_id, outbox_settings(tmp_path), db)
    accounts.user_created(payload, first)
    second = mail_ctx(job_id, outbox_settings(tmp_path), db)
    second.attempt = 2
    accounts.user_created(payload, second)
    raw = (tmp_path / "ob" / f"{job_id}.eml").read_bytes()
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert parsed["Message-ID"] == f"<{job_id}.2@example.test>"
    assert "/account/verify-email#token=t1." in parsed.get_body().get_content()
    assert db.account_tokens.count_documents({}) == 1  # the new token replaced the first


def test_a_consumer_runs_the_account_tasks_end_to_end(
    smtp_server: tuple[Mailbox, int], tmp_path: Path, db: Database[Any]
) -> None:
    """A real Consumer runs enqueued user.created and user.login jobs: mail sent, audit written."""
    load_task_modules(["api.tasks"])
    mailbox, port = smtp_server
    mail = smtp_settings(port, tmp_path)
    settings = QueueSettings()
    store = JobStore(db, settings, registry=registry)
    store.ensure_indexes()
    welcome = store.enqueue("user.created", {"user_id": USER_ID, "email": "ada@example.test"})
    login = store.enqueue("user.login", {"user_id": USER_ID, "at": "2026-01-01T00:00:00+00:00"})
    accounts_resource = Accounts(AccountSettings(TOKEN_KEYS), db)
    resources = Resources({MAILER.name: Mailer(mail), ACCOUNTS.name: accounts_resource})
    consumer = Consumer(
        store, registry, settings, owner="test:1", concurrency=2, resources=resources
    )
    deadline = time.monotonic() + 30
    while consumer.jobs_finished < 2:
        assert time.monotonic() < deadline, "jobs did not finish"
        consumer.run_once(datetime.now(UTC))
        consumer.wait_for_work(datetime.now(UTC))
    consumer.drain(5)
    done = {job.id: job for job in (store.get(welcome.id), store.get(login.id)) if job}
    assert [done[welcome.id].state, done[login.id].state] == [JobState.SUCCEEDED] * 2
    assert [m["Message-ID"] for m in mailbox.messages] == [f"<{welcome.id}@example.test>"]
    assert db[SECURITY_EVENTS].count_documents({"_id": ObjectId(login.id)}) == 1


def check_login(
    server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
) -> AuthResult:
    """Accept user 'mailer' with password 'letmein' only."""
    ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (
        b"mailer",
        b"letmein",
    )
    return AuthResult(success=ok, handled=False)


@pytest.mark.parametrize(("password", "delivered"), [("letmein", True), ("wrong-pw", False)])
def test_smtp_login_uses_the_configured_credentials(
    db: Database[Any], password: str, delivered: bool, tmp_path: Path
) -> None:
    """With SMTP_USER set the task logs in; a refused login is retryable and hides the password."""
    mailbox = Mailbox()
    port = localdb.free_port()
    controller = Controller(
        mailbox, hostname="127.0.0.1", port=port, authenticator=check_login, auth_require_tls=False,
        auth_exclude_mechanism=["LOGIN"],  # one mechanism: smtplib stops at its 535
    )  # fmt: skip
    controller.start()
    try:
        settings = replace(
            smtp_settings(port, tmp_path), smtp_user="mailer", smtp_password=password
        )
        ctx = mail_ctx(str(ObjectId()), settings, db)
        if delivered:
            accounts.user_created({"user_id": USER_ID, "email": "ada@example.test"}, ctx)
            assert len(mailbox.messages) == 1
        else:
            with pytest.raises(MailDeliveryError, match="login failed") as info:
                accounts.user_created({"user_id": USER_ID, "email": "ada@example.test"}, ctx)
            assert password not in str(info.value) and not mailbox.messages
    finally:
        controller.stop()


@pytest.mark.parametrize(
    "name",
    [
        "\u00e9 <evil@attacker.example>",
        '"Ada" <evil@attacker.example>',
        "Ada, evil@attacker.example",
        "Ada\r\nBcc: evil@attacker.example",
        "Ünïcödé <x@y>, Jr.",
        "=?utf-8?q?evil=40attacker.example?=",
    ],
)
def test_hostile_names_never_change_where_the_welcome_mail_goes(
    db: Database[Any], smtp_server: tuple[Mailbox, int], tmp_path: Path, name: str
) -> None:
    """Whatever the name holds (angle brackets, quotes, commas, CR/LF, non-ASCII, an encoded
    word), the To header parses back to exactly the user's address, and no Bcc appears."""
    mailbox, port = smtp_server
    ctx = mail_ctx(str(ObjectId()), smtp_settings(port, tmp_path), db)
    accounts.user_created({"user_id": USER_ID, "email": "ada@example.com", "name": name}, ctx)
    msg = mailbox.messages[0]
    assert [a.addr_spec for a in msg["To"].addresses] == ["ada@example.com"]
    assert msg["Bcc"] is None and "attacker" not in str(msg["To"].addresses[0].addr_spec)


def test_a_signed_up_idn_address_is_mailed(
    smtp_server: tuple[Mailbox, int], tmp_path: Path, db: Database[Any]
) -> None:
    """The address an IDN sign-up stores (IDNA-encoded) is delivered over plain SMTP."""
    mailbox, port = smtp_server
    ctx = mail_ctx(str(ObjectId()), smtp_settings(port, tmp_path), db)
    accounts.user_created({"user_id": USER_ID, "email": "ada@xn--bcher-kva.de", "name": "Ädä"}, ctx)
    assert [a.addr_spec for a in mailbox.messages[0]["To"].addresses] == ["ada@xn--bcher-kva.de"]


def test_a_full_outbox_disk_is_retried_later_not_a_dead_mail(
    db: Database[Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A full (or read-only) outbox disk fails the attempt with RetryAfter of at least a minute,
    and leaves no temp file; the message is not at fault, so it is not buried."""

    def disk_full(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", disk_full)
    ctx = mail_ctx(str(ObjectId()), outbox_settings(tmp_path), db)
    with pytest.raises(RetryAfter) as raised:
        accounts.user_created({"user_id": USER_ID, "email": "ada@example.com", "name": "Ada"}, ctx)
    assert raised.value.delay_s >= 60
    assert list((tmp_path / "ob").iterdir()) == []


def test_the_welcome_mail_keeps_trying_through_a_long_outage() -> None:
    """user.created is declared with many attempts (an outage of a relay or a disk can last)."""
    load_task_modules(["api.tasks"])
    assert (registry.get("user.created").max_attempts or 0) >= 20


def test_a_name_chosen_at_sign_up_reaches_no_mail(db: Database, tmp_path: Path) -> None:
    """A sign-up's name is the signer's own text: someone signing up with another person's
    address could make it read "Your bank says: call ...". It appears in no header and no body
    of the welcome mail."""
    job_id = str(ObjectId())
    ctx = mail_ctx(job_id, outbox_settings(tmp_path), db)
    hostile = "Security team: your account is locked, call +1 555 0100 <evil@example.net>"
    accounts.user_created({"user_id": USER_ID, "email": "ada@example.test", "name": hostile}, ctx)
    raw = (tmp_path / "ob" / f"{job_id}.eml").read_bytes().decode()
    assert "555 0100" not in raw and "evil@example.net" not in raw and "locked" not in raw

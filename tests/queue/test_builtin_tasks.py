"""The built-in tasks: welcome email (real SMTP server on loopback, and the outbox), login audit,
and the gated benchmark tasks."""

from __future__ import annotations

import email
import email.policy
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import localdb
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from bson import ObjectId
from pymongo.database import Database

from queue_worker.builtin import register_bench_tasks, users
from queue_worker.builtin.bench import BENCH_RUNS, BenchFailure
from queue_worker.consumer import Consumer
from queue_worker.errors import NonRetryableError
from queue_worker.job import JobState
from queue_worker.mail import MailConfig, MailDeliveryError, send_smtp, welcome_message
from queue_worker.settings import QueueSettings
from queue_worker.store import JobStore
from queue_worker.tasks import TaskRegistry, registry

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Context:
    """A TaskContext as a consumer builds it: job identity plus the process's db and settings."""

    job_id: str
    db: Database[Any] | None = None
    settings: Any = None
    attempt: int = 1
    lease_token: str = "token-1"
    stop: bool = False

    def should_stop(self) -> bool:
        return self.stop


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


@pytest.fixture
def smtp_server() -> Iterator[tuple[Mailbox, int]]:
    """A real SMTP server on a free loopback port."""
    mailbox = Mailbox()
    port = localdb.free_port()
    controller = Controller(mailbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield mailbox, port
    finally:
        controller.stop()


def smtp_settings(port: int, tmp_path: Path) -> QueueSettings:
    return QueueSettings(
        smtp_host="127.0.0.1",
        smtp_port=port,
        smtp_from="hello@example.test",
        outbox_dir=str(tmp_path / "outbox"),
    )


def outbox_settings(tmp_path: Path) -> QueueSettings:
    return QueueSettings(smtp_from="hello@example.test", outbox_dir=str(tmp_path / "ob"))


def test_welcome_email_arrives_at_a_real_smtp_server(
    smtp_server: tuple[Mailbox, int], tmp_path: Path
) -> None:
    """user.created delivers the welcome email over SMTP, its Message-ID derived from the job."""
    mailbox, port = smtp_server
    job_id = str(ObjectId())
    ctx = Context(job_id=job_id, settings=smtp_settings(port, tmp_path))
    payload = {"user_id": "u1", "email": "ada@example.test", "name": "Ada"}
    result = users.user_created(payload, ctx)
    assert len(mailbox.messages) == 1
    msg = mailbox.messages[0]
    assert msg["To"] == "Ada <ada@example.test>"
    assert msg["From"] == "hello@example.test"
    assert msg["Subject"] == "Welcome aboard"
    assert msg["Message-ID"] == f"<{job_id}@example.test>"
    body = msg.get_body(("plain",))
    assert body is not None and "Hello Ada" in body.get_content()
    assert result == {"via": "smtp", "message_id": f"<{job_id}@example.test>"}
    assert not (tmp_path / "outbox").exists()


def test_rerun_of_the_same_job_sends_the_same_message_id(
    smtp_server: tuple[Mailbox, int], tmp_path: Path
) -> None:
    """Re-running user.created for one job re-sends the same Message-ID (receivers dedupe)."""
    mailbox, port = smtp_server
    ctx = Context(job_id=str(ObjectId()), settings=smtp_settings(port, tmp_path))
    for _ in range(2):
        users.user_created({"email": "ada@example.test"}, ctx)
    assert len({m["Message-ID"] for m in mailbox.messages}) == 1


def test_refused_recipient_is_a_non_retryable_failure(
    smtp_server: tuple[Mailbox, int], tmp_path: Path
) -> None:
    """A 5xx recipient refusal fails the job without further attempts."""
    _, port = smtp_server
    ctx = Context(job_id=str(ObjectId()), settings=smtp_settings(port, tmp_path))
    with pytest.raises(NonRetryableError, match="550"):
        users.user_created({"email": "nobody@example.test"}, ctx)


def test_temporarily_refused_recipient_is_retryable(
    smtp_server: tuple[Mailbox, int], tmp_path: Path
) -> None:
    """A 4xx recipient refusal is a retryable failure."""
    _, port = smtp_server
    ctx = Context(job_id=str(ObjectId()), settings=smtp_settings(port, tmp_path))
    with pytest.raises(MailDeliveryError, match="451"):
        users.user_created({"email": "busy@example.test"}, ctx)


def test_unreachable_smtp_server_is_retryable(tmp_path: Path) -> None:
    """A refused connection is a retryable failure, not a dead job."""
    ctx = Context(job_id=str(ObjectId()), settings=smtp_settings(localdb.free_port(), tmp_path))
    with pytest.raises(MailDeliveryError, match="unavailable"):
        users.user_created({"email": "ada@example.test"}, ctx)


def test_smtp_errors_never_show_the_password(tmp_path: Path) -> None:
    """The config repr and delivery errors leave the SMTP password out."""
    config = MailConfig(host="127.0.0.1", port=localdb.free_port(), user="u", password="s3cr3t")
    assert "s3cr3t" not in repr(config)
    message = welcome_message(to="a@example.test", name="", sender="x@example.test", key="k")
    with pytest.raises(MailDeliveryError) as info:
        send_smtp(message, config)
    assert "s3cr3t" not in str(info.value)


def test_without_smtp_host_the_message_goes_to_the_outbox(tmp_path: Path) -> None:
    """With no SMTP host the email is written as <job id>.eml; a re-run overwrites it."""
    job_id = str(ObjectId())
    ctx = Context(job_id=job_id, settings=outbox_settings(tmp_path))
    users.user_created({"email": "ada@example.test", "name": "Ada"}, ctx)
    users.user_created({"email": "ada@example.test", "name": "Ada"}, ctx)
    files = sorted(p.name for p in (tmp_path / "ob").iterdir())
    assert files == [f"{job_id}.eml"]  # no duplicate, no leftover temp file
    parsed = email.message_from_bytes((tmp_path / "ob" / files[0]).read_bytes())
    assert parsed["To"] == "Ada <ada@example.test>"
    assert parsed["Message-ID"] == f"<{job_id}@example.test>"


@pytest.mark.parametrize(
    "payload",
    [{}, {"email": "not-an-address"}, {"email": "a@b.test\r\nBcc: x@y.test"}, {"email": 5}],
)
def test_bad_welcome_payload_is_non_retryable(payload: dict[str, Any], tmp_path: Path) -> None:
    """A payload without a usable address (or with header injection) fails without retries."""
    ctx = Context(job_id=str(ObjectId()), settings=outbox_settings(tmp_path))
    with pytest.raises(NonRetryableError):
        users.user_created(payload, ctx)


def test_login_audit_is_recorded_once_per_job(db: Database[Any]) -> None:
    """user.login writes one audit entry per job, even when the job runs twice."""
    job_id = str(ObjectId())
    ctx = Context(job_id=job_id, db=db)
    payload = {
        "user_id": "u1",
        "ip": "10.0.0.1",
        "user_agent": "curl/8",
        "at": "2026-01-02T03:04:05Z",
    }
    users.user_login(payload, ctx)
    users.user_login(payload, ctx)
    entries = list(db[users.LOGIN_AUDIT].find())
    assert len(entries) == 1
    entry = entries[0]
    assert entry["_id"] == ObjectId(job_id)
    assert (entry["user_id"], entry["ip"], entry["user_agent"]) == ("u1", "10.0.0.1", "curl/8")
    assert entry["at"] == datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


@pytest.mark.parametrize(
    "payload",
    [{"ip": "1.2.3.4", "at": "2026-01-01T00:00:00Z"}, {"user_id": "u", "at": "yesterday"}],
)
def test_bad_login_payload_is_non_retryable(payload: dict[str, Any], db: Database[Any]) -> None:
    """A login payload without a user or with an unreadable time fails without retries."""
    with pytest.raises(NonRetryableError):
        users.user_login(payload, Context(job_id=str(ObjectId()), db=db))
    assert db[users.LOGIN_AUDIT].count_documents({}) == 0


def test_bench_tasks_are_registered_only_on_request() -> None:
    """Importing the built-ins registers no bench.* task; register_bench_tasks does."""
    assert {"user.created", "user.login"} <= set(registry.names())
    assert not [name for name in registry.names() if name.startswith("bench.")]
    own = TaskRegistry()
    register_bench_tasks(own)
    register_bench_tasks(own)  # idempotent
    assert own.names() == ["bench.crash", "bench.fail", "bench.noop", "bench.sleep"]


def test_bench_tasks_record_each_execution_when_asked(db: Database[Any]) -> None:
    """bench.noop/fail record one bench_runs document per execution with {"record": true}."""
    own = TaskRegistry()
    register_bench_tasks(own)
    ctx = Context(job_id=str(ObjectId()), db=db, lease_token="t-9", attempt=2)
    own.get("bench.noop").handler({"record": True}, ctx)
    own.get("bench.noop").handler({}, ctx)
    with pytest.raises(BenchFailure):
        own.get("bench.fail").handler({"record": True}, ctx)
    runs = list(db[BENCH_RUNS].find({}, {"_id": 0, "task": 1, "job_id": 1, "lease_token": 1}))
    assert runs == [
        {"task": "bench.noop", "job_id": ctx.job_id, "lease_token": "t-9"},
        {"task": "bench.fail", "job_id": ctx.job_id, "lease_token": "t-9"},
    ]


def test_bench_sleep_stops_early_when_the_job_should_stop() -> None:
    """bench.sleep returns as soon as should_stop() is true, unless told to ignore it."""
    own = TaskRegistry()
    register_bench_tasks(own)
    handler = own.get("bench.sleep").handler
    stopped = handler({"ms": 60_000}, Context(job_id="j", stop=True))
    assert stopped["stopped"] is True and stopped["slept_ms"] < 1000
    assert handler({"ms": 1}, Context(job_id="j"))["stopped"] is False
    with pytest.raises(NonRetryableError):
        handler({"ms": "soon"}, Context(job_id="j"))


def test_bench_crash_kills_its_own_process_with_sigkill() -> None:
    """bench.crash ends its process by SIGKILL, leaving no chance for cleanup code."""
    code = (
        "from queue_worker.tasks import TaskRegistry\n"
        "from queue_worker.builtin import register_bench_tasks\n"
        "r = TaskRegistry(); register_bench_tasks(r)\n"
        "try:\n    r.get('bench.crash').handler({}, None)\n"
        "finally:\n    print('cleanup ran')\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == -signal.SIGKILL
    assert "cleanup ran" not in proc.stdout


def test_a_consumer_runs_the_builtin_tasks_end_to_end(
    smtp_server: tuple[Mailbox, int], tmp_path: Path, db: Database[Any]
) -> None:
    """A real Consumer runs enqueued user.created and user.login jobs: mail sent, audit written."""
    mailbox, port = smtp_server
    settings = smtp_settings(port, tmp_path)
    store = JobStore(db, settings, registry=registry)
    store.ensure_indexes()
    welcome = store.enqueue("user.created", {"user_id": "u1", "email": "ada@example.test"})
    login = store.enqueue("user.login", {"user_id": "u1", "at": "2026-01-01T00:00:00+00:00"})
    consumer = Consumer(store, registry, settings, owner="test:1", concurrency=2)
    deadline = time.monotonic() + 30
    while consumer.jobs_finished < 2:
        assert time.monotonic() < deadline, "jobs did not finish"
        consumer.run_once(datetime.now(UTC))
        time.sleep(0.02)
    consumer.drain(5)
    done = {job.id: job for job in (store.get(welcome.id), store.get(login.id)) if job}
    assert [done[welcome.id].state, done[login.id].state] == [JobState.SUCCEEDED] * 2
    assert [m["Message-ID"] for m in mailbox.messages] == [f"<{welcome.id}@example.test>"]
    assert db[users.LOGIN_AUDIT].count_documents({"_id": ObjectId(login.id)}) == 1


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
    password: str, delivered: bool, tmp_path: Path
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
        ctx = Context(job_id=str(ObjectId()), settings=settings)
        if delivered:
            users.user_created({"email": "ada@example.test"}, ctx)
            assert len(mailbox.messages) == 1
        else:
            with pytest.raises(MailDeliveryError, match="login failed") as info:
                users.user_created({"email": "ada@example.test"}, ctx)
            assert password not in str(info.value) and not mailbox.messages
    finally:
        controller.stop()

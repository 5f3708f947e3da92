"""The jobs account flows cause (the welcome mail, the mailed links, security notices), enqueued
so that an event never fails the flow that caused it, and never fails silently either.

Sign-up enqueues `user.created` with idempotency key `user.created:<user_id>`. If the queue
cannot take it, the sign-up still succeeds; the account keeps `welcome_enqueued: false` and the
next login enqueues it again under the same key, so the welcome job is created exactly once.
A login's own security-log line is written by the login ledger (stores/ledger.py), not a job;
`user.login` stays registered so that jobs an earlier version enqueued still run.

Failures are told apart: the database not answering (ServiceUnavailable, through admission) is
retried ENQUEUE_ATTEMPTS times and counted in db_operation_errors_total{operation="queue.enqueue"};
anything else is a bug (a refused payload, an unknown task), logged with its traceback and
counted in api_event_errors_total{task}, so it cannot hide as "the queue was down".
"""

from __future__ import annotations

import logging
from typing import Any

from bson import ObjectId

from api.admission import Admission
from api.auth.stores.users import UserStore
from api.errors import ServiceUnavailable
from api.metrics import ApiMetrics
from queue_worker import JobStore

log = logging.getLogger("api.auth")
ENQUEUE_ATTEMPTS = 3
WELCOME = "user.created"
LOGIN = "user.login"
VERIFY_EMAIL = "user.verify_email"
PASSWORD_RESET = "user.password_reset"
SECURITY_NOTICE = "user.security_notice"
TASKS = (WELCOME, LOGIN, VERIFY_EMAIL, PASSWORD_RESET, SECURITY_NOTICE)


class AccountEvents:
    """Enqueue the jobs of account events through the queue's store."""

    def __init__(
        self, queue: JobStore, users: UserStore, admission: Admission, metrics: ApiMetrics
    ) -> None:
        self._queue = queue
        self._users = users
        self._admission = admission
        self._metrics = metrics
        for task in TASKS:
            metrics.event_errors.labels(task)  # exported from the start, at 0

    def welcome(self, user_id: ObjectId, email: str, name: str) -> None:
        """Enqueue the welcome mail once per account; mark the account when it is queued."""
        payload = {"user_id": str(user_id), "email": email, "name": name}
        if not self._enqueue(WELCOME, payload, idempotency_key=f"{WELCOME}:{user_id}"):
            return
        try:
            with self._admission.operation("users.mark_welcome"):
                self._users.mark_welcome_enqueued(user_id)
        except ServiceUnavailable:
            pass  # The idempotency key makes the retry at next login harmless.

    def verification(self, user_id: ObjectId, *, window: str) -> None:
        """Enqueue a fresh verification mail (one per user and cooldown window)."""
        self._enqueue(
            VERIFY_EMAIL,
            {"user_id": str(user_id)},
            idempotency_key=f"{VERIFY_EMAIL}:{user_id}:{window}",
        )

    def password_reset(self, email: str, *, request_id: str) -> None:
        """Enqueue the reset mail for an address; the job finds out whether it has an account,
        so the API does the same work for every address."""
        self._enqueue(
            PASSWORD_RESET, {"email": email}, idempotency_key=f"{PASSWORD_RESET}:{request_id}"
        )

    def security_notice(
        self, user_id: ObjectId, event_id: ObjectId, event: str, *, where: str | None
    ) -> None:
        """Enqueue the mail about one security event (one mail per event); `where` is the
        client address it came from, if any."""
        payload = {"user_id": str(user_id), "event_id": str(event_id), "event": event}
        if where:
            payload["where"] = where
        self._enqueue(
            SECURITY_NOTICE,
            payload,
            idempotency_key=f"{SECURITY_NOTICE}:{event_id}",
        )

    def _enqueue(self, task: str, payload: dict[str, Any], *, idempotency_key: str) -> bool:
        for _ in range(ENQUEUE_ATTEMPTS):
            try:
                with self._admission.operation("queue.enqueue"):
                    self._queue.enqueue(task, payload, idempotency_key=idempotency_key)
                return True
            except ServiceUnavailable:
                continue  # counted by admission; the database may answer the next try
            except Exception:  # noqa: BLE001 - a bug must not fail the account flow, nor hide
                self._metrics.event_errors.labels(task).inc()
                log.exception("enqueue of %s failed", task)
                return False
        log.warning("enqueue of %s failed %d times; will retry later", task, ENQUEUE_ATTEMPTS)
        return False

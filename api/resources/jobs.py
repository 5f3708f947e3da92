"""The /jobs resources: submit an allowlisted task, read your own job.

Only tasks listed in API_SUBMITTABLE_TASKS (none by default) can be submitted by clients
(account events such as `user.created` are enqueued by the API itself, never by clients), with a
priority of at most API_MAX_CLIENT_PRIORITY, and a user may have at most
API_MAX_ACTIVE_JOBS_PER_USER pending or running jobs (429 past them): one client cannot occupy
every consumer. A job is visible only to the
user who submitted it; anyone else gets the same 404 as for an unknown id. Idempotency keys are
scoped to the submitting user, so one user's key can never return another user's job; a key that
already has a job returns it before any limit is checked, so a client's retry is never a 429.
"""

from __future__ import annotations

import falcon

from api.admission import Admission
from api.auth.context import Principal
from api.errors import NotFound, PayloadTooLarge, RateLimited, ValidationFailed
from api.openapi import Operation
from api.schemas import JobAccepted, JobRequest, JobStatus, decode, send
from api.settings import ApiSettings
from queue_worker import InvalidJobError, JobStore
from queue_worker.errors import PayloadError, PayloadTooLargeError

ACTIVE_JOBS_RETRY_S = 5


class JobsResource:
    auth_required = True
    docs = {
        "post": Operation(
            "Submit a job (only allowlisted tasks)",
            "jobs",
            ok_status=202,
            request=JobRequest,
            response=JobAccepted,
            bearer=True,
            errors=(400, 401, 408, 413, 415, 422, 429, 503),
            description="Clients may set a priority up to API_MAX_CLIENT_PRIORITY; a user with "
            "API_MAX_ACTIVE_JOBS_PER_USER pending or running jobs gets 429 with Retry-After.",
        )
    }

    def __init__(self, queue: JobStore, settings: ApiSettings, admission: Admission) -> None:
        self._queue = queue
        self._allowed = settings.submittable_tasks
        self._max_priority = settings.max_client_priority
        self._max_active = settings.max_active_jobs_per_user
        self._admission = admission

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        body = decode(req.context.body, JobRequest)
        if body.task not in self._allowed:
            raise ValidationFailed("This task cannot be submitted.", code="task_not_allowed")
        if body.priority is not None and body.priority > self._max_priority:
            raise ValidationFailed(
                f"A job's priority may be at most {self._max_priority}.", code="priority_too_high"
            )
        principal: Principal = req.context.principal
        owner = str(principal.user_id)
        key = f"{owner}:{body.idempotency_key}" if body.idempotency_key is not None else None
        if key is not None:
            # A retry of a submission that went through gets its job back, even at the limit.
            with self._admission.operation("queue.find_by_key"):
                existing = self._queue.find_by_key(key)
            if existing is not None:
                send(resp, JobAccepted(existing.id, existing.state.value), 202)
                return
        with self._admission.operation("queue.count_active"):
            active = self._queue.count_active(owner, limit=self._max_active)
        if active >= self._max_active:
            # Approximate under concurrent submissions by one user (count, then enqueue).
            raise RateLimited(ACTIVE_JOBS_RETRY_S, scope="active_jobs")
        try:
            with self._admission.operation("queue.enqueue"):
                job = self._queue.enqueue(
                    body.task,
                    body.payload,
                    priority=body.priority,
                    delay_s=body.delay_s,
                    idempotency_key=key,
                    submitted_by=owner,
                )
        except PayloadTooLargeError:
            raise PayloadTooLarge("The payload is too large to store.") from None
        except PayloadError as exc:
            raise ValidationFailed(str(exc), code="invalid_payload") from None
        except InvalidJobError as exc:
            raise ValidationFailed(str(exc), code="invalid_job") from None
        send(resp, JobAccepted(job.id, job.state.value), 202)


class JobResource:
    auth_required = True
    docs = {
        "get": Operation(
            "State, attempts, result or last error of one of your jobs",
            "jobs",
            response=JobStatus,
            bearer=True,
            errors=(401, 404, 503),
        )
    }

    def __init__(self, queue: JobStore, admission: Admission) -> None:
        self._queue = queue
        self._admission = admission

    def on_get(self, req: falcon.Request, resp: falcon.Response, job_id: str) -> None:
        principal: Principal = req.context.principal
        with self._admission.operation("queue.get"):
            job = self._queue.get(job_id)
        if job is None or job.submitted_by != str(principal.user_id):
            raise NotFound()
        send(
            resp,
            JobStatus(
                id=job.id,
                task=job.task,
                state=job.state.value,
                attempts=job.attempts,
                max_attempts=job.max_attempts,
                result=job.result,
                last_error=job.last_error,
                created_at=job.created_at,
                run_at=job.run_at,
                started_at=job.started_at,
                finished_at=job.finished_at,
            ),
        )

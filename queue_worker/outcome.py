"""What running a handler came to: a typed `Outcome`, and the one function that produces it.

Succeeded(result)                       the handler returned
Failed(error, retryable, retry_after_s) it raised; NonRetryableError -> not retryable,
                                        RetryAfter -> retryable no sooner than its delay
Expired(reason)                         not run: claimed after the job's start_by, or a keyed
                                        job whose enqueuer died before it found the key's
                                        earlier, finished job (idempotency.py)
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from queue_worker.errors import NonRetryableError, RetryAfter
from queue_worker.job import Job
from queue_worker.tasks import TaskContext, TaskSpec

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Succeeded:
    """The handler returned `result` (stored on the job if small and JSON-able)."""

    result: Any = None


@dataclass(frozen=True)
class Failed:
    """The attempt failed; `retry_after_s` is the least delay before the next attempt."""

    error: BaseException | str
    retryable: bool = True
    retry_after_s: float = 0.0


@dataclass(frozen=True)
class Expired:
    """The job is no longer wanted (claimed after its start_by time, or found to duplicate an
    earlier job of its key): it is cancelled, not run."""

    reason: str = "not started by its start_by time"


Outcome = Succeeded | Failed | Expired


def run_handler(spec: TaskSpec | None, job: Job, ctx: TaskContext) -> Outcome:
    """Run the job's handler and say how it ended; never raises."""
    if spec is None:
        return Failed(f"UnknownTaskError: no task named {job.task!r} here", retryable=False)
    try:
        return Succeeded(spec.handler(dict(job.payload), ctx))
    except NonRetryableError as exc:
        return Failed(exc, retryable=False)
    except RetryAfter as exc:
        return Failed(exc, retry_after_s=exc.delay_s)
    except Exception as exc:  # any other handler error is a retryable failed attempt
        log.info("job %s (%s) failed: %s", job.id, job.task, type(exc).__name__)
        return Failed(exc)

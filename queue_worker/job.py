"""The job model: its states, the one table of allowed transitions, and a typed view of a document.

    pending ──claim──▶ running ──succeed──▶ succeeded
       │                 │ ├──retry / release / rescue──▶ pending
     cancel              │ ├──bury (exhausted, non-retryable, poison)──▶ dead
       ▼                 │ └──expire (claimed after its start_by)──▶ cancelled
    cancelled            └──────────────────────────────────────────────┘
                                 dead ──revive (manual retry)──▶ pending

A claim may also take a `running` job whose lease has expired: that is a rescue, running →
pending → running in one atomic write, counted separately.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from bson import ObjectId
from bson.errors import InvalidId


class JobState(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    DEAD = "dead"
    CANCELLED = "cancelled"


class Transition(StrEnum):
    """Every write that changes a job's state is one of these, and only these."""

    CLAIM = "claim"
    SUCCEED = "succeed"
    RETRY = "retry"
    RELEASE = "release"
    BURY = "bury"
    CANCEL = "cancel"
    REVIVE = "revive"
    EXPIRE = "expire"


TRANSITIONS: dict[Transition, tuple[JobState, JobState]] = {
    Transition.CLAIM: (JobState.PENDING, JobState.RUNNING),
    Transition.SUCCEED: (JobState.RUNNING, JobState.SUCCEEDED),
    Transition.RETRY: (JobState.RUNNING, JobState.PENDING),
    Transition.RELEASE: (JobState.RUNNING, JobState.PENDING),
    Transition.BURY: (JobState.RUNNING, JobState.DEAD),
    Transition.CANCEL: (JobState.PENDING, JobState.CANCELLED),
    Transition.REVIVE: (JobState.DEAD, JobState.PENDING),
    Transition.EXPIRE: (JobState.RUNNING, JobState.CANCELLED),
}

TERMINAL_STATES = frozenset({JobState.SUCCEEDED, JobState.CANCELLED})


class DeadReason(StrEnum):
    EXHAUSTED = "exhausted"
    NON_RETRYABLE = "non_retryable"
    POISON = "poison"


def transition(name: Transition) -> tuple[JobState, JobState]:
    """Return the (from, to) states of a transition; the table above is the only source."""
    return TRANSITIONS[name]


def utcnow() -> datetime:
    """Return the current time, timezone-aware UTC."""
    return datetime.now(UTC)


def to_bson_time(value: datetime) -> datetime:
    """Return `value` truncated to what BSON stores (milliseconds), so copies compare equal."""
    return value.replace(microsecond=value.microsecond // 1000 * 1000)


def parse_job_id(value: str) -> ObjectId | None:
    """Return the ObjectId for a job id string, or None when it is malformed."""
    try:
        return ObjectId(value)
    except (InvalidId, TypeError):
        return None


@dataclass(frozen=True)
class Job:
    """A read-only view of one job document (`from_doc`); writes go through the store."""

    id: str
    queue: str
    task: str
    payload: dict[str, Any]
    state: JobState
    priority: int
    run_at: datetime
    attempts: int
    max_attempts: int
    timeout_s: float
    created_at: datetime
    lease_owner: str | None = None
    lease_token: str | None = None
    lease_until: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    last_error: str | None = None
    last_traceback: str | None = None  # of the last failed attempt, if it raised
    result: Any = None
    idempotency_key: str | None = None
    submitted_by: str | None = None
    crashes: int = 0
    dead_reason: DeadReason | None = None
    rescues: int = 0
    start_by: datetime | None = None  # claimed later than this: cancelled, not run
    schedule: str | None = None  # the periodic schedule that enqueued it
    schedule_until: datetime | None = None  # the newest of the schedule's ticks it stands for

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> Job:
        dead_reason = doc.get("dead_reason")
        return cls(
            id=str(doc["_id"]),
            queue=doc["queue"],
            task=doc["task"],
            payload=doc.get("payload") or {},
            state=JobState(doc["state"]),
            priority=doc.get("priority", 0),
            run_at=doc["run_at"],
            attempts=doc.get("attempts", 0),
            max_attempts=doc["max_attempts"],
            timeout_s=doc["timeout_s"],
            created_at=doc["created_at"],
            lease_owner=doc.get("lease_owner"),
            lease_token=doc.get("lease_token"),
            lease_until=doc.get("lease_until"),
            started_at=doc.get("started_at"),
            finished_at=doc.get("finished_at"),
            last_error=doc.get("last_error"),
            last_traceback=doc.get("last_traceback"),
            result=doc.get("result"),
            idempotency_key=doc.get("idempotency_key"),
            submitted_by=doc.get("submitted_by"),
            crashes=doc.get("crashes", 0),
            dead_reason=DeadReason(dead_reason) if dead_reason else None,
            rescues=doc.get("rescues", 0),
            start_by=doc.get("start_by"),
            schedule=doc.get("schedule"),
            schedule_until=doc.get("schedule_until"),
        )


@dataclass(frozen=True)
class CrashInfo:
    """How a consumer process died, as its supervisor saw it: the killing signal or exit code."""

    signal: int | None = None
    exit_code: int | None = None

    def as_doc(self) -> dict[str, int | None]:
        return {"signal": self.signal, "exit_code": self.exit_code}

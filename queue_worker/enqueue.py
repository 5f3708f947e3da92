"""Enqueue requests: validate what a caller asked for and turn it into a new job document."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import bson
from bson import ObjectId

from queue_worker.errors import InvalidJobError, PayloadError, PayloadTooLargeError
from queue_worker.job import JobState, to_bson_time
from queue_worker.settings import QueueSettings
from queue_worker.tasks import TaskSpec
from runtime import names

Doc = dict[str, Any]
MAX_KEY_LENGTH = 200
MAX_PAYLOAD_DEPTH = 32
# A job document must fit MongoDB's 16 MiB limit with room for its other fields. JSON can grow
# about sixfold as BSON (array indexes become keys), so a caller's body limit alone does not
# ensure it.
MAX_PAYLOAD_BSON_BYTES = (16 << 20) - (64 << 10)


@dataclass(frozen=True)
class EnqueueRequest:
    """The arguments of one `JobStore.enqueue`, for `enqueue_many`."""

    task: str
    payload: Mapping[str, Any] | None = None
    queue: str | None = None
    priority: int | None = None
    delay_s: float | None = None
    run_at: datetime | None = None
    max_attempts: int | None = None
    timeout_s: float | None = None
    idempotency_key: str | None = None
    submitted_by: str | None = None
    start_by: datetime | None = None
    schedule: str | None = None
    schedule_until: datetime | None = None


def new_job_doc(
    req: EnqueueRequest, now: datetime, settings: QueueSettings, spec: TaskSpec | None
) -> Doc:
    """Return the document of a new pending job; raise InvalidJobError on a bad argument."""
    if not isinstance(req.task, str) or not req.task:
        raise InvalidJobError("task must be a non-empty string")
    payload = dict(req.payload or {})
    check_payload(payload)
    doc: Doc = {
        "_id": ObjectId(),
        "queue": _choose(req.queue, spec.queue if spec else None, settings.default_queue),
        "task": req.task,
        "payload": payload,
        "state": JobState.PENDING.value,
        "priority": _int(_choose(req.priority, spec.priority if spec else None, 0), "priority"),
        "run_at": _run_at(req, now),
        "attempts": 0,
        "max_attempts": _int(
            _choose(
                req.max_attempts,
                spec.max_attempts if spec else None,
                settings.max_attempts,
            ),
            "max_attempts",
            minimum=1,
        ),  # fmt: skip
        "timeout_s": _positive(
            _choose(req.timeout_s, spec.timeout_s if spec else None, settings.timeout_s),
            "timeout_s",
        ),
        "created_at": now,
        "crashes": 0,
        "rescues": 0,
    }
    if not names.is_valid(doc["queue"]):
        raise InvalidJobError(f"queue name {doc['queue']!r}: use {names.RULE}")
    if req.idempotency_key is not None:
        key = req.idempotency_key
        if not isinstance(key, str) or not 0 < len(key) <= MAX_KEY_LENGTH:
            raise InvalidJobError(f"idempotency_key must be 1..{MAX_KEY_LENGTH} characters")
        doc["idempotency_key"] = key
    if req.submitted_by is not None:
        doc["submitted_by"] = str(req.submitted_by)
    if req.start_by is not None:
        if not isinstance(req.start_by, datetime) or req.start_by.tzinfo is None:
            raise InvalidJobError("start_by must be a timezone-aware datetime")
        doc["start_by"] = to_bson_time(req.start_by.astimezone(UTC))
    if req.schedule is not None:
        doc["schedule"] = str(req.schedule)
    if req.schedule_until is not None:
        doc["schedule_until"] = to_bson_time(req.schedule_until.astimezone(UTC))
    return doc


def as_request(value: EnqueueRequest | Mapping[str, Any]) -> EnqueueRequest:
    if isinstance(value, EnqueueRequest):
        return value
    try:
        return EnqueueRequest(**value)
    except TypeError as exc:
        raise InvalidJobError(f"bad enqueue request: {exc}") from None


def _choose(*values: Any) -> Any:
    return next(v for v in values if v is not None)


def _int(value: Any, name: str, *, minimum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidJobError(f"{name} must be an integer")
    if minimum is not None and value < minimum:
        raise InvalidJobError(f"{name} must be >= {minimum}")
    return value


def _positive(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise InvalidJobError(f"{name} must be a positive number of seconds")
    return float(value)


def _run_at(req: EnqueueRequest, now: datetime) -> datetime:
    if req.run_at is not None and req.delay_s is not None:
        raise InvalidJobError("give delay_s or run_at, not both")
    if req.run_at is not None:
        if not isinstance(req.run_at, datetime) or req.run_at.tzinfo is None:
            raise InvalidJobError("run_at must be a timezone-aware datetime")
        return to_bson_time(req.run_at.astimezone(UTC))
    if req.delay_s is not None:
        if (
            isinstance(req.delay_s, bool)
            or not isinstance(req.delay_s, int | float)
            or not req.delay_s >= 0
        ):
            raise InvalidJobError("delay_s must be a number >= 0")
        return to_bson_time(now + timedelta(seconds=req.delay_s))
    return now


def check_payload(payload: dict[str, Any]) -> None:
    """Raise PayloadError unless the payload is JSON-able and storable as a plain document
    (PayloadTooLargeError when it is too large to store)."""
    try:
        json.dumps(payload, allow_nan=False)
    except (TypeError, ValueError, RecursionError) as exc:
        raise PayloadError(f"payload must be JSON-able: {exc}") from None
    _check_storable(payload, 0)
    if len(bson.encode(payload)) > MAX_PAYLOAD_BSON_BYTES:
        raise PayloadTooLargeError("the payload is too large to store")


def _check_storable(value: Any, depth: int) -> None:
    if depth > MAX_PAYLOAD_DEPTH:
        raise PayloadError(f"payload is nested deeper than {MAX_PAYLOAD_DEPTH} levels")
    if isinstance(value, dict):
        for key, item in value.items():
            # MongoDB reserves '$' prefixes and '.' in field names; NUL cannot be in BSON keys.
            if key.startswith("$") or "." in key or "\x00" in key:
                raise PayloadError("payload keys must not start with '$' or contain '.'")
            _check_storable(item, depth + 1)
    elif isinstance(value, list):
        for item in value:
            _check_storable(item, depth + 1)
    elif isinstance(value, int) and not isinstance(value, bool):
        if not -(2**63) <= value < 2**63:
            raise PayloadError("payload integers must fit in 64 bits")

"""Errors raised by the queue library.

QueueError
├── ConfigError            bad settings or task modules; raised at start, before any work
├── UnknownTaskError       a task name no registry knows
├── JobNotFoundError       no job with that id (or a malformed id)
├── InvalidTransitionError the job is not in a state that allows the requested change
├── InvalidJobError        enqueue arguments that cannot make a job (bad payload, delay, ...)
│   └── PayloadError           a payload that cannot be stored as a document
│       └── PayloadTooLargeError   one too large to store
├── NonRetryableError      raised by a handler: fail the job now, without further attempts
└── RetryAfter             raised by a handler: a failed attempt, retried no sooner than its delay
                           (a resource it needs is out, e.g. a full disk: not the job's fault)

Also `only_duplicate_keys`: whether a pymongo bulk write failed only because copies were already
there (the archive and the backlog promotion both treat that as "someone did it first").
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from runtime.env import SettingsError

if TYPE_CHECKING:
    from pymongo.errors import BulkWriteError

DUPLICATE_KEY = 11000


class QueueError(Exception):
    """Base class of every error this library raises on purpose."""


class ConfigError(QueueError, SettingsError):
    """Settings, task modules or task resources are unusable; the message says which and why.

    A SettingsError too, so an entry point catches every configuration problem in one place."""


class UnknownTaskError(QueueError):
    """No task with this name is registered."""


class JobNotFoundError(QueueError):
    """No job has this id."""


class InvalidTransitionError(QueueError):
    """The job's current state does not allow the requested transition."""


class NonRetryableError(QueueError):
    """Raise from a handler to fail its job at once, with no further attempts."""


class RetryAfter(QueueError):
    """Raise from a handler: this attempt failed for a reason outside the job (a full disk, a
    service that said "later"); retry it, but no sooner than `delay_s` seconds."""

    def __init__(self, message: str, *, delay_s: float) -> None:
        super().__init__(message)
        self.delay_s = max(0.0, delay_s)


class InvalidJobError(QueueError, ValueError):
    """Enqueue arguments cannot make a job; the message says which argument and why."""


class PayloadError(InvalidJobError):
    """The payload cannot be stored as a job document (not JSON-able, nested too deeply, keys
    MongoDB reserves, integers beyond 64 bits)."""


class PayloadTooLargeError(PayloadError):
    """The payload would not fit in a job document."""


def only_duplicate_keys(exc: BulkWriteError) -> bool:
    """Return True if every write error of a bulk write is a duplicate key (code 11000)."""
    return all(err.get("code") == DUPLICATE_KEY for err in exc.details.get("writeErrors", []))

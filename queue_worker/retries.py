"""Retry policy: what a failed attempt leads to, and how long to back off before the next one."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta

from queue_worker.job import DeadReason

_rng = random.Random()


def backoff_s(attempt: int, *, base_s: float, cap_s: float, rng: random.Random = _rng) -> float:
    """Return the delay after failed attempt number `attempt` (1-based): equal jitter.

    Equal jitter (half fixed, half random) keeps the exponential growth visible while still
    spreading out a herd of jobs that failed together, unlike full jitter, which may retry at once.
    """
    ceiling = min(cap_s, base_s * 2.0 ** max(attempt - 1, 0))
    half = ceiling / 2.0
    return half + rng.uniform(0.0, half)


@dataclass(frozen=True)
class Decision:
    """A failed attempt's fate: retry at `run_at`, or go dead for `dead_reason`."""

    run_at: datetime | None = None
    dead_reason: DeadReason | None = None


def decide(
    *,
    attempts: int,
    max_attempts: int,
    retryable: bool,
    now: datetime,
    base_s: float,
    cap_s: float,
    min_delay_s: float = 0.0,
    rng: random.Random = _rng,
) -> Decision:
    """Decide a failed attempt: dead if not retryable or attempts are used up, else back off
    (at least `min_delay_s`, which a handler asks for with RetryAfter)."""
    if not retryable:
        return Decision(dead_reason=DeadReason.NON_RETRYABLE)
    if attempts >= max_attempts:
        return Decision(dead_reason=DeadReason.EXHAUSTED)
    delay = max(min_delay_s, backoff_s(attempts, base_s=base_s, cap_s=cap_s, rng=rng))
    return Decision(run_at=now + timedelta(seconds=delay))

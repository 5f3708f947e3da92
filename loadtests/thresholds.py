"""The limits that fail a Locust run, judged from its statistics (no Locust import here).

Each endpoint has a p95 and a p99 limit: JOB entries (end-to-end job latency) and the
bcrypt-bound sign-up/login endpoints have their own, everything else shares the default.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

# bcrypt-bound endpoints get their own latency limits: each costs a hash of ~0.25 s of CPU.
AUTH_ENDPOINTS = frozenset({"/users/signup", "/users/login"})


class Entry(Protocol):
    """What a Locust StatsEntry offers that the limits need."""

    name: str
    method: str
    num_requests: int

    def get_response_time_percentile(self, percent: float) -> float: ...


@dataclass(frozen=True)
class Limits:
    max_error_ratio: float = 0.01
    p95_ms: float = 200.0
    p99_ms: float = 500.0
    auth_p95_ms: float = 3000.0
    auth_p99_ms: float = 5000.0
    job_p95_ms: float = 3000.0
    job_p99_ms: float = 6000.0

    def for_entry(self, method: str, name: str) -> tuple[float, float]:
        """Return the (p95, p99) limits in ms of one endpoint."""
        if method == "JOB":
            return self.job_p95_ms, self.job_p99_ms
        if name in AUTH_ENDPOINTS:
            return self.auth_p95_ms, self.auth_p99_ms
        return self.p95_ms, self.p99_ms


def breaches(
    limits: Limits, total_requests: int, fail_ratio: float, entries: Iterable[Entry]
) -> list[str]:
    """Return one line per limit the statistics break (empty: the run passes)."""
    if total_requests == 0:
        return ["no requests were made"]
    found = []
    if fail_ratio > limits.max_error_ratio:
        found.append(f"error ratio {fail_ratio:.4f} > {limits.max_error_ratio}")
    for entry in sorted(entries, key=lambda e: (e.method, e.name)):
        if not entry.num_requests:
            continue
        p95_limit, p99_limit = limits.for_entry(entry.method, entry.name)
        for percent, limit in ((0.95, p95_limit), (0.99, p99_limit)):
            value = entry.get_response_time_percentile(percent)
            if value > limit:
                found.append(
                    f"{entry.method} {entry.name} p{percent * 100:.0f} {value} ms > {limit} ms"
                )
    return found

"""Every Prometheus metric the API exports, and the /metrics exposition.

Metric objects live on an `ApiMetrics` instance bound to a registry, so each app (and each
test) gets its own. Under gunicorn, `deploy/gunicorn.conf.py` sets PROMETHEUS_MULTIPROC_DIR
before any worker starts: values are then written per process to that directory and the
/metrics endpoint aggregates all workers with a MultiProcessCollector at scrape time, under the
lock that keeps it consistent with the compaction of dead workers' files.
"""

from __future__ import annotations

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from api.auth.stores.security_log import EventType
from runtime.metrics_files import LockedMultiProcessCollector
from runtime.process_tree import ProcessTreeCollector

_LATENCY_BUCKETS_S = (0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
ACCOUNT_FLOW_OUTCOMES = (
    ("verify_email", "ok"),
    ("verify_email", "invalid_token"),
    ("forgot_password", "ok"),
    ("forgot_password", "suppressed"),
    ("reset_password", "ok"),
    ("reset_password", "invalid_token"),
    ("change_password", "ok"),
)
_BCRYPT_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0, 2.0, 5.0)


class ApiMetrics:
    """The API's metric objects (names fixed by the project's metrics catalogue)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.http_requests = Counter(
            "http_requests_total",
            "HTTP requests by route template, method and status class.",
            ["route", "method", "status_class"],
            registry=r,
        )
        self.http_request_duration = Histogram(
            "http_request_duration_seconds",
            "Time from request start to response, by route template and method.",
            ["route", "method"],
            buckets=_LATENCY_BUCKETS_S,
            registry=r,
        )
        self.http_in_flight = Gauge(
            "http_requests_in_flight",
            "Requests being handled right now.",
            multiprocess_mode="livesum",
            registry=r,
        )
        self.bcrypt_queue_length = Gauge(
            "auth_bcrypt_queue_length",
            "Password hashes waiting for or running in the hashing thread pool.",
            multiprocess_mode="livesum",
            registry=r,
        )
        self.bcrypt_seconds = Histogram(
            "auth_bcrypt_seconds",
            "Time one bcrypt hash or check takes in its thread.",
            buckets=_BCRYPT_BUCKETS_S,
            registry=r,
        )
        self.db_operation_errors = Counter(
            "db_operation_errors_total",
            "Database operations that failed or timed out, by operation.",
            ["operation"],
            registry=r,
        )
        self.event_errors = Counter(
            "api_event_errors_total",
            "Account events (sign-up mail, login audit) that could not be enqueued because of a "
            "bug rather than the database, by task.",
            ["task"],
            registry=r,
        )
        self.refresh_reuse_detected = Counter(
            "auth_refresh_reuse_detected_total",
            "Already-rotated refresh tokens presented (the family is revoked).",
            registry=r,
        )
        self.login_failures = Counter(
            "auth_login_failures_total",
            "Failed logins by reason (bad_credentials, rate_limited).",
            ["reason"],
            registry=r,
        )
        self.account_flows = Counter(
            "auth_account_flows_total",
            "Account recovery and control flows by flow (verify_email, forgot_password, "
            "reset_password, change_password) and outcome (ok, invalid_token, suppressed).",
            ["flow", "outcome"],
            registry=r,
        )
        for flow, outcome in ACCOUNT_FLOW_OUTCOMES:
            self.account_flows.labels(flow, outcome)
        self.security_events = Counter(
            "auth_security_events_total",
            "Security events recorded in users' security logs, by type.",
            ["type"],
            registry=r,
        )
        for event in EventType:
            self.security_events.labels(event.value)
        self.user_cache = Counter(
            "auth_user_cache_lookups_total",
            "Authenticated requests' user lookups: hit (memory, kept fresh by the change stream), "
            "fallback (memory within its short TTL while the stream is down), miss (database).",
            ["result"],
            registry=r,
        )
        for result in ("hit", "fallback", "miss"):
            self.user_cache.labels(result)
        self.rate_limited = Counter(
            "auth_rate_limited_total",
            "Requests refused by a rate limit, by scope (account, account_ip, ip for password "
            "checks; signup_ip for sign-ups; forgot_ip for reset requests).",
            ["scope"],
            registry=r,
        )

    def exposition(self, multiproc_dir: str | None) -> tuple[bytes, str]:
        """Return the text exposition and its content type (all workers when multiprocess)."""
        if multiproc_dir:
            registry = CollectorRegistry()
            # Locked: a worker's files being folded into the archive are never read twice.
            registry.register(LockedMultiProcessCollector(multiproc_dir))
            # Multiprocess mode means gunicorn: our parent is its master, the tree's root.
            registry.register(ProcessTreeCollector(os.getppid()))
            return generate_latest(registry), CONTENT_TYPE_LATEST
        return generate_latest(self.registry), CONTENT_TYPE_LATEST

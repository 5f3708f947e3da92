"""`create_app`: the Falcon application, wired from injected collaborators (no globals).

    create_app(settings, db, job_store, clock=utcnow)

`db` is the API's database (users, sessions, rate_limits) and `job_store` the queue's
JobStore (the only way to the jobs collections). `api/wsgi.py` builds both from the
environment in the worker process; tests pass a fresh database and a real JobStore.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import falcon
import pymongo
from pymongo.database import Database
from pymongo.errors import PyMongoError

from api.accounts import UserStore
from api.auth.passwords import HashPool, PasswordHasher
from api.auth.ratelimit import LoginRateLimiter, SignupRateLimiter
from api.auth.service import AuthService
from api.auth.sessions import SessionStore
from api.auth.tokens import TokenCodec
from api.database import DatabaseGuard
from api.docs import DocsAssetResource, DocsPageResource, OpenApiResource
from api.errors import handle_error
from api.health import HealthResource, MetricsResource, ReadyResource
from api.jobs import JobResource, JobsResource
from api.metrics import ApiMetrics
from api.middleware import (
    AuthMiddleware,
    BodyMiddleware,
    MetricsMiddleware,
    RequestIdMiddleware,
    SecurityHeadersMiddleware,
)
from api.openapi import build_spec
from api.settings import ApiSettings
from api.users import (
    LoginResource,
    LogoutAllResource,
    LogoutResource,
    ProfileResource,
    PublicUserResource,
    RefreshResource,
    SignupResource,
)
from queue_worker import JobStore

log = logging.getLogger("api")
API_TITLE = "jobauth API"
API_VERSION = "1.0.0"


def utcnow() -> datetime:
    """Return the current time, timezone-aware UTC."""
    return datetime.now(UTC)


def create_app(
    settings: ApiSettings,
    db: Database[Any],
    job_store: JobStore,
    *,
    clock: Callable[[], datetime] = utcnow,
    metrics: ApiMetrics | None = None,
    hash_pool: HashPool | None = None,
) -> falcon.App[falcon.Request, falcon.Response]:
    """Build the WSGI application from its collaborators."""
    metrics = metrics or ApiMetrics()
    guard = DatabaseGuard(
        metrics, max_in_flight=settings.db_max_in_flight, wait_s=settings.db_timeout_ms / 1000
    )
    users = UserStore(db)
    sessions = SessionStore(db, idle_s=settings.session_idle_s)
    limiter = LoginRateLimiter(
        db,
        window_s=settings.login_window_s,
        max_per_account=settings.login_max_failures_per_account,
        max_per_ip=settings.login_max_failures_per_ip,
    )
    signup_limiter = SignupRateLimiter(
        db, window_s=settings.signup_window_s, max_per_ip=settings.signup_max_per_ip
    )
    # Both limiters keep their counters in one collection: the login limiter's index serves both.
    _ensure_indexes(users, sessions, limiter, settings.ready_timeout_s)
    pool = hash_pool or HashPool(settings.hash_threads, metrics, niceness=settings.hash_niceness)
    auth = AuthService(
        settings,
        users=users,
        sessions=sessions,
        limiter=limiter,
        signup_limiter=signup_limiter,
        hasher=PasswordHasher(settings.password_pepper, settings.bcrypt_cost, pool, metrics),
        codec=TokenCodec(
            settings.jwt_keys,
            settings.jwt_active_kid,
            issuer=settings.jwt_issuer,
            audience=settings.jwt_audience,
            leeway_s=settings.jwt_leeway_s,
        ),
        events=job_store,
        guard=guard,
        metrics=metrics,
        clock=clock,
    )
    middleware: list[Any] = [
        RequestIdMiddleware(),
        MetricsMiddleware(metrics),
        SecurityHeadersMiddleware(),
        BodyMiddleware(settings.max_body_bytes),
        AuthMiddleware(auth),
    ]
    app: falcon.App[falcon.Request, falcon.Response] = falcon.App(middleware=middleware)
    app.add_error_handler(Exception, handle_error)
    app.add_error_handler(falcon.HTTPError, handle_error)
    routes: list[tuple[str, object]] = [
        ("/users/signup", SignupResource(auth, settings.trusted_proxy_hops)),
        ("/users/login", LoginResource(auth, settings.trusted_proxy_hops)),
        ("/users/refresh", RefreshResource(auth)),
        ("/users/logout", LogoutResource(auth)),
        ("/users/logout-all", LogoutAllResource(auth)),
        ("/users/profile", ProfileResource()),
        ("/users/{user_id}", PublicUserResource(users, guard)),
        ("/jobs", JobsResource(job_store, settings.submittable_tasks, guard)),
        ("/jobs/{job_id}", JobResource(job_store, guard)),
        ("/healthz", HealthResource()),
        ("/readyz", ReadyResource(db, settings.ready_timeout_s, metrics)),
        ("/metrics", MetricsResource(metrics, settings.metrics_multiproc_dir)),
    ]
    for path, resource in routes:
        app.add_route(path, resource)
    spec = build_spec(routes, title=API_TITLE, version=API_VERSION)
    # The allowlist is configuration, not a type: publish it so clients see what they may send.
    task_schema = spec["components"]["schemas"]["JobRequest"]["properties"]["task"]
    task_schema["enum"] = sorted(settings.submittable_tasks)
    app.add_route("/openapi.json", OpenApiResource(spec))
    app.add_route("/docs", DocsPageResource())
    app.add_route("/docs/{name}", DocsAssetResource())
    return app


def _ensure_indexes(
    users: UserStore, sessions: SessionStore, limiter: LoginRateLimiter, timeout_s: float
) -> None:
    # A database that is down at start must not stop the app from serving /healthz or 503s;
    # the unique email index is re-tried before every sign-up until it exists.
    try:
        with pymongo.timeout(timeout_s):
            users.ensure_indexes()
            sessions.ensure_indexes()
            limiter.ensure_indexes()
    except PyMongoError as exc:
        log.warning("could not create indexes at start: %s", type(exc).__name__)

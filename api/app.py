"""`create_app`: the Falcon application, wired from injected collaborators (no globals).

    create_app(settings, db, job_store, clock=utcnow)

`db` is the API's database (users, sessions, rate_limits) and `job_store` the queue's
JobStore (the only way to the jobs collections), built with the task registry so that jobs the
API enqueues get their tasks' declared defaults. `api/wsgi.py` builds both from the environment
in the worker process; tests pass a fresh database and a real JobStore.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import falcon
from bson import ObjectId
from pymongo.database import Database

from api import admin
from api.admin.audit import AuditLog
from api.admission import Admission
from api.auth.context import AuthContext
from api.auth.passwords.hashing import HashPool, PasswordHasher
from api.auth.policies import rate_limit_policies
from api.auth.steps.events import AccountEvents
from api.auth.steps.eviction import evict_beyond_cap
from api.auth.stores.account_tokens import AccountTokens
from api.auth.stores.ledger import LoginLedger
from api.auth.stores.limits import RateLimits
from api.auth.stores.mfa import MfaStore
from api.auth.stores.security_log import SecurityLog
from api.auth.stores.sessions import SessionStore
from api.auth.stores.user_cache import UserCache
from api.auth.stores.users import COLLECTION as USERS
from api.auth.stores.users import UserStore
from api.auth.tokens.codec import TokenCodec
from api.auth.tokens.totp import TotpKeys
from api.errors import handle_error
from api.indexes import IndexKeeper
from api.metrics import ApiMetrics
from api.middleware import (
    AuthMiddleware,
    BodyMiddleware,
    MetricsMiddleware,
    RequestIdMiddleware,
    SecurityHeadersMiddleware,
    TurnTakingMiddleware,
)
from api.openapi import build_spec
from api.pages import StaticResource
from api.pages.account import ResetPasswordPage, SecurityPage, VerifyEmailPage
from api.resources.accounts import (
    LoginResource,
    LogoutResource,
    ProfileResource,
    PublicUserResource,
    RefreshResource,
    SignupResource,
)
from api.resources.docs import DocsAssetResource, DocsPageResource, OpenApiResource
from api.resources.health import HealthResource, MetricsResource, ReadyResource
from api.resources.jobs import JobResource, JobsResource
from api.resources.keys import JwksResource
from api.resources.me import (
    PasswordResource,
    ReauthenticateResource,
    SecurityEventsResource,
    SessionResource,
    SessionsResource,
)
from api.resources.mfa import (
    MfaDisableResource,
    MfaLoginResource,
    MfaResource,
    RecoveryCodesResource,
    TotpConfirmResource,
    TotpEnrolmentResource,
)
from api.resources.recovery import (
    ForgotPasswordResource,
    ResetPasswordResource,
    VerificationMailResource,
    VerifyEmailResource,
)
from api.settings import ApiSettings
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
    admission = Admission(
        metrics, max_in_flight=settings.db_max_in_flight, wait_s=settings.db_timeout_ms / 1000
    )
    users = UserStore(db)
    sessions = SessionStore(db, idle_s=settings.session_idle_s)
    limits = RateLimits(db, rate_limit_policies(settings))
    tokens = AccountTokens(db, settings.accounts.token_keys)
    security = SecurityLog(db)
    mfa = MfaStore(db)
    indexes = IndexKeeper(
        (users, sessions, limits, tokens, security, mfa, AuditLog(db)), settings.ready_timeout_s
    )
    indexes.ensure()
    pool = hash_pool or HashPool(settings.hash_threads, metrics, niceness=settings.hash_niceness)
    user_cache = None
    if settings.auth_cache_size:

        def load(user_id: ObjectId) -> dict[str, Any] | None:
            with admission.operation("users.find"):
                return users.find_for_auth(user_id)

        user_cache = UserCache(
            db[USERS],
            load,
            size=settings.auth_cache_size,
            count=lambda result: metrics.user_cache.labels(result).inc(),
        )
    auth = AuthContext(
        settings=settings,
        db=db,
        users=users,
        sessions=sessions,
        limits=limits,
        hasher=PasswordHasher(settings.password_pepper, settings.bcrypt_cost, pool, metrics),
        codec=TokenCodec(
            settings.jwt_keys,
            settings.jwt_active_kid,
            issuer=settings.jwt_issuer,
            audience=settings.jwt_audience,
            leeway_s=settings.jwt_leeway_s,
            signing_keys=settings.jwt_signing_keys,
            hs256_grace_s=settings.access_ttl_s + settings.jwt_leeway_s,
        ),
        events=AccountEvents(job_store, users, admission, metrics),
        tokens=tokens,
        security=security,
        user_cache=user_cache,
        admission=admission,
        metrics=metrics,
        clock=clock,
        mfa=mfa,
        totp_keys=TotpKeys(settings.mfa_keys),
        ledger=LoginLedger(limits, security, flush_every_s=settings.login_ledger_flush_ms / 1000),
    )
    auth.ledger.on_eviction(lambda user_ids: _ignore(evict_beyond_cap(auth, user_ids)))
    middleware: list[Any] = [
        TurnTakingMiddleware(),
        RequestIdMiddleware(),
        MetricsMiddleware(metrics),
        SecurityHeadersMiddleware(),
        BodyMiddleware(settings.max_body_bytes, settings.body_timeout_s),
        AuthMiddleware(auth),
    ]
    app: falcon.App[falcon.Request, falcon.Response] = falcon.App(middleware=middleware)
    app.add_error_handler(Exception, handle_error)
    app.add_error_handler(falcon.HTTPError, handle_error)
    routes: list[tuple[str, object]] = [
        ("/users/signup", SignupResource(auth)),
        ("/users/login", LoginResource(auth)),
        ("/users/login/mfa", MfaLoginResource(auth)),
        ("/users/refresh", RefreshResource(auth)),
        ("/users/logout", LogoutResource(auth)),
        ("/users/logout-all", LogoutResource(auth, everywhere=True)),
        ("/users/profile", ProfileResource()),
        ("/users/verify-email", VerifyEmailResource(auth)),
        ("/users/forgot-password", ForgotPasswordResource(auth)),
        ("/users/reset-password", ResetPasswordResource(auth)),
        ("/users/me/verify-email", VerificationMailResource(auth)),
        ("/users/me/password", PasswordResource(auth)),
        ("/users/me/sessions", SessionsResource(auth)),
        ("/users/me/sessions/{session_id}", SessionResource(auth)),
        ("/users/me/reauthenticate", ReauthenticateResource(auth)),
        ("/users/me/security-events", SecurityEventsResource(auth)),
        ("/users/me/mfa", MfaResource(auth)),
        ("/users/me/mfa/disable", MfaDisableResource(auth)),
        ("/users/me/mfa/totp", TotpEnrolmentResource(auth)),
        ("/users/me/mfa/totp/confirm", TotpConfirmResource(auth)),
        ("/users/me/mfa/recovery-codes", RecoveryCodesResource(auth)),
        ("/users/{user_id}", PublicUserResource(users, admission)),
        ("/jobs", JobsResource(job_store, settings, admission)),
        ("/jobs/{job_id}", JobResource(job_store, admission)),
        ("/.well-known/jwks.json", JwksResource(auth.codec, clock)),
        ("/healthz", HealthResource()),
        ("/readyz", ReadyResource(db, settings.ready_timeout_s, metrics, indexes)),
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
    app.add_route("/account/reset-password", ResetPasswordPage())
    app.add_route("/account/verify-email", VerifyEmailPage())
    app.add_route("/account/security", SecurityPage())
    app.add_route("/static/{name}", StaticResource())
    if settings.admin_enabled:
        admin.mount(app, auth, job_store)
    app.add_route("/docs/{name}", DocsAssetResource())
    return app


def _ignore(_: object) -> None:
    """Drop a value a callback returns (the ledger's eviction wants none)."""

"""Account flows: sign-up, login, refresh, logout, logout-all, and request authentication.

Resources stay thin and call these methods; this module owns the order of checks (rate limit
before bcrypt, signature before database, one atomic rotation) and the events it enqueues.

Events: sign-up enqueues `user.created` with idempotency key `user.created:<user_id>`; a failed
enqueue never fails the sign-up (the account exists; the user gets tokens). The account keeps
`welcome_enqueued: false` and the next login enqueues it again under the same key, so the
welcome job is created exactly once. `user.login` is best effort: a failure is logged, counted
in db_operation_errors_total{operation="queue.enqueue"} and the login still succeeds.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from bson import ObjectId

from api.accounts import UserStore, normalize_email, parse_user_id
from api.auth.passwords import PasswordHasher, check_policy
from api.auth.ratelimit import LoginRateLimiter, SignupRateLimiter
from api.auth.sessions import Rotation, SessionStore, new_session_id
from api.auth.tokens import Claims, TokenCodec
from api.database import DatabaseGuard
from api.errors import RateLimited, ServiceUnavailable, Unauthorized, ValidationFailed
from api.metrics import ApiMetrics
from api.schemas import LoginRequest, SignupRequest
from api.settings import ApiSettings
from queue_worker import JobStore

log = logging.getLogger("api.auth")
ENQUEUE_ATTEMPTS = 3
USER_AGENT_MAX = 256


@dataclass(frozen=True)
class TokenPair:
    access_token: str
    refresh_token: str
    expires_in: int


@dataclass(frozen=True)
class Principal:
    """An authenticated request: the verified claims and the user's profile fields."""

    claims: Claims
    user_id: ObjectId
    user: dict[str, Any]


class AuthService:
    """Run the account flows against the stores, hasher, limiter and token codec."""

    def __init__(
        self,
        settings: ApiSettings,
        *,
        users: UserStore,
        sessions: SessionStore,
        limiter: LoginRateLimiter,
        signup_limiter: SignupRateLimiter,
        hasher: PasswordHasher,
        codec: TokenCodec,
        events: JobStore,
        guard: DatabaseGuard,
        metrics: ApiMetrics,
        clock: Callable[[], datetime],
    ) -> None:
        self._settings = settings
        self._users = users
        self._sessions = sessions
        self._limiter = limiter
        self._signup_limiter = signup_limiter
        self._hasher = hasher
        self._codec = codec
        self._events = events
        self._guard = guard
        self._metrics = metrics
        self._clock = clock

    def signup(self, body: SignupRequest, *, ip: str) -> TokenPair:
        """Create an account and start its first session (rate-limited per IP)."""
        email = normalize_email(body.email)
        name = body.name.strip()
        if email is None:
            raise ValidationFailed("The email address is not valid.", code="invalid_email")
        if not name:
            raise ValidationFailed("The name must not be blank.", code="invalid_name")
        check_policy(body.password)
        now = self._clock()
        # Counted after the cheap checks, before the hash: only attempts that cost bcrypt
        # (a taken email included) use up the IP's budget.
        try:
            with self._guard.operation("rate_limits.acquire"):
                self._signup_limiter.acquire(ip, now=now)
        except RateLimited as exc:
            self._metrics.rate_limited.labels(exc.scope).inc()
            raise
        password_hash = self._hasher.hash(body.password)
        with self._guard.operation("users.insert"):
            user_id = self._users.create(
                name=name, email=email, age=body.age, password_hash=password_hash, now=now
            )
        self._enqueue_welcome(user_id, email, name)
        pair, _ = self._start_session(user_id, version=0, now=now)
        return pair

    def login(self, body: LoginRequest, *, ip: str, user_agent: str) -> TokenPair:
        """Check credentials (rate-limited per account and IP) and start a session."""
        email = normalize_email(body.email) or body.email.strip().lower()
        now = self._clock()
        try:
            with self._guard.operation("rate_limits.acquire"):
                self._limiter.acquire(email, ip, now=now)
        except RateLimited as exc:
            self._metrics.rate_limited.labels(exc.scope).inc()
            self._metrics.login_failures.labels("rate_limited").inc()
            raise
        with self._guard.operation("users.find"):
            user = self._users.find_for_login(email)
        stored_hash = user["password_hash"] if user is not None else None
        if not self._hasher.verify(body.password, stored_hash) or user is None:
            self._metrics.login_failures.labels("bad_credentials").inc()
            # One body for unknown email and wrong password: nothing tells them apart.
            raise Unauthorized("Invalid email or password.", code="invalid_credentials")
        user_id: ObjectId = user["_id"]
        try:
            with self._guard.operation("rate_limits.release"):
                self._limiter.release(email, ip, now=now)
        except ServiceUnavailable:
            pass  # One extra counted attempt is harmless; failing a good login is not.
        if not user.get("welcome_enqueued", True):
            self._enqueue_welcome(user_id, email, str(user.get("name", "")))
        pair, sid = self._start_session(user_id, version=int(user.get("token_version", 0)), now=now)
        payload = {
            "user_id": str(user_id),
            "ip": ip,
            "user_agent": user_agent[:USER_AGENT_MAX],
            "at": now.isoformat(),
        }
        self._enqueue("user.login", payload, idempotency_key=f"user.login:{sid}")
        return pair

    def refresh(self, refresh_token: str) -> TokenPair:
        """Rotate a refresh token; a replayed one revokes its whole family."""
        now = self._clock()
        claims = self._codec.verify(refresh_token, "refresh", now=now)
        user_id = parse_user_id(claims.sub)
        if user_id is None:
            raise Unauthorized(code="invalid_token")
        with self._guard.operation("users.find"):
            version = self._users.token_version(user_id)
        if version is None:
            raise Unauthorized(code="invalid_token")
        expires_at = datetime.fromtimestamp(claims.exp, UTC)
        replacement = self._codec.issue(
            "refresh", sub=claims.sub, sid=claims.sid, ver=version, now=now, expires_at=expires_at
        )
        with self._guard.operation("sessions.rotate"):
            outcome = self._sessions.rotate(
                claims.sid, user_id, refresh_token, replacement, now=now, expires_at=expires_at
            )
        if outcome is Rotation.REUSED:
            self._metrics.refresh_reuse_detected.inc()
            log.warning("refresh token reuse detected; session revoked user_id=%s", user_id)
            with self._guard.operation("users.revoke_session"):
                self._users.revoke_session_access(user_id, claims.sid)
            raise Unauthorized("The session has been revoked.", code="refresh_token_reused")
        if outcome is not Rotation.ROTATED:
            raise Unauthorized("The session has ended.", code="session_ended")
        access = self._issue_access(claims.sub, claims.sid, version, now)
        return TokenPair(access, replacement, self._settings.access_ttl_s)

    def authenticate(self, access_token: str) -> Principal:
        """Verify an access token and load its user in one read; raise Unauthorized."""
        claims = self._codec.verify(access_token, "access", now=self._clock())
        user_id = parse_user_id(claims.sub)
        if user_id is None:
            raise Unauthorized(code="invalid_token")
        with self._guard.operation("users.find"):
            user = self._users.find_for_auth(user_id)
        if (
            user is None
            or int(user.get("token_version", 0)) != claims.ver
            or claims.sid in user.get("revoked_sids", ())
        ):
            raise Unauthorized("The token has been revoked.", code="token_revoked")
        return Principal(claims=claims, user_id=user_id, user=user)

    def logout(self, principal: Principal) -> None:
        """End the caller's session: its refresh and access tokens stop working."""
        now = self._clock()
        with self._guard.operation("sessions.revoke"):
            self._sessions.revoke(principal.claims.sid, reason="logout", now=now)
        with self._guard.operation("users.revoke_session"):
            self._users.revoke_session_access(principal.user_id, principal.claims.sid)

    def logout_all(self, principal: Principal) -> None:
        """End every session of the caller and every access token issued before now."""
        now = self._clock()
        with self._guard.operation("users.end_tokens"):
            self._users.end_all_tokens(principal.user_id)
        with self._guard.operation("sessions.revoke_all"):
            self._sessions.revoke_all(principal.user_id, reason="logout_all", now=now)

    def _start_session(
        self, user_id: ObjectId, *, version: int, now: datetime
    ) -> tuple[TokenPair, str]:
        sid = new_session_id()
        sub = str(user_id)
        # Whole seconds, so the refresh token's `exp` and the family's expiry agree exactly.
        expires_at = datetime.fromtimestamp(
            int(now.timestamp()) + self._settings.session_max_age_s, UTC
        )
        refresh = self._codec.issue(
            "refresh", sub=sub, sid=sid, ver=version, now=now, expires_at=expires_at
        )
        with self._guard.operation("sessions.start"):
            self._sessions.start(sid, user_id, refresh, now=now, expires_at=expires_at)
        access = self._issue_access(sub, sid, version, now)
        return TokenPair(access, refresh, self._settings.access_ttl_s), sid

    def _issue_access(self, sub: str, sid: str, version: int, now: datetime) -> str:
        expires_at = now + timedelta(seconds=self._settings.access_ttl_s)
        return self._codec.issue(
            "access", sub=sub, sid=sid, ver=version, now=now, expires_at=expires_at
        )

    def _enqueue_welcome(self, user_id: ObjectId, email: str, name: str) -> None:
        payload = {"user_id": str(user_id), "email": email, "name": name}
        if self._enqueue("user.created", payload, idempotency_key=f"user.created:{user_id}"):
            try:
                with self._guard.operation("users.mark_welcome"):
                    self._users.mark_welcome_enqueued(user_id)
            except ServiceUnavailable:
                pass  # The idempotency key makes the retry at next login harmless.

    def _enqueue(self, task: str, payload: dict[str, Any], *, idempotency_key: str) -> bool:
        for _ in range(ENQUEUE_ATTEMPTS):
            try:
                with self._guard.operation("queue.enqueue"):
                    self._events.enqueue(task, payload, idempotency_key=idempotency_key)
                return True
            except ServiceUnavailable:
                continue
            except Exception as exc:  # noqa: BLE001 - an event must never fail the account flow
                self._metrics.db_operation_errors.labels("queue.enqueue").inc()
                log.warning("enqueue of %s failed: %s", task, type(exc).__name__)
                return False
        log.warning("enqueue of %s failed %d times; will retry later", task, ENQUEUE_ATTEMPTS)
        return False

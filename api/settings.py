"""API settings: frozen dataclasses, each filled from its table of environment variables.

    ApiSettings      what the application needs (secrets, token lifetimes, limits, database)
    AccountSettings  the account links: their token keys and where they point; read by the API
                     (which redeems tokens) and by the account tasks (which mint and mail them)
    ServerSettings   what gunicorn needs (bind, workers, timeouts); read by deploy/gunicorn.conf.py

Only the two entry points pass the real environment (`api/wsgi.py` in each worker, the gunicorn
config in the master); tests build settings directly. Secrets are checked here
(api/key_material.py), so the app refuses to start with a missing, short or placeholder secret.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from api.auth.tokens.signing_keys import SigningKey, parse_signing_keys
from api.key_material import check_secret, decode_secret, parse_keyring
from runtime import env as envspec
from runtime import metrics_dir
from runtime.env import Option, SettingsError

_cores = os.cpu_count() or 1
DIRECT_CLIENT_CONNECTIONS = 50


@dataclass(frozen=True)
class AccountSettings:
    """Mailed account links: the keys of their tokens (first kid active) and where they point."""

    token_keys: Mapping[str, bytes]
    public_url: str = "http://127.0.0.1:8000"
    links_url: str = ""  # empty: the API's own pages, {public_url}/account
    verify_cooldown_s: int = 60
    verify_max_per_day: int = 5
    forgot_max_per_ip: int = 20
    forgot_max_per_address: int = 3

    def __post_init__(self) -> None:
        for kid, secret in self.token_keys.items():
            _checked(f"API_ACCOUNT_TOKEN_KEYS[{kid}]", secret)

    @property
    def link_base(self) -> str:
        """Return the URL the account pages live under (links add /reset-password?token=...)."""
        return (self.links_url or f"{self.public_url}/account").rstrip("/")

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> AccountSettings:
        """Build the settings from API_ACCOUNT_TOKEN_KEYS, API_PUBLIC_URL, API_ACCOUNT_LINKS_URL."""
        if not env.get("API_ACCOUNT_TOKEN_KEYS", "").strip():
            raise SettingsError("API_ACCOUNT_TOKEN_KEYS is not set")
        return cls(**envspec.read(ACCOUNT_OPTIONS, env))


def _lower_names(raw: str) -> tuple[str, ...]:
    return tuple(name.lower() for name in envspec.names(raw))


def _url(raw: str) -> str:
    if not raw.startswith(("https://", "http://")) or " " in raw:
        raise ValueError("must be an http(s) URL")
    return raw.rstrip("/")


ACCOUNT_OPTIONS: tuple[Option[Any], ...] = (
    Option(
        "API_ACCOUNT_TOKEN_KEYS",
        "token_keys",
        parse_keyring,
        "kid:base64secret,... keys of mailed tokens; the first is active",
        secret=True,
    ),
    Option("API_PUBLIC_URL", "public_url", _url, "the API's public base URL (for links)"),
    Option("API_ACCOUNT_LINKS_URL", "links_url", _url, "where account links point instead"),
    Option(
        "API_VERIFY_COOLDOWN_S",
        "verify_cooldown_s",
        envspec.integer(1, 86400),
        "least time between two verification mails",
    ),
    Option(
        "API_VERIFY_MAX_PER_DAY",
        "verify_max_per_day",
        envspec.integer(1, 1000),
        "verification mails one account may ask for in any 24 hours",
    ),
    Option(
        "API_FORGOT_MAX_PER_IP",
        "forgot_max_per_ip",
        envspec.integer(1, 10**6),
        "reset requests per minute per client address (beyond: 429)",
    ),
    Option(
        "API_FORGOT_MAX_PER_ADDRESS",
        "forgot_max_per_address",
        envspec.integer(1, 1000),
        "reset mails per hour per address (beyond: silently none)",
    ),
)


@dataclass(frozen=True)
class ApiSettings:
    """Everything the API needs to know, with units in the names. Secrets are raw bytes."""

    jwt_keys: Mapping[str, bytes]
    jwt_active_kid: str
    password_pepper: bytes
    accounts: AccountSettings
    # Keys sealing second-factor secrets (first kid active), from API_MFA_KEYS.
    mfa_keys: Mapping[str, bytes] = field(default_factory=dict)
    mfa_issuer: str = "jobauth"
    jwt_issuer: str = "jobauth"
    jwt_audience: str = "jobauth-api"
    jwt_leeway_s: int = 30
    # ES256 keys of the access tokens (api/auth/tokens/signing_keys.py); empty: HS256 access tokens.
    jwt_signing_keys: tuple[SigningKey, ...] = ()
    access_ttl_s: int = 900
    session_idle_s: int = 14 * 86400
    session_max_age_s: int = 30 * 86400
    bcrypt_cost: int = 12
    hash_threads: int = field(default_factory=lambda: os.cpu_count() or 1)
    hash_niceness: int = 10
    max_body_bytes: int = 64 * 1024
    body_timeout_s: int = 10
    login_window_s: int = 900
    login_max_failures_per_ip: int = 100
    login_free_failures: int = 5
    login_backoff_cap_s: int = 900
    login_max_failures_per_account: int = 100
    login_max_failures_per_known_network: int = 100
    login_account_window_s: int = 86400
    refresh_grace_s: int = 10
    login_ledger_flush_ms: int = 500  # 0: a login's bookkeeping is written at once
    max_sessions_per_user: int = 50
    admin_recent_signin_s: int = 900
    signup_window_s: int = 3600
    signup_max_per_ip: int = 20
    # Tasks clients may submit through POST /jobs: none unless a deployment names them.
    submittable_tasks: frozenset[str] = frozenset()
    max_client_priority: int = 0
    max_active_jobs_per_user: int = 100
    ready_timeout_s: float = 1.0
    db_timeout_ms: int = 2000
    db_pool_size: int = 50
    # Database operations one worker runs at once; the rest queue in arrival order (fifo_gate.py).
    db_max_in_flight: int = 4
    auth_cache_size: int = 10_000  # users kept in memory per worker (user_cache.py); 0: off
    admin_enabled: bool = False  # the dashboard under /admin (api/admin)
    admin_redact_keys: tuple[str, ...] = ("password", "token", "secret", "authorization", "api_key")
    trusted_proxy_hops: int = 0
    metrics_multiproc_dir: str | None = None

    def __post_init__(self) -> None:
        if self.jwt_active_kid not in self.jwt_keys:
            raise SettingsError("API_JWT_ACTIVE_KID must name one of the kids in API_JWT_KEYS")
        for kid, secret in self.jwt_keys.items():
            _checked(f"API_JWT_KEYS[{kid}]", secret)
        _checked("API_PASSWORD_PEPPER", self.password_pepper)
        if not self.mfa_keys:
            raise SettingsError("API_MFA_KEYS is not set")
        for kid, secret in self.mfa_keys.items():
            _checked(f"API_MFA_KEYS[{kid}]", secret)
        if not 4 <= self.bcrypt_cost <= 31:
            raise SettingsError("API_BCRYPT_COST must be between 4 and 31")

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> ApiSettings:
        """Build settings from environment variables; raise SettingsError on a bad value."""
        values = envspec.read(OPTIONS, env)
        for required in ("API_JWT_KEYS", "API_PASSWORD_PEPPER", "API_MFA_KEYS"):
            if not env.get(required, "").strip():
                raise SettingsError(f"{required} is not set")
        values.setdefault("jwt_active_kid", next(iter(values["jwt_keys"])))
        if "ready_timeout_ms" in values:
            values["ready_timeout_s"] = values.pop("ready_timeout_ms") / 1000
        return cls(
            **values,
            accounts=AccountSettings.from_env(env),
            metrics_multiproc_dir=metrics_dir.configured(env),
        )


def _checked(name: str, secret: bytes) -> None:
    try:
        check_secret(secret)
    except ValueError as exc:
        raise SettingsError(f"{name} {exc}") from None


def _task_set(raw: str) -> frozenset[str]:
    return frozenset(envspec.names(raw))


_int = envspec.integer
# Read by the app (the client's address) and by the server (limits per client address).
TRUSTED_PROXY_HOPS: Option[int] = Option(
    "API_TRUSTED_PROXY_HOPS", "trusted_proxy_hops", _int(0, 10), "proxies in front"
)
OPTIONS: tuple[Option[Any], ...] = (
    Option("API_JWT_KEYS", "jwt_keys", parse_keyring, "kid:base64secret,...", secret=True),
    Option("API_JWT_ACTIVE_KID", "jwt_active_kid", envspec.text, "kid that signs new tokens"),
    Option("API_PASSWORD_PEPPER", "password_pepper", decode_secret, "base64", secret=True),
    Option(
        "API_JWT_SIGNING_KEYS",
        "jwt_signing_keys",
        parse_signing_keys,
        "<published>.<base64url P-256 key>,...",
        secret=True,
    ),
    Option(
        "API_MFA_KEYS",
        "mfa_keys",
        parse_keyring,
        "kid:base64secret,... keys sealing second-factor secrets; the first is active",
        secret=True,
    ),
    Option("API_MFA_ISSUER", "mfa_issuer", envspec.text, "name authenticator apps show"),
    Option("API_JWT_ISSUER", "jwt_issuer", envspec.text, "`iss` claim"),
    Option("API_JWT_AUDIENCE", "jwt_audience", envspec.text, "`aud` claim"),
    Option("API_JWT_LEEWAY_S", "jwt_leeway_s", _int(0, 300), "clock-skew leeway"),
    Option("API_ACCESS_TTL_S", "access_ttl_s", _int(30, 86400), "access-token lifetime"),
    Option("API_SESSION_IDLE_S", "session_idle_s", _int(60, 10**8), "idle session end"),
    Option("API_SESSION_MAX_AGE_S", "session_max_age_s", _int(60, 10**9), "session lifetime"),
    Option("API_BCRYPT_COST", "bcrypt_cost", _int(4, 31), "bcrypt work factor"),
    Option("API_HASH_THREADS", "hash_threads", _int(1, 256), "bcrypt threads per worker"),
    Option("API_HASH_NICENESS", "hash_niceness", _int(0, 19), "nice value of those threads"),
    Option("API_MAX_BODY_BYTES", "max_body_bytes", _int(1024, 16 << 20), "larger bodies: 413"),
    Option("API_BODY_TIMEOUT_S", "body_timeout_s", _int(1, 3600), "whole-body deadline: 408"),
    Option("API_LOGIN_WINDOW_S", "login_window_s", _int(1, 86400), "per-address window"),
    Option(
        "API_LOGIN_MAX_FAILURES_PER_IP",
        "login_max_failures_per_ip",
        _int(1, 10**6),
        "failed logins per client address per window",
    ),
    Option(
        "API_LOGIN_FREE_FAILURES",
        "login_free_failures",
        _int(1, 1000),
        "failures of one account from one address before delays start",
    ),
    Option("API_LOGIN_BACKOFF_CAP_S", "login_backoff_cap_s", _int(1, 86400), "longest delay"),
    Option(
        "API_LOGIN_MAX_FAILURES_PER_ACCOUNT",
        "login_max_failures_per_account",
        _int(1, 10**6),
        "consecutive failures of one account before only its known networks may try",
    ),
    Option(
        "API_LOGIN_MAX_FAILURES_PER_KNOWN_NETWORK",
        "login_max_failures_per_known_network",
        _int(1, 10**6),
        "failures of one account from its own networks before even they must wait",
    ),
    Option(
        "API_REFRESH_GRACE_S",
        "refresh_grace_s",
        _int(0, 60),
        "a just-rotated refresh token presented again this soon gets the same new pair",
    ),
    Option(
        "API_LOGIN_LEDGER_FLUSH_MS",
        "login_ledger_flush_ms",
        _int(0, 60_000),
        "how often a worker writes its logins' bookkeeping in bulk (0: at once)",
    ),
    Option(
        "API_MAX_SESSIONS_PER_USER",
        "max_sessions_per_user",
        _int(1, 10**4),
        "live sessions per account; the oldest beyond are ended",
    ),
    Option(
        "API_ADMIN_RECENT_SIGNIN_S",
        "admin_recent_signin_s",
        _int(60, 86400),
        "how recent a dashboard sign-in must be for role changes and bulk deletes",
    ),
    Option(
        "API_LOGIN_ACCOUNT_WINDOW_S",
        "login_account_window_s",
        _int(60, 30 * 86400),
        "how long an account's failures count",
    ),
    Option("API_SIGNUP_WINDOW_S", "signup_window_s", _int(1, 86400), "sign-up window"),
    Option("API_SIGNUP_MAX_PER_IP", "signup_max_per_ip", _int(1, 10**6), "sign-ups per window"),
    Option("API_SUBMITTABLE_TASKS", "submittable_tasks", _task_set, "tasks clients may submit"),
    Option(
        "API_MAX_CLIENT_PRIORITY",
        "max_client_priority",
        _int(-1000, 1000),
        "highest priority a client may give its job",
    ),
    Option(
        "API_MAX_ACTIVE_JOBS_PER_USER",
        "max_active_jobs_per_user",
        _int(1, 10**6),
        "pending and running jobs one user may have",
    ),
    Option("API_READY_TIMEOUT_MS", "ready_timeout_ms", _int(10, 60000), "/readyz deadline"),
    Option("API_DB_TIMEOUT_MS", "db_timeout_ms", _int(10, 600000), "database deadline"),
    Option("API_DB_POOL_SIZE", "db_pool_size", _int(1, 10000), "connections per worker"),
    Option("API_DB_MAX_IN_FLIGHT", "db_max_in_flight", _int(1, 10000), "operations at once"),
    Option("API_AUTH_CACHE_SIZE", "auth_cache_size", _int(0, 10**7), "users cached (0: off)"),
    Option("API_ADMIN_ENABLED", "admin_enabled", envspec.flag, "serve the dashboard at /admin"),
    Option(
        "API_ADMIN_REDACT_KEYS",
        "admin_redact_keys",
        _lower_names,
        "payload keys the dashboard hides",
    ),
    TRUSTED_PROXY_HOPS,
)


@dataclass(frozen=True)
class ServerSettings:
    """gunicorn's settings for the API (deploy/gunicorn.conf.py turns them into its names)."""

    bind: str = "127.0.0.1:8000"
    workers: int = _cores
    worker_connections: int = 1000
    timeout_s: int = 30
    graceful_timeout_s: int = 30
    keepalive_s: int = 5
    max_requests: int = 0
    access_log: str | None = None
    control_socket: str = ""
    # Connections one worker takes from one client address (0: no limit). Behind a proxy every
    # connection comes from the proxy, which limits per client itself: then it defaults to 0.
    max_connections_per_client: int = DIRECT_CLIENT_CONNECTIONS

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> ServerSettings:
        """Build the server settings from environment variables; raise SettingsError."""
        values = envspec.read(SERVER_OPTIONS, env)
        if "max_connections_per_client" not in values:
            behind_proxy = envspec.read([TRUSTED_PROXY_HOPS], env).get("trusted_proxy_hops", 0)
            values["max_connections_per_client"] = 0 if behind_proxy else DIRECT_CLIENT_CONNECTIONS
        return cls(**values)


SERVER_OPTIONS: tuple[Option[Any], ...] = (
    Option("API_BIND", "bind", envspec.text, "gunicorn bind address"),
    Option("API_WORKERS", "workers", _int(1, 1024), "gevent worker processes"),
    Option("API_WORKER_CONNECTIONS", "worker_connections", _int(1, 100000), "greenlets"),
    Option("API_TIMEOUT_S", "timeout_s", _int(1, 3600), "silent worker kill"),
    Option("API_GRACEFUL_TIMEOUT_S", "graceful_timeout_s", _int(1, 3600), "stop grace"),
    Option("API_KEEPALIVE_S", "keepalive_s", _int(0, 3600), "keep-alive"),
    Option("API_MAX_REQUESTS", "max_requests", _int(0, 10**9), "recycle after N requests"),
    Option("API_ACCESS_LOG", "access_log", envspec.text, "- or a path"),
    Option("API_CONTROL_SOCKET", "control_socket", envspec.text, "control socket path"),
    Option(
        "API_MAX_CONNECTIONS_PER_CLIENT",
        "max_connections_per_client",
        _int(0, 100000),
        "connections per worker from one client address",
    ),
)

"""API settings: one frozen dataclass, parsed from an environment mapping by `from_env`.

Only `api/wsgi.py` passes the real environment; tests build settings directly. Secrets are
validated here so that the app refuses to start with a missing, short or placeholder secret.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import string
from collections.abc import Mapping
from dataclasses import dataclass, field

MIN_SECRET_BYTES = 32
_KID_RE = re.compile(r"^[A-Za-z0-9._-]{1,32}$")
# Well-known values copied from tutorials and .env examples; compared case-insensitively.
_PLACEHOLDERS = frozenset(
    {
        "changeme",
        "change-me",
        "change_me",
        "secret",
        "your-256-bit-secret",
        "your_secret_key",
        "supersecret",
        "placeholder",
        "dev",
        "development",
        "test",
        "example",
        "password",
        "jwt-secret",
        "xxx",
    }
)
_PRINTABLE = frozenset(string.printable.encode())


class ApiConfigError(ValueError):
    """The API's configuration is unusable; the message names the variable and the reason."""


@dataclass(frozen=True)
class ApiSettings:
    """Everything the API needs to know, with units in the names. Secrets are raw bytes."""

    jwt_keys: Mapping[str, bytes]
    jwt_active_kid: str
    password_pepper: bytes
    jwt_issuer: str = "jobauth"
    jwt_audience: str = "jobauth-api"
    jwt_leeway_s: int = 30
    access_ttl_s: int = 900
    session_idle_s: int = 14 * 86400
    session_max_age_s: int = 30 * 86400
    bcrypt_cost: int = 12
    hash_threads: int = field(default_factory=lambda: os.cpu_count() or 1)
    hash_niceness: int = 10
    max_body_bytes: int = 64 * 1024
    login_window_s: int = 900
    login_max_failures_per_account: int = 10
    login_max_failures_per_ip: int = 100
    signup_window_s: int = 3600
    signup_max_per_ip: int = 20
    submittable_tasks: frozenset[str] = frozenset({"bench.noop", "bench.sleep"})
    ready_timeout_s: float = 1.0
    db_timeout_ms: int = 2000
    db_pool_size: int = 50
    # Database operations one worker runs at once; the rest queue in arrival order (api/gate.py).
    db_max_in_flight: int = 4
    trusted_proxy_hops: int = 0
    metrics_multiproc_dir: str | None = None

    def __post_init__(self) -> None:
        if self.jwt_active_kid not in self.jwt_keys:
            raise ApiConfigError("API_JWT_ACTIVE_KID must name one of the kids in API_JWT_KEYS")
        for kid, secret in self.jwt_keys.items():
            check_secret(f"API_JWT_KEYS[{kid}]", secret)
        check_secret("API_PASSWORD_PEPPER", self.password_pepper)
        if not 4 <= self.bcrypt_cost <= 31:
            raise ApiConfigError("API_BCRYPT_COST must be between 4 and 31")

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> ApiSettings:
        """Build settings from environment variables; raise ApiConfigError on a bad value."""
        keys = parse_jwt_keys(env.get("API_JWT_KEYS", ""))
        return cls(
            jwt_keys=keys,
            jwt_active_kid=env.get("API_JWT_ACTIVE_KID", "") or next(iter(keys)),
            password_pepper=decode_secret("API_PASSWORD_PEPPER", env.get("API_PASSWORD_PEPPER")),
            jwt_issuer=env.get("API_JWT_ISSUER", cls.jwt_issuer),
            jwt_audience=env.get("API_JWT_AUDIENCE", cls.jwt_audience),
            jwt_leeway_s=_int(env, "API_JWT_LEEWAY_S", cls.jwt_leeway_s, 0, 300),
            access_ttl_s=_int(env, "API_ACCESS_TTL_S", cls.access_ttl_s, 30, 86400),
            session_idle_s=_int(env, "API_SESSION_IDLE_S", cls.session_idle_s, 60, 10**8),
            session_max_age_s=_int(env, "API_SESSION_MAX_AGE_S", cls.session_max_age_s, 60, 10**9),
            bcrypt_cost=_int(env, "API_BCRYPT_COST", cls.bcrypt_cost, 4, 31),
            hash_threads=_int(env, "API_HASH_THREADS", os.cpu_count() or 1, 1, 256),
            hash_niceness=_int(env, "API_HASH_NICENESS", cls.hash_niceness, 0, 19),
            max_body_bytes=_int(env, "API_MAX_BODY_BYTES", cls.max_body_bytes, 1024, 16 << 20),
            login_window_s=_int(env, "API_LOGIN_WINDOW_S", cls.login_window_s, 1, 86400),
            login_max_failures_per_account=_int(
                env, "API_LOGIN_MAX_FAILURES_PER_ACCOUNT", 10, 1, 10**6
            ),
            login_max_failures_per_ip=_int(env, "API_LOGIN_MAX_FAILURES_PER_IP", 100, 1, 10**6),
            signup_window_s=_int(env, "API_SIGNUP_WINDOW_S", cls.signup_window_s, 1, 86400),
            signup_max_per_ip=_int(env, "API_SIGNUP_MAX_PER_IP", cls.signup_max_per_ip, 1, 10**6),
            submittable_tasks=_task_list(env.get("API_SUBMITTABLE_TASKS")),
            ready_timeout_s=_int(env, "API_READY_TIMEOUT_MS", 1000, 10, 60000) / 1000,
            db_timeout_ms=_int(env, "API_DB_TIMEOUT_MS", cls.db_timeout_ms, 10, 600000),
            db_pool_size=_int(env, "API_DB_POOL_SIZE", cls.db_pool_size, 1, 10000),
            db_max_in_flight=_int(env, "API_DB_MAX_IN_FLIGHT", cls.db_max_in_flight, 1, 10000),
            trusted_proxy_hops=_int(env, "API_TRUSTED_PROXY_HOPS", 0, 0, 10),
            metrics_multiproc_dir=env.get("PROMETHEUS_MULTIPROC_DIR") or None,
        )


def parse_jwt_keys(raw: str) -> dict[str, bytes]:
    """Parse "kid:base64secret,kid:base64secret" into {kid: secret}; the order is kept."""
    keys: dict[str, bytes] = {}
    for item in (part.strip() for part in raw.split(",")):
        if not item:
            continue
        kid, sep, encoded = item.partition(":")
        if not sep or not _KID_RE.match(kid):
            raise ApiConfigError(
                "API_JWT_KEYS must be comma-separated kid:base64secret pairs "
                "(kid: 1-32 of A-Z a-z 0-9 . _ -)"
            )
        if kid in keys:
            raise ApiConfigError(f"API_JWT_KEYS names kid {kid!r} twice")
        keys[kid] = decode_secret(f"API_JWT_KEYS[{kid}]", encoded)
    if not keys:
        raise ApiConfigError("API_JWT_KEYS is not set: give at least one kid:base64secret")
    return keys


def decode_secret(name: str, encoded: str | None) -> bytes:
    """Decode a base64 (standard or URL-safe) secret and check it; raise ApiConfigError."""
    if not encoded:
        raise ApiConfigError(f"{name} is not set")
    if encoded.strip().lower() in _PLACEHOLDERS:
        raise ApiConfigError(f"{name} is a well-known placeholder; generate a random secret")
    text = encoded.strip().replace("-", "+").replace("_", "/")
    try:
        secret = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise ApiConfigError(f"{name} must be base64 of random bytes") from None
    check_secret(name, secret)
    return secret


def check_secret(name: str, secret: bytes) -> None:
    """Refuse short secrets and ones that look typed by a human rather than generated."""
    if len(secret) < MIN_SECRET_BYTES:
        raise ApiConfigError(f"{name} must decode to at least {MIN_SECRET_BYTES} bytes")
    # 32 random bytes are all printable ASCII with probability ~1e-14: such a value was typed.
    if all(byte in _PRINTABLE for byte in secret) or len(set(secret)) < MIN_SECRET_BYTES // 2:
        raise ApiConfigError(f"{name} looks like a placeholder; use random bytes (base64)")


def _int(env: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ApiConfigError(f"{name} must be an integer, got {raw!r}") from None
    if not low <= value <= high:
        raise ApiConfigError(f"{name} must be between {low} and {high}, got {value}")
    return value


def _task_list(raw: str | None) -> frozenset[str]:
    if raw is None:
        return ApiSettings.submittable_tasks
    return frozenset(name.strip() for name in raw.split(",") if name.strip())

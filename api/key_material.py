"""Secrets from the environment: decoded from base64 and refused when they look made up.

The API refuses to start with a missing, short (< 32 bytes), placeholder (`changeme`, `secret`,
...) or human-typed (all printable ASCII) secret: each is a value someone copied from a tutorial
or typed, and a token signed with it can be forged by whoever guesses it.
"""

from __future__ import annotations

import base64
import binascii
import re
import string

from runtime.env import names as env_names

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


def parse_keyring(raw: str) -> dict[str, bytes]:
    """Parse "kid:base64secret,kid:base64secret" into {kid: secret}; the order is kept.

    Raises ValueError with the reason (the caller names the variable)."""
    keys: dict[str, bytes] = {}
    for item in env_names(raw):
        kid, sep, encoded = item.partition(":")
        if not sep or not _KID_RE.match(kid):
            raise ValueError(
                "must be comma-separated kid:base64secret pairs (kid: 1-32 of A-Z a-z 0-9 . _ -)"
            )
        if kid in keys:
            raise ValueError(f"names kid {kid!r} twice")
        try:
            keys[kid] = decode_secret(encoded)
        except ValueError as exc:
            raise ValueError(f"kid {kid!r}: {exc}") from None
    if not keys:
        raise ValueError("must hold at least one kid:base64secret")
    return keys


def decode_secret(encoded: str) -> bytes:
    """Decode a base64 (standard or URL-safe) secret and check it; raise ValueError."""
    if encoded.strip().lower() in _PLACEHOLDERS:
        raise ValueError("is a well-known placeholder; generate a random secret")
    text = encoded.strip().replace("-", "+").replace("_", "/")
    try:
        secret = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("must be base64 of random bytes") from None
    check_secret(secret)
    return secret


def check_secret(secret: bytes) -> None:
    """Refuse short secrets and ones that look typed by a human rather than generated."""
    if len(secret) < MIN_SECRET_BYTES:
        raise ValueError(f"must decode to at least {MIN_SECRET_BYTES} bytes")
    # 32 random bytes are all printable ASCII with probability ~1e-14: such a value was typed.
    if all(byte in _PRINTABLE for byte in secret) or len(set(secret)) < MIN_SECRET_BYTES // 2:
        raise ValueError("looks like a placeholder; use random bytes (base64)")

"""ES256 keys that sign access tokens, and the JWKS that publishes their public halves.

Why: with HS256 whoever can verify a token can also forge one. Services that check our access
tokens get them from `GET /.well-known/jwks.json` instead of a shared secret (RFC 7517; the
tokens follow RFC 9068's JWT access-token profile). Refresh tokens stay HS256: nobody else ever
verifies them.

Keys come from the environment, API_JWT_SIGNING_KEYS = "<published>.<key>,...": `published` is
the Unix time from which the key is in the JWKS, `key` the base64url PKCS#8 DER of a P-256
private key; `python -m api.auth.tokens.keys new` prints a new entry. The `kid` is the key's
RFC 7638 thumbprint, computed, never configured.

Rotation without a flag day (Auth0's previous/current/next): every listed key is published;
the one that signs is the newest key published at least PUBLISH_S ago (longer than the JWKS
cache time, so every verifier that caches the JWKS has seen it before it meets a token signed
with it); older keys keep verifying the tokens they signed. To rotate: add a new entry (the
"next" key) and deploy; it starts signing by itself PUBLISH_S later; remove the old entry once
its last token has expired (`python -m api.auth.tokens.keys show` says when). With a single
brand-new key (a first deployment) that key signs at once: no verifier can have cached it yet
either way.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from runtime.env import names as env_names

ALGORITHM = "ES256"
JWKS_MAX_AGE_S = 300  # Cache-Control of the JWKS
PUBLISH_S = JWKS_MAX_AGE_S + 60  # a key signs only after it has been published this long


@dataclass(frozen=True)
class SigningKey:
    """One ES256 key: its thumbprint kid, its private half, when it was published."""

    kid: str
    private: ec.EllipticCurvePrivateKey
    published_at: datetime

    @property
    def public_jwk(self) -> dict[str, str]:
        """The public half as a JWK (RFC 7518 EC members)."""
        numbers = self.private.public_key().public_numbers()
        return {"kty": "EC", "crv": "P-256", "x": _b64(numbers.x.to_bytes(32, "big")),
                "y": _b64(numbers.y.to_bytes(32, "big"))}  # fmt: skip


def parse_signing_keys(raw: str) -> tuple[SigningKey, ...]:
    """Parse "<published>.<base64url PKCS#8>,..." into keys, oldest first; raise ValueError."""
    keys: list[SigningKey] = []
    for item in env_names(raw):
        published, sep, encoded = item.partition(".")
        if not sep or not published.isdigit():
            raise ValueError("must be comma-separated <unix time>.<base64url key> entries")
        try:
            der = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
            private = serialization.load_der_private_key(der, password=None)
        except ValueError:
            raise ValueError("holds a key that is not base64url PKCS#8 DER") from None
        if not isinstance(private, ec.EllipticCurvePrivateKey) or not isinstance(
            private.curve, ec.SECP256R1
        ):
            raise ValueError("holds a key that is not a P-256 (ES256) private key")
        at = datetime.fromtimestamp(int(published), UTC)
        keys.append(SigningKey(thumbprint(private), private, at))
    if len({key.kid for key in keys}) != len(keys):
        raise ValueError("lists the same key twice")
    return tuple(sorted(keys, key=lambda k: k.published_at))


def new_entry(now: datetime) -> str:
    """A fresh P-256 key as an API_JWT_SIGNING_KEYS entry published at `now`."""
    private = ec.generate_private_key(ec.SECP256R1())
    der = private.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return f"{int(now.timestamp())}.{_b64(der)}"


def thumbprint(private: ec.EllipticCurvePrivateKey) -> str:
    """RFC 7638: SHA-256 of the public JWK's required members, lexically ordered, no spaces."""
    jwk = SigningKey("", private, datetime.min.replace(tzinfo=UTC)).public_jwk
    canonical = json.dumps({k: jwk[k] for k in ("crv", "kty", "x", "y")}, separators=(",", ":"))
    return _b64(hashlib.sha256(canonical.encode()).digest())


def signing_key(keys: tuple[SigningKey, ...], now: datetime) -> SigningKey | None:
    """The key that signs at `now`: the newest one published at least PUBLISH_S ago, else (only
    new keys) the oldest published one; None if none is published (then HS256 signs)."""
    ready = [k for k in keys if k.published_at <= now - timedelta(seconds=PUBLISH_S)]
    if ready:
        return ready[-1]
    published = [k for k in keys if k.published_at <= now]
    return published[0] if published else None


def jwks(keys: tuple[SigningKey, ...], now: datetime) -> dict[str, Any]:
    """The published set: every key whose publication time has come."""
    return {
        "keys": [
            {**key.public_jwk, "kid": key.kid, "alg": ALGORITHM, "use": "sig"}
            for key in keys
            if key.published_at <= now
        ]
    }


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

"""The second factor's secrets: TOTP (RFC 6238, with `pyotp`), its secrets sealed at rest, and
single-use recovery codes.

    secrets   160 random bits (RFC 4226's recommended length), base32 for authenticator apps;
              stored sealed with AES-256-GCM under a key from API_MFA_KEYS (`kid:base64`, first
              kid active: rotate by adding a new kid in front and keeping the old while secrets
              sealed with it remain), the user id as associated data (a sealed secret copied onto
              another account does not open)
    codes     6 digits, 30-second steps; a code of the current step or one step either side is
              accepted (clock drift), and `matching_step` says which step matched, so the caller
              can accept each step once only (flows/mfa.py)
    recovery  10 codes of 10 characters from 29 unambiguous ones (48 bits: not guessable online
              under the login limits), shown once, stored only as HMAC-SHA256 digests under a key
              derived from API_MFA_KEYS' active secret
    QR        the otpauth URI as an SVG (`segno`; nothing leaves the server)
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pyotp
import segno
from bson import ObjectId
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

STEP_S = 30
DIGITS = 6
DRIFT_STEPS = 1
SECRET_BYTES = 20
RECOVERY_CODES = 10
RECOVERY_ALPHABET = "ABCDEFGHJKMNPQRSTVWXYZ23456789"  # no 0/O, 1/I/L, U
RECOVERY_LENGTH = 10


class SealedSecretError(Exception):
    """A sealed secret that does not open (unknown kid, altered, or another user's)."""


@dataclass(frozen=True)
class TotpKeys:
    """The keyring that seals TOTP secrets and keys the recovery-code digests."""

    keys: Mapping[str, bytes]  # kid -> secret, first kid active

    @property
    def active_kid(self) -> str:
        return next(iter(self.keys))

    def _aead(self, kid: str) -> AESGCM:
        # A 256-bit AES key per kid, derived from its secret (any length >= 32 bytes).
        key = hmac.new(self.keys[kid], b"jobauth totp seal", hashlib.sha256).digest()
        return AESGCM(key)

    def seal(self, secret: str, user_id: ObjectId) -> dict[str, Any]:
        """Return the stored form of a base32 secret: {kid, nonce, sealed}."""
        kid, nonce = self.active_kid, secrets.token_bytes(12)
        sealed = self._aead(kid).encrypt(nonce, secret.encode(), user_id.binary)
        return {"kid": kid, "nonce": nonce, "sealed": sealed}

    def open(self, stored: Mapping[str, Any], user_id: ObjectId) -> str:
        """Return the secret of a stored form; SealedSecretError if it does not open."""
        kid = stored.get("kid")
        if not isinstance(kid, str) or kid not in self.keys:
            raise SealedSecretError("unknown kid")
        try:
            plain = self._aead(kid).decrypt(
                bytes(stored["nonce"]), bytes(stored["sealed"]), user_id.binary
            )
        except (InvalidTag, KeyError, TypeError, ValueError):
            raise SealedSecretError("does not open") from None
        return plain.decode()

    def recovery_digest(self, code: str, kid: str | None = None) -> str:
        """Return the stored digest of a recovery code (normalised: case and separators) under
        `kid`'s key (the active one by default; codes keep the kid they were made under)."""
        secret = self.keys.get(kid or self.active_kid)
        if secret is None:
            raise SealedSecretError("unknown kid")
        key = hmac.new(secret, b"jobauth recovery codes", hashlib.sha256)
        return hmac.new(key.digest(), normalise_recovery(code).encode(), hashlib.sha256).hexdigest()


def new_secret() -> str:
    """Return a fresh base32 TOTP secret."""
    return base64.b32encode(secrets.token_bytes(SECRET_BYTES)).decode()


def provisioning_uri(secret: str, *, account: str, issuer: str) -> str:
    """Return the otpauth:// URI an authenticator app reads (from the QR code)."""
    return pyotp.TOTP(secret, digits=DIGITS, interval=STEP_S).provisioning_uri(
        name=account, issuer_name=issuer
    )


def qr_svg(uri: str) -> str:
    """Return the URI as a QR code in SVG: no XML declaration (it is embedded in a page) but
    the SVG namespace, so that a page parsing it as image/svg+xml gets SVG elements."""
    out = io.BytesIO()
    segno.make(uri, error="m").save(
        out, kind="svg", xmldecl=False, svgns=True, nl=False, scale=4, border=2
    )
    return out.getvalue().decode("utf-8")


def step_of(now: datetime) -> int:
    """Return the TOTP time step `now` falls in."""
    return int(now.timestamp()) // STEP_S


def matching_step(secret: str, code: str, now: datetime) -> int | None:
    """Return the time step whose code `code` is (current, or one either side), else None."""
    cleaned = "".join(code.split())
    if len(cleaned) != DIGITS or not cleaned.isdigit():
        return None
    totp = pyotp.TOTP(secret, digits=DIGITS, interval=STEP_S)
    current = step_of(now)
    for step in (current, current - DRIFT_STEPS, current + DRIFT_STEPS):
        if hmac.compare_digest(totp.generate_otp(step), cleaned):
            return step
    return None


def code_at(secret: str, at: datetime) -> str:
    """Return the code an authenticator shows at `at` (for the built-in page's tests)."""
    return pyotp.TOTP(secret, digits=DIGITS, interval=STEP_S).at(at)


def new_recovery_codes() -> list[str]:
    """Return RECOVERY_CODES fresh codes, formatted XXXXX-XXXXX."""
    codes = []
    for _ in range(RECOVERY_CODES):
        raw = "".join(secrets.choice(RECOVERY_ALPHABET) for _ in range(RECOVERY_LENGTH))
        codes.append(f"{raw[:5]}-{raw[5:]}")
    return codes


def normalise_recovery(code: str) -> str:
    """A recovery code as typed, compared without case, spaces or dashes."""
    return "".join(ch for ch in code.upper() if ch.isalnum())

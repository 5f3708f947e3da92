"""JWT issue and verify, the key chosen by `kid`, every registered claim required.

Refresh tokens are HS256 with kid-selected secrets (API_JWT_KEYS): the API is their only
issuer and verifier, and `kid` lets a new secret become active while tokens signed by the
previous one stay valid until they expire. Access tokens are ES256 when API_JWT_SIGNING_KEYS
holds keys (signing_keys.py: RFC 9068's profile, `typ: at+jwt`, verifiable by anyone from the
JWKS), else HS256 like refresh tokens. Switching to ES256 is a deploy: from the moment ES256
signs, an HS256 access token is accepted only if it was issued before then, and only for one
access-token lifetime afterwards (`hs256_grace_s`); such a token is marked `legacy`, and the
caller checks that its session really exists (authenticate.py): the HS256 secret also signs
refresh tokens, so a holder of it must not mint access tokens for sessions that never were.

Each kid maps to exactly one (algorithm, key): an HS kid never verifies an ES256 token nor an
ES kid an HS256 one (no algorithm confusion), and the header's `alg` must be that kid's.

Verification never fetches anything: headers that point at keys (`jku`, `jwk`, `x5u`, `x5c`)
are refused outright, the algorithm list is pinned, and an unknown `kid` is a 401.

Access tokens are presented on every request, and parsing plus checking one with PyJWT was ~15%
of a worker's CPU on the profile route. So each codec remembers the claims of the last
`VERIFIED_CACHE_SIZE` access tokens that passed every check. A hit skips only what cannot
change for the same token bytes (signature, header, issuer, audience, required claims, type):
the keys are fixed for the life of the process. Time claims are checked again on every use, so
an expired token is refused exactly as before, and revocation is checked against the database
by the caller on every request either way. Refresh tokens are single-use and never cached.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import jwt

from api.auth.tokens.signing_keys import ALGORITHM as ES256
from api.auth.tokens.signing_keys import SigningKey, jwks, signing_key
from api.errors import Unauthorized

ALGORITHM = "HS256"
AT_JWT = "at+jwt"  # RFC 9068 header type of an ES256 access token
TokenType = Literal["access", "refresh"]
REQUIRED_CLAIMS = ["exp", "iat", "iss", "aud", "sub", "jti", "typ", "sid"]
VERIFIED_CACHE_SIZE = 1024
_FORBIDDEN_HEADERS = frozenset({"jku", "jwk", "x5u", "x5c", "crit"})


@dataclass(frozen=True)
class Claims:
    """The verified claims the API uses: subject (user id), session id, token version."""

    sub: str
    sid: str
    jti: str
    typ: TokenType
    iat: int
    exp: int
    ver: int
    auth_time: int | None = None  # when the user last proved who they are (access tokens)
    email_verified: bool = False
    amr: tuple[str, ...] = ()  # how the session was signed in (access tokens, RFC 8176)
    legacy: bool = False  # an HS256 access token accepted in the grace after ES256 took over


class TokenCodec:
    """Issue and verify this API's JWTs with the configured keys."""

    def __init__(
        self,
        keys: Mapping[str, bytes],
        active_kid: str,
        *,
        issuer: str,
        audience: str,
        leeway_s: int,
        cache_size: int = VERIFIED_CACHE_SIZE,
        signing_keys: tuple[SigningKey, ...] = (),
        hs256_grace_s: int = 900,
    ) -> None:
        self._keys = dict(keys)
        self._signing = signing_keys
        # From when ES256 signs access tokens (the first published key signs at once).
        self._es_since = min((k.published_at for k in signing_keys), default=None)
        self._hs256_grace_s = hs256_grace_s
        self._by_kid: dict[str, tuple[str, Any]] = {k: (ALGORITHM, v) for k, v in keys.items()}
        for signing in signing_keys:
            self._by_kid[signing.kid] = (ES256, signing.private.public_key())
        # Insertion-ordered: when full, the oldest entry goes (bounded memory, ~1 KiB each).
        self._verified: dict[str, Claims] = {}
        self._cache_size = cache_size
        self._active_kid = active_kid
        self._issuer = issuer
        self._audience = audience
        self._leeway_s = leeway_s

    def issue(
        self,
        typ: TokenType,
        *,
        sub: str,
        sid: str,
        ver: int,
        now: datetime,
        expires_at: datetime,
        extra: Mapping[str, Any] | None = None,
    ) -> str:
        """Return a signed token of type `typ` for user `sub` in session `sid`; `extra` adds
        claims (an access token's auth_time and email_verified)."""
        iat = int(now.timestamp())
        claims: dict[str, Any] = {
            "iss": self._issuer,
            "aud": self._audience,
            "sub": sub,
            "sid": sid,
            "ver": ver,
            "typ": typ,
            "iat": iat,
            "exp": int(expires_at.timestamp()),
            # 256 bits: refresh tokens are stored as SHA-256 digests, so they must be unguessable.
            "jti": secrets.token_urlsafe(32),
            **(extra or {}),
        }
        es_key = signing_key(self._signing, now) if typ == "access" else None
        if es_key is not None:
            claims["client_id"] = self._issuer  # our own first-party clients
            return jwt.encode(
                claims, es_key.private, algorithm=ES256, headers={"kid": es_key.kid, "typ": AT_JWT}
            )
        key = self._keys[self._active_kid]
        return jwt.encode(claims, key, algorithm=ALGORITHM, headers={"kid": self._active_kid})

    def jwks(self, now: datetime) -> dict[str, Any]:
        """The public keys of the access tokens, as a JWK Set."""
        return jwks(self._signing, now)

    def verify(self, token: str, expected: TokenType, *, now: datetime) -> Claims:
        """Return the claims of a valid token of type `expected`; raise Unauthorized otherwise."""
        claims = self._verified.get(token) if expected == "access" else None
        if claims is None:
            claims = self._verify_signed(token, expected)
            if expected == "access" and self._cache_size > 0:
                if len(self._verified) >= self._cache_size:
                    self._verified.pop(next(iter(self._verified)), None)
                self._verified[token] = claims
        now_s = now.timestamp()
        if claims.legacy and not self._legacy_allowed(claims, now_s):
            raise Unauthorized(code="invalid_token")
        if claims.iat > now_s + self._leeway_s:
            raise Unauthorized(code="invalid_token")
        if claims.exp <= now_s - self._leeway_s:
            raise Unauthorized("The token has expired.", code="token_expired")
        return claims

    def _legacy_allowed(self, claims: Claims, now_s: float) -> bool:
        """An HS256 access token after the switch: issued before it, within the grace."""
        if self._es_since is None:
            return True
        since = self._es_since.timestamp()
        return claims.iat <= since + self._leeway_s and now_s <= since + self._hs256_grace_s

    def _verify_signed(self, token: str, expected: TokenType) -> Claims:
        """Check everything but the time claims: header, signature, registered claims, type."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise Unauthorized(code="invalid_token") from None
        algorithm, key = self._key_for(header, expected)
        try:
            payload = jwt.decode(
                token,
                key,
                algorithms=[algorithm],
                audience=self._audience,
                issuer=self._issuer,
                leeway=self._leeway_s,
                # Time claims are checked below against the injected clock, not time.time().
                options={"require": REQUIRED_CLAIMS, "verify_exp": False, "verify_iat": False},
            )
        except jwt.PyJWTError:
            raise Unauthorized(code="invalid_token") from None
        legacy = expected == "access" and algorithm == ALGORITHM and bool(self._signing)
        return _claims(payload, expected, legacy=legacy)

    def _key_for(self, header: Mapping[str, Any], expected: TokenType) -> tuple[str, Any]:
        """The kid's one (algorithm, key); the header must name that algorithm, and an ES256
        token must be an access token typed `at+jwt`."""
        kid = header.get("kid")
        found = self._by_kid.get(kid) if isinstance(kid, str) else None
        if found is None or _FORBIDDEN_HEADERS & header.keys() or header.get("alg") != found[0]:
            raise Unauthorized(code="invalid_token")
        if found[0] == ES256 and (expected != "access" or header.get("typ") != AT_JWT):
            raise Unauthorized(code="invalid_token")
        return found


def _claims(payload: Mapping[str, Any], expected: TokenType, *, legacy: bool = False) -> Claims:
    typ, sub, sid, jti = payload["typ"], payload["sub"], payload["sid"], payload["jti"]
    iat, exp, ver = payload["iat"], payload["exp"], payload.get("ver", 0)
    auth_time, email_verified = payload.get("auth_time"), payload.get("email_verified", False)
    if typ != expected:
        raise Unauthorized(code="wrong_token_type")
    if not all(isinstance(v, str) and v for v in (sub, sid, jti)):
        raise Unauthorized(code="invalid_token")
    if not all(type(v) is int for v in (iat, exp, ver)):
        raise Unauthorized(code="invalid_token")
    if (auth_time is not None and type(auth_time) is not int) or type(email_verified) is not bool:
        raise Unauthorized(code="invalid_token")
    amr = payload.get("amr", [])
    if not isinstance(amr, list) or not all(isinstance(m, str) for m in amr):
        raise Unauthorized(code="invalid_token")
    return Claims(
        sub=sub,
        sid=sid,
        jti=jti,
        typ=expected,
        iat=iat,
        exp=exp,
        ver=ver,
        auth_time=auth_time,
        email_verified=email_verified,
        amr=tuple(amr),
        legacy=legacy,
    )

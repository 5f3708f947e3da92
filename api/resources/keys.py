"""The access tokens' public keys: `GET /.well-known/jwks.json` (RFC 7517), for services that
verify our access tokens without any secret of ours (api/auth/tokens/signing_keys.py)."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime

import falcon
import msgspec

from api.auth.tokens.codec import TokenCodec
from api.auth.tokens.signing_keys import JWKS_MAX_AGE_S
from api.middleware import API_HEADERS
from api.openapi import Operation

JWKS_HEADERS = {**API_HEADERS, "Cache-Control": f"public, max-age={JWKS_MAX_AGE_S}"}


class Jwk(msgspec.Struct):
    """One public key (RFC 7517, EC members of RFC 7518)."""

    kty: str
    crv: str
    x: str
    y: str
    kid: str
    alg: str
    use: str


class JwkSet(msgspec.Struct):
    """The published keys."""

    keys: list[Jwk]


class JwksResource:
    """GET /.well-known/jwks.json."""

    docs = {
        "get": Operation(
            "The public keys of the ES256 access tokens, as a JWK Set",
            "auth",
            content_type="application/jwk-set+json",
            response=JwkSet,
            description=(
                "Each key's `kid` is its RFC 7638 thumbprint. Cached for "
                f"{JWKS_MAX_AGE_S} s; a new key is listed longer than that before it signs. "
                "Empty while access tokens are HS256 (no API_JWT_SIGNING_KEYS)."
            ),
        )
    }

    def __init__(self, codec: TokenCodec, clock: Callable[[], datetime]) -> None:
        self._codec = codec
        self._clock = clock

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.content_type = "application/jwk-set+json"
        resp.data = json.dumps(self._codec.jwks(self._clock())).encode()
        resp.context.headers = JWKS_HEADERS

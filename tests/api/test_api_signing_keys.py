"""ES256 access tokens: keys from the environment, the JWKS, rotation by publication time, no
algorithm confusion between the HS and ES families, and a verifier that holds only the JWKS
URL (PyJWT's PyJWKClient, in a process of its own)."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest
from apihelpers import AppFactory, Clock, bearer, signup
from apiserver import ApiServer, start_api
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from api.auth.tokens import keys as keys_cli
from api.auth.tokens.codec import TokenCodec
from api.auth.tokens.signing_keys import (
    PUBLISH_S,
    jwks,
    new_entry,
    parse_signing_keys,
    signing_key,
    thumbprint,
)
from api.errors import Unauthorized
from api.settings import ApiSettings

NOW = datetime(2026, 6, 1, tzinfo=UTC)
HS = {"hs1": os.urandom(32)}


def entry(published: datetime) -> str:
    return new_entry(published)


def codec(raw: str) -> TokenCodec:
    return TokenCodec(HS, "hs1", issuer="iss-t", audience="aud-t", leeway_s=30,
                      signing_keys=parse_signing_keys(raw))  # fmt: skip


def access(codec_: TokenCodec, now: datetime = NOW) -> str:
    return codec_.issue("access", sub="u1", sid="s1", ver=0, now=now,
                        expires_at=now + timedelta(minutes=15),
                        extra={"amr": ["pwd"], "roles": []})  # fmt: skip


def segments(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    head, body, _ = token.split(".")
    decode = lambda part: json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))  # noqa: E731
    return decode(head), decode(body)


def test_an_access_token_is_es256_at_jwt_with_the_rfc_9068_claims() -> None:
    """Access tokens are ES256 at+jwt with RFC 9068's claims; refresh tokens stay HS256."""
    raw = entry(NOW - timedelta(days=1))
    (key,) = parse_signing_keys(raw)
    token = access(codec(raw))
    header, claims = segments(token)
    assert header == {"alg": "ES256", "kid": key.kid, "typ": "at+jwt"}
    assert {"iss", "sub", "aud", "exp", "iat", "jti", "client_id", "sid", "amr", "roles"} <= set(
        claims
    )
    assert codec(raw).verify(token, "access", now=NOW).sub == "u1"
    refresh = codec(raw).issue("refresh", sub="u1", sid="s1", ver=0, now=NOW,
                               expires_at=NOW + timedelta(days=1))  # fmt: skip
    assert segments(refresh)[0]["alg"] == "HS256"  # refresh tokens stay opaque to others


def test_kid_is_the_rfc_7638_thumbprint_and_the_jwks_publishes_only_public_halves() -> None:
    """The kid is the key's thumbprint and the JWKS holds no private member."""
    raw = entry(NOW - timedelta(days=1))
    (key,) = parse_signing_keys(raw)
    assert key.kid == thumbprint(key.private) and len(key.kid) == 43
    (published,) = jwks(parse_signing_keys(raw), NOW)["keys"]
    assert published["kid"] == key.kid and published["alg"] == "ES256"
    assert set(published) == {"kty", "crv", "x", "y", "kid", "alg", "use"}  # no "d"
    # PyJWT reads it back to the same public key.
    assert jwt.PyJWK(published).key.public_numbers() == key.private.public_key().public_numbers()


def test_a_new_key_signs_only_after_it_has_been_published_longer_than_the_cache_time() -> None:
    """A next key signs only PUBLISH_S after its publication; a lone first key signs at once."""
    old, new = entry(NOW - timedelta(days=30)), entry(NOW)
    keys = parse_signing_keys(f"{new},{old}")
    assert signing_key(keys, NOW) is keys[0]  # the old one: oldest first after parsing
    assert signing_key(keys, NOW + timedelta(seconds=PUBLISH_S - 1)) is keys[0]
    assert signing_key(keys, NOW + timedelta(seconds=PUBLISH_S)) is keys[1]
    alone = parse_signing_keys(entry(NOW))
    assert signing_key(alone, NOW) is alone[0]  # a first deployment signs at once
    later = parse_signing_keys(entry(NOW + timedelta(hours=1)))
    assert signing_key(later, NOW) is None and jwks(later, NOW) == {"keys": []}


def test_after_a_rotation_old_tokens_verify_until_their_key_is_retired() -> None:
    """After a rotation the previous key's tokens verify until it is removed from the list."""
    old, new = entry(NOW - timedelta(days=30)), entry(NOW - timedelta(days=1))
    before = access(codec(old), NOW - timedelta(minutes=5))
    rotated = codec(f"{old},{new}")
    after = access(rotated)
    assert segments(after)[0]["kid"] != segments(before)[0]["kid"]
    assert rotated.verify(before, "access", now=NOW).sub == "u1"
    retired = codec(new)  # the old key removed from the list
    assert retired.verify(after, "access", now=NOW).sub == "u1"
    with pytest.raises(Unauthorized):
        retired.verify(before, "access", now=NOW)


def test_hs256_access_tokens_verify_only_if_issued_before_the_switch_and_only_for_a_while() -> None:
    """Once ES256 signs, an HS256 access token is accepted only if it was issued before the
    switch, only within one access-token lifetime after it, and is marked `legacy` (so its
    session is checked); one minted after the switch with the HS256 secret is refused."""
    hs_only = TokenCodec(HS, "hs1", issuer="iss-t", audience="aud-t", leeway_s=30)
    switch = NOW - timedelta(minutes=5)
    before = access(hs_only, now=switch - timedelta(minutes=1))
    assert segments(before)[0]["alg"] == "HS256"
    es = codec(entry(switch))
    claims = es.verify(before, "access", now=NOW)
    assert claims.sub == "u1" and claims.legacy
    minted_after = access(hs_only, now=NOW - timedelta(minutes=1))
    with pytest.raises(Unauthorized):
        es.verify(minted_after, "access", now=NOW)
    much_later = NOW + timedelta(minutes=20)
    with pytest.raises(Unauthorized):
        es.verify(access(hs_only, now=switch - timedelta(seconds=1)), "access", now=much_later)


def test_an_hs256_access_token_naming_no_real_session_is_refused(
    make_client: AppFactory, settings: ApiSettings, clock: Clock
) -> None:
    """During the grace after the switch to ES256, an HS256 access token (one the HS256 secret
    could have made for any `sid`) must name a live session of its user: a real session's is
    accepted, a made-up session's is refused."""
    switched = dataclasses.replace(settings, jwt_signing_keys=parse_signing_keys(entry(clock.now)))
    api = make_client(switched)
    tokens = signup(api)
    sub, sid = (segments(tokens["access_token"])[1][k] for k in ("sub", "sid"))
    hs = TokenCodec(settings.jwt_keys, settings.jwt_active_kid, issuer=settings.jwt_issuer,
                    audience=settings.jwt_audience, leeway_s=30)  # fmt: skip
    issued = clock.now - timedelta(minutes=1)  # before the switch

    def legacy(session: str) -> str:
        return hs.issue("access", sub=sub, sid=session, ver=0, now=issued,
                        expires_at=issued + timedelta(minutes=15))  # fmt: skip

    assert api.simulate_get("/users/profile", headers=bearer(legacy(sid))).status_code == 200
    made_up = api.simulate_get("/users/profile", headers=bearer(legacy("no-such-session")))
    assert made_up.status_code == 401


def forged(header: dict[str, Any], claims: dict[str, Any], key: Any, alg: str) -> str:
    return jwt.encode(claims, key, algorithm=alg, headers=header)


def hmac_signed(header: dict[str, Any], claims: dict[str, Any], secret: bytes) -> str:
    """HS256 by hand: PyJWT itself refuses a public key as an HMAC secret."""
    encode = lambda raw: base64.urlsafe_b64encode(raw).rstrip(b"=")  # noqa: E731
    signing_input = encode(json.dumps(header).encode()) + b"." + encode(json.dumps(claims).encode())
    signature = hmac.new(secret, signing_input, hashlib.sha256).digest()
    return (signing_input + b"." + encode(signature)).decode()


def test_no_algorithm_confusion_and_no_key_pointing_headers() -> None:
    """HS under ES kids and the reverse, alg none, foreign keys, jwk and jku: all refused."""
    raw = entry(NOW - timedelta(days=1))
    (key,) = parse_signing_keys(raw)
    verifier = codec(raw)
    _, claims = segments(access(verifier))
    public_pem = key.private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    other = ec.generate_private_key(ec.SECP256R1())
    published = jwks(parse_signing_keys(raw), NOW)["keys"][0]
    attempts = [
        # An HS256 token under the ES kid, signed with an HS secret, and with the public key.
        forged({"kid": key.kid, "typ": "at+jwt"}, claims, HS["hs1"], "HS256"),
        hmac_signed({"alg": "HS256", "kid": key.kid, "typ": "at+jwt"}, claims, public_pem),
        # An ES256 token (ours) under an HS kid.
        forged({"kid": "hs1", "typ": "at+jwt"}, claims, key.private, "ES256"),
        # Someone else's key under our kid; an embedded key; a key URL.
        forged({"kid": key.kid, "typ": "at+jwt"}, claims, other, "ES256"),
        forged(
            {"kid": key.kid, "typ": "at+jwt", "jwk": published},
            claims,
            key.private,
            "ES256",
        ),  # fmt: skip
        forged(
            {"kid": key.kid, "typ": "at+jwt", "jku": "http://127.0.0.1:1/jwks.json"},
            claims,
            key.private,
            "ES256",
        ),  # fmt: skip
        # Our key, but not typed as an access token.
        forged({"kid": key.kid, "typ": "JWT"}, claims, key.private, "ES256"),
    ]
    unsigned = base64.urlsafe_b64encode(json.dumps({"alg": "none", "kid": key.kid}).encode())
    body = base64.urlsafe_b64encode(json.dumps(claims).encode())
    attempts.append(f"{unsigned.decode().rstrip('=')}.{body.decode().rstrip('=')}.")
    for token in attempts:
        with pytest.raises(Unauthorized):
            verifier.verify(token, "access", now=NOW)
    es_token = access(verifier)
    with pytest.raises(Unauthorized):
        verifier.verify(es_token, "refresh", now=NOW)  # an ES token is never a refresh token


@pytest.mark.parametrize(
    "raw",
    [
        "not-a-key",
        "12.%%%",
        "12.AAAA",
        # An RSA key is not an ES256 key.
        "12." + base64.urlsafe_b64encode(
            rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
                serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        ).decode().rstrip("="),
    ],
)  # fmt: skip
def test_bad_signing_keys_are_refused_with_a_reason(raw: str) -> None:
    """Malformed entries and non-P-256 keys are refused at start with a reason."""
    with pytest.raises(ValueError):
        parse_signing_keys(raw)


def test_the_same_key_twice_is_refused() -> None:
    """One key listed twice is a configuration error."""
    raw = entry(NOW)
    with pytest.raises(ValueError, match="twice"):
        parse_signing_keys(f"{raw},{raw}")


def test_the_keys_cli_makes_entries_and_says_which_key_signs(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The keys command makes entries and names the next, current and previous keys."""
    assert keys_cli.main(["new"], {}, NOW) == 0
    made = capsys.readouterr().out.strip()
    assert parse_signing_keys(made)[0].published_at == NOW
    old = entry(NOW - timedelta(days=30))
    env = {"API_JWT_SIGNING_KEYS": f"{old},{made}"}
    assert keys_cli.main(["show"], env, NOW) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "current" in lines[0] and "next: signs from" in lines[1]
    later = NOW + timedelta(seconds=PUBLISH_S + 60)
    keys_cli.main(["show"], env, later)
    lines = capsys.readouterr().out.splitlines()
    assert "previous: verifies its tokens until" in lines[0] and "current" in lines[1]
    keys_cli.main(["show"], env, later + timedelta(hours=1))
    assert "remove it" in capsys.readouterr().out
    assert keys_cli.main(["show"], {"API_JWT_SIGNING_KEYS": "junk"}, NOW) == 2


@pytest.fixture
def es_api(mongo_env: dict[str, str]) -> Iterator[ApiServer]:
    server = start_api(mongo_env, workers=1, API_JWT_SIGNING_KEYS=new_entry(datetime.now(UTC)))
    yield server
    server.stop()


VERIFIER = """
import sys, jwt
url, token = sys.argv[1], sys.argv[2]
key = jwt.PyJWKClient(url).get_signing_key_from_jwt(token)
claims = jwt.decode(token, key.key, algorithms=["ES256"], audience="jobauth-api", issuer="jobauth")
print(claims["sub"], jwt.get_unverified_header(token)["typ"])
"""


def test_a_service_with_only_the_jwks_url_verifies_our_access_tokens(es_api: ApiServer) -> None:
    """A separate process with PyJWKClient and only the JWKS URL verifies a real access token."""
    body = {"name": "Ada", "email": "ada@example.com", "password": "orbit lantern meadow 42"}
    signed_up = es_api.request("POST", "/users/signup", body)
    assert signed_up.status == 201
    tokens = signed_up.json
    jwks_url = f"http://127.0.0.1:{es_api.port}/.well-known/jwks.json"
    answer = es_api.request("GET", "/.well-known/jwks.json")
    assert answer.status == 200 and answer.headers["cache-control"] == "public, max-age=300"
    # A separate process, no secret of ours, only the URL.
    done = subprocess.run(
        [sys.executable, "-c", VERIFIER, jwks_url, tokens["access_token"]],
        cwd="/", env={"PATH": os.environ.get("PATH", "")}, capture_output=True, text=True,
        timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    sub, typ = done.stdout.split()
    assert typ == "at+jwt" and sub == segments(tokens["access_token"])[1]["sub"]

"""JWT rules: pinned algorithm, kid-selected keys, required claims, typ separation, leeway."""

from __future__ import annotations

import base64
import json
import secrets
import warnings
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest
from jwt.warnings import InsecureKeyLengthWarning

from api.auth.tokens.codec import TokenCodec
from api.errors import Unauthorized

KEY_NEW = secrets.token_bytes(32)
KEY_OLD = secrets.token_bytes(32)
NOW = datetime(2026, 1, 1, tzinfo=UTC)


def codec(active: str = "new", keys: dict[str, bytes] | None = None) -> TokenCodec:
    return TokenCodec(
        keys or {"new": KEY_NEW, "old": KEY_OLD},
        active,
        issuer="iss-test",
        audience="aud-test",
        leeway_s=30,
    )


def claims(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "iss": "iss-test",
        "aud": "aud-test",
        "sub": "6b059b67580172644f5dbbfa",
        "sid": "s1",
        "ver": 0,
        "typ": "access",
        "iat": int(NOW.timestamp()),
        "exp": int(NOW.timestamp()) + 600,
        "jti": "j1",
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def forge(payload: dict[str, Any], headers: dict[str, Any] | None = None, key: bytes = KEY_NEW,
          algorithm: str = "HS256") -> str:  # fmt: skip
    return jwt.encode(payload, key, algorithm=algorithm, headers={"kid": "new", **(headers or {})})


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def test_issued_token_verifies_with_its_type() -> None:
    """A token the codec issued verifies and carries subject, session, version and type."""
    token = codec().issue(
        "access", sub="u", sid="s", ver=3, now=NOW, expires_at=NOW + timedelta(minutes=5)
    )
    result = codec().verify(token, "access", now=NOW)
    assert (result.sub, result.sid, result.ver, result.typ) == ("u", "s", 3, "access")
    assert jwt.get_unverified_header(token)["kid"] == "new"


@pytest.mark.parametrize(("issued", "expected"), [("access", "refresh"), ("refresh", "access")])
def test_access_and_refresh_tokens_are_not_interchangeable(issued: Any, expected: Any) -> None:
    """A refresh token is refused where an access token is expected, and vice versa."""
    token = codec().issue(
        issued, sub="u", sid="s", ver=0, now=NOW, expires_at=NOW + timedelta(minutes=5)
    )
    with pytest.raises(Unauthorized):
        codec().verify(token, expected, now=NOW)


def test_tokens_signed_with_a_previous_key_still_verify_after_rotation() -> None:
    """Rotating the active kid keeps tokens signed with the old (still listed) key valid."""
    old_token = codec(active="old").issue("access", sub="u", sid="s", ver=0, now=NOW,
                                          expires_at=NOW + timedelta(minutes=5))  # fmt: skip
    assert codec(active="new").verify(old_token, "access", now=NOW).sub == "u"


def test_a_key_removed_from_the_configuration_no_longer_verifies() -> None:
    """Once a kid is dropped from the key list its tokens are refused (unknown kid)."""
    old_token = codec(active="old").issue("access", sub="u", sid="s", ver=0, now=NOW,
                                          expires_at=NOW + timedelta(minutes=5))  # fmt: skip
    with pytest.raises(Unauthorized):
        codec(keys={"new": KEY_NEW}).verify(old_token, "access", now=NOW)


@pytest.mark.parametrize(
    "headers",
    [
        {"kid": "nope"},
        {"kid": None},
        {"jku": "http://127.0.0.1:1/keys.json"},
        {"jwk": {"kty": "oct", "k": b64(b"x" * 32)}},
        {"x5u": "http://127.0.0.1:1/cert.pem"},
        {"x5c": ["MIIB"]},
    ],
)
def test_unknown_kid_and_key_reference_headers_are_refused(headers: dict[str, Any]) -> None:
    """Unknown kid and jku/jwk/x5u/x5c headers are a 401, never a fetch or a 500."""
    token = forge(claims(), headers={k: v for k, v in headers.items() if v is not None})
    if headers.get("kid", "") is None:
        header, _, rest = token.partition(".")
        decoded = json.loads(base64.urlsafe_b64decode(header + "=="))
        decoded.pop("kid")
        token = b64(json.dumps(decoded).encode()) + "." + rest
    with pytest.raises(Unauthorized):
        codec().verify(token, "access", now=NOW)


def test_alg_none_is_refused() -> None:
    """An unsigned token (alg none) is refused."""
    header = b64(json.dumps({"alg": "none", "kid": "new", "typ": "JWT"}).encode())
    body = b64(json.dumps(claims()).encode())
    with pytest.raises(Unauthorized):
        codec().verify(f"{header}.{body}.", "access", now=NOW)


def test_algorithm_switching_is_refused() -> None:
    """A token signed with the right key but another HMAC algorithm (HS512) is refused."""
    with warnings.catch_warnings():
        # PyJWT warns that a 32-byte key is short for HS512: that is the forger's problem.
        warnings.simplefilter("ignore", InsecureKeyLengthWarning)
        token = forge(claims(), algorithm="HS512")
    with pytest.raises(Unauthorized):
        codec().verify(token, "access", now=NOW)


def test_a_token_signed_with_another_key_is_refused() -> None:
    """A forged signature (wrong secret, right kid) is refused."""
    with pytest.raises(Unauthorized):
        codec().verify(forge(claims(), key=secrets.token_bytes(32)), "access", now=NOW)


@pytest.mark.parametrize("missing", ["exp", "iat", "iss", "aud", "sub", "jti", "typ", "sid"])
def test_every_required_claim_is_required(missing: str) -> None:
    """A token lacking any of exp, iat, iss, aud, sub, jti, typ, sid is refused."""
    with pytest.raises(Unauthorized):
        codec().verify(forge(claims(**{missing: None})), "access", now=NOW)


@pytest.mark.parametrize("claim", [{"iss": "other"}, {"aud": "other"}, {"sub": 5}, {"iat": "x"}])
def test_wrong_issuer_audience_or_claim_types_are_refused(claim: dict[str, Any]) -> None:
    """Another issuer or audience, or claims of the wrong type, are refused."""
    with pytest.raises(Unauthorized):
        codec().verify(forge(claims(**claim)), "access", now=NOW)


def test_expiry_is_enforced_with_a_30_second_leeway() -> None:
    """A token is accepted up to 30 s after exp (clock skew) and refused after that."""
    token = forge(claims(exp=int(NOW.timestamp())))
    assert codec().verify(token, "access", now=NOW + timedelta(seconds=29)).sub
    with pytest.raises(Unauthorized):
        codec().verify(token, "access", now=NOW + timedelta(seconds=31))


def test_a_token_issued_in_the_future_is_refused() -> None:
    """An iat beyond the leeway in the future is refused."""
    token = forge(claims(iat=int(NOW.timestamp()) + 120))
    with pytest.raises(Unauthorized):
        codec().verify(token, "access", now=NOW)


@pytest.mark.parametrize(
    "garbage", ["", "abc", "a.b.c", "....", "eyJ.eyJ.sig", "\u00e9.\u00e9.\u00e9"]
)
def test_garbage_tokens_are_a_401(garbage: str) -> None:
    """Malformed tokens raise Unauthorized, never another exception."""
    with pytest.raises(Unauthorized):
        codec().verify(garbage, "access", now=NOW)

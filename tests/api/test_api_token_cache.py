"""The verified-access-token cache: it saves parsing, never a check that can change."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta

import pytest

from api.auth.tokens.codec import TokenCodec
from api.errors import Unauthorized

KEY = secrets.token_bytes(32)
NOW = datetime(2026, 1, 1, tzinfo=UTC)


def codec(cache_size: int = 8) -> TokenCodec:
    return TokenCodec(
        {"k": KEY}, "k", issuer="iss", audience="aud", leeway_s=30, cache_size=cache_size
    )


def access(c: TokenCodec, sid: str = "s1", ttl_s: int = 600) -> str:
    return c.issue(
        "access", sub="u1", sid=sid, ver=0, now=NOW, expires_at=NOW + timedelta(seconds=ttl_s)
    )


def test_a_cached_token_is_still_refused_once_it_expires() -> None:
    """Expiry is checked on every use against the clock, cache hit or not."""
    c = codec()
    token = access(c, ttl_s=60)
    assert c.verify(token, "access", now=NOW).sid == "s1"
    assert c.verify(token, "access", now=NOW + timedelta(seconds=60 + 29)).sid == "s1"
    with pytest.raises(Unauthorized) as raised:
        c.verify(token, "access", now=NOW + timedelta(seconds=60 + 30))
    assert raised.value.code == "token_expired"


def test_a_cached_access_token_is_still_refused_where_a_refresh_token_is_expected() -> None:
    """Type separation holds after the access token was verified (and cached) once."""
    c = codec()
    token = access(c)
    c.verify(token, "access", now=NOW)
    with pytest.raises(Unauthorized) as raised:
        c.verify(token, "refresh", now=NOW)
    assert raised.value.code == "wrong_token_type"


def test_a_tampered_copy_of_a_cached_token_is_refused() -> None:
    """Only the exact bytes that passed verification are remembered; a changed signature fails."""
    c = codec()
    token = access(c)
    c.verify(token, "access", now=NOW)
    head, body, signature = token.split(".")
    tampered = f"{head}.{body}.{'A' if signature[0] != 'A' else 'B'}{signature[1:]}"
    with pytest.raises(Unauthorized):
        c.verify(tampered, "access", now=NOW)


def test_the_cache_never_holds_more_than_its_size() -> None:
    """The oldest entries make room: memory stays bounded whatever tokens arrive."""
    c = codec(cache_size=3)
    tokens = [access(c, sid=f"s{i}") for i in range(10)]
    for token in tokens:
        c.verify(token, "access", now=NOW)
    assert list(c._verified) == tokens[-3:]


def test_refresh_tokens_are_not_cached() -> None:
    """Refresh tokens are used once, so remembering them would only evict access tokens."""
    c = codec()
    refresh = c.issue(
        "refresh", sub="u1", sid="s1", ver=0, now=NOW, expires_at=NOW + timedelta(days=1)
    )
    assert c.verify(refresh, "refresh", now=NOW).typ == "refresh"
    assert not c._verified

"""Account tokens: the one service behind every link mailed to a user (verify an address, reset
a password; later, change an address).

A token is `<kid>.<256 random bits>`, shown to nobody but the mailbox it is sent to. Only its
keyed digest is stored, HMAC-SHA256 under the key `kid` names (API_ACCOUNT_TOKEN_KEYS, first kid
active: keys rotate by adding a new one in front and dropping the old after the longest token
lifetime), so the collection alone is worth nothing. A token is bound to its purpose, its user
and (for verification) the address it was sent to:

    {_id: "<purpose>:<user_id>", digest, kid, purpose, user_id, email, created_at, expires_at}

One document per (purpose, user): issuing a new token of a purpose replaces the previous one. A
TTL index removes expired documents, and redeeming checks the expiry too (the sweeper runs only
about once a minute). Redeeming is one atomic find-and-delete by digest, purpose and expiry, so of
any number of parallel redemptions exactly one wins.

Tokens are minted inside the mail job that sends them (api/tasks/), never by the API, so a raw
token is never written to a queue document.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from bson import ObjectId
from pymongo.collection import Collection
from pymongo.database import Database

COLLECTION = "account_tokens"
TOKEN_BYTES = 32
MAX_TOKEN_CHARS = 120


class Purpose(StrEnum):
    VERIFY_EMAIL = "verify_email"
    RESET_PASSWORD = "reset_password"


LIFETIMES = {
    Purpose.VERIFY_EMAIL: timedelta(hours=24),
    Purpose.RESET_PASSWORD: timedelta(minutes=30),
}


@dataclass(frozen=True)
class Redeemed:
    """What a redeemed token was issued for."""

    purpose: Purpose
    user_id: ObjectId
    email: str | None


class AccountTokens:
    """Issue and redeem account tokens; see the module docstring."""

    def __init__(self, db: Database[Any], keys: Mapping[str, bytes]) -> None:
        if not keys:
            raise ValueError("account tokens need at least one key")
        self._tokens: Collection[dict[str, Any]] = db[COLLECTION]
        self._keys = dict(keys)
        self._active_kid = next(iter(self._keys))

    def ensure_indexes(self) -> None:
        """Create the unique digest index and the TTL index on the expiry."""
        self._tokens.create_index("digest", name="digest_unique", unique=True)
        self._tokens.create_index("expires_at", name="expires_ttl", expireAfterSeconds=0)

    def issue(
        self, purpose: Purpose, user_id: ObjectId, *, now: datetime, email: str | None = None
    ) -> str:
        """Return a new raw token for (purpose, user); the previous one of that purpose dies."""
        token = f"{self._active_kid}.{secrets.token_urlsafe(TOKEN_BYTES)}"
        doc = {
            "digest": self._digest(self._active_kid, token),
            "kid": self._active_kid,
            "purpose": purpose.value,
            "user_id": user_id,
            "email": email,
            "created_at": now,
            "expires_at": now + LIFETIMES[purpose],
        }
        self._tokens.replace_one({"_id": f"{purpose.value}:{user_id}"}, doc, upsert=True)
        return token

    def redeem(self, purpose: Purpose, token: str, *, now: datetime) -> Redeemed | None:
        """Consume a token of `purpose` once: return what it was for, or None if it is unknown,
        used, replaced, expired, for another purpose or malformed."""
        live = self._live(purpose, token, now)
        doc = self._tokens.find_one_and_delete(live) if live is not None else None
        return None if doc is None else Redeemed(purpose, doc["user_id"], doc.get("email"))

    def peek(self, purpose: Purpose, token: str, *, now: datetime) -> Redeemed | None:
        """Return what a live token is for without spending it (a flow that checks its input
        before it redeems), or None."""
        live = self._live(purpose, token, now)
        doc = self._tokens.find_one(live) if live is not None else None
        return None if doc is None else Redeemed(purpose, doc["user_id"], doc.get("email"))

    def forget(self, purpose: Purpose, user_id: ObjectId) -> None:
        """Drop the user's outstanding token of `purpose` (it was made pointless)."""
        self._tokens.delete_one({"_id": f"{purpose.value}:{user_id}"})

    def _live(self, purpose: Purpose, token: str, now: datetime) -> dict[str, Any] | None:
        """Return the filter of the live token `token` of `purpose`; None if it is malformed."""
        kid, sep, _ = token.partition(".")
        if not sep or kid not in self._keys or len(token) > MAX_TOKEN_CHARS:
            return None
        return {
            "digest": self._digest(kid, token),
            "purpose": purpose.value,
            "expires_at": {"$gt": now},
        }

    def _digest(self, kid: str, token: str) -> str:
        return hmac.new(self._keys[kid], token.encode(), hashlib.sha256).hexdigest()

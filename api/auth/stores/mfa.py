"""The second factor's state: the `mfa` field of a user document, and the login challenges.

    users.mfa       {enabled, secret: {kid, nonce, sealed}, last_step, enabled_at,
                     recovery_kid, recovery: [{digest, used_at}],
                     pending: {kid, nonce, sealed, created_at}}   (an enrolment not confirmed)
    mfa_challenges  {_id: SHA-256 of the mfa_token, user_id, created_at, expires_at, failures}
                    one per password step of an enrolled account; single-use, short-lived,
                    removed by a TTL index once expired

Every "exactly once" is one conditional write: a TOTP step is accepted only while it is newer
than `last_step` (so a code, or an older one, cannot be replayed: of 20 parallel submissions of
one code exactly one wins), a recovery code only while its `used_at` is null, a challenge only
by the delete that removes it. This module owns the `mfa` field of `users` (users.py the rest).
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from bson import ObjectId
from pymongo import ASCENDING, ReturnDocument
from pymongo.collection import Collection
from pymongo.database import Database

from api.auth.stores.users import COLLECTION as USERS

CHALLENGES = "mfa_challenges"
CHALLENGE_TTL_S = 300
CHALLENGE_MAX_FAILURES = 5
Doc = dict[str, Any]


def mfa_of(user: Doc) -> Doc:
    """Return a user document's `mfa` field ({} if the user never enrolled)."""
    return user.get("mfa") or {}


def challenge_digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8")).digest()


class MfaStore:
    """Read and change users' second factors and their login challenges."""

    def __init__(self, db: Database[Any]) -> None:
        self._users: Collection[Doc] = db[USERS]
        self._challenges: Collection[Doc] = db[CHALLENGES]

    def ensure_indexes(self) -> None:
        """The TTL index that drops expired challenges."""
        self._challenges.create_index("expires_at", name="expires_ttl", expireAfterSeconds=0)
        self._challenges.create_index([("user_id", ASCENDING)], name="user_id")

    # -- enrolment ---------------------------------------------------------------------------

    def get(self, user_id: ObjectId) -> Doc | None:
        """Return the user's `mfa` field (None: never enrolled) with the address and verified
        flag, as {email, email_verified, mfa}."""
        doc: Doc | None = self._users.find_one(
            {"_id": user_id}, {"email": 1, "email_verified": 1, "mfa": 1}
        )
        return doc

    def start_enrolment(self, user_id: ObjectId, sealed: Doc, *, now: datetime) -> bool:
        """Keep a new secret as pending until confirmed; False if a factor is already on."""
        result = self._users.update_one(
            {"_id": user_id, "mfa.enabled": {"$ne": True}},
            {"$set": {"mfa.pending": {**sealed, "created_at": now}}},
        )
        return result.matched_count == 1

    def enable(
        self,
        user_id: ObjectId,
        pending: Doc,
        *,
        step: int,
        recovery_kid: str,
        digests: Sequence[str],
        now: datetime,
    ) -> bool:
        """Turn the pending secret on, its code of `step` spent, with these recovery codes;
        False if it is no longer the pending one (confirmed or replaced meanwhile)."""
        secret = {k: pending[k] for k in ("kid", "nonce", "sealed")}
        result = self._users.update_one(
            {"_id": user_id, "mfa.enabled": {"$ne": True}, "mfa.pending.nonce": pending["nonce"]},
            {
                "$set": {
                    "mfa": {
                        "enabled": True,
                        "secret": secret,
                        "last_step": step,
                        "enabled_at": now,
                        "recovery_kid": recovery_kid,
                        "recovery": [{"digest": d, "used_at": None} for d in digests],
                    }
                }
            },
        )
        return result.modified_count == 1

    def disable(self, user_id: ObjectId) -> bool:
        """Turn the factor off (secret and recovery codes gone); False if it was not on."""
        result = self._users.update_one(
            {"_id": user_id, "mfa.enabled": True}, {"$unset": {"mfa": ""}}
        )
        return result.modified_count == 1

    def replace_recovery(self, user_id: ObjectId, *, kid: str, digests: Sequence[str]) -> bool:
        """Replace every recovery code (the old ones stop working at once)."""
        result = self._users.update_one(
            {"_id": user_id, "mfa.enabled": True},
            {
                "$set": {
                    "mfa.recovery_kid": kid,
                    "mfa.recovery": [{"digest": d, "used_at": None} for d in digests],
                }
            },
        )
        return result.modified_count == 1

    # -- exactly once ------------------------------------------------------------------------

    def spend_step(self, user_id: ObjectId, step: int) -> bool:
        """Accept the code of TOTP `step` once: only while it is newer than the last one."""
        result = self._users.update_one(
            {"_id": user_id, "mfa.enabled": True, "mfa.last_step": {"$lt": step}},
            {"$set": {"mfa.last_step": step}},
        )
        return result.modified_count == 1

    def spend_recovery(self, user_id: ObjectId, digest: str, *, now: datetime) -> int | None:
        """Spend one unused recovery code; return how many remain unused, None if it was not
        one (or was used already)."""
        doc = self._users.find_one_and_update(
            {
                "_id": user_id,
                "mfa.enabled": True,
                "mfa.recovery": {"$elemMatch": {"digest": digest, "used_at": None}},
            },
            # arrayFilters rather than the positional `$`: the local server does not resolve
            # `$` under a nested path (docs/local-database.md); both mean the same on MongoDB.
            {"$set": {"mfa.recovery.$[code].used_at": now}},
            array_filters=[{"code.digest": digest, "code.used_at": None}],
            projection={"mfa.recovery": 1},
            return_document=ReturnDocument.AFTER,
        )
        if doc is None:
            return None
        return sum(1 for code in doc["mfa"]["recovery"] if code.get("used_at") is None)

    # -- login challenges --------------------------------------------------------------------

    def open_challenge(self, user_id: ObjectId, *, now: datetime) -> str:
        """Start the code step of a login whose password was right; return its mfa_token."""
        token = secrets.token_urlsafe(32)
        self._challenges.insert_one(
            {
                "_id": challenge_digest(token),
                "user_id": user_id,
                "created_at": now,
                "expires_at": now + timedelta(seconds=CHALLENGE_TTL_S),
                "failures": 0,
            }
        )
        return token

    def challenge(self, token: str, *, now: datetime) -> Doc | None:
        """Return a live challenge (not expired, not used up), or None."""
        doc: Doc | None = self._challenges.find_one(
            {
                "_id": challenge_digest(token),
                "expires_at": {"$gt": now},
                "failures": {"$lt": CHALLENGE_MAX_FAILURES},
            }
        )
        return doc

    def fail_challenge(self, token: str) -> None:
        """Count a wrong code against the challenge (after CHALLENGE_MAX_FAILURES it is dead)."""
        self._challenges.update_one({"_id": challenge_digest(token)}, {"$inc": {"failures": 1}})

    def close_challenge(self, token: str, *, now: datetime) -> Doc | None:
        """Use the challenge up, once: return it, or None if it is gone (used, expired)."""
        doc: Doc | None = self._challenges.find_one_and_delete(
            {"_id": challenge_digest(token), "expires_at": {"$gt": now}}
        )
        return doc

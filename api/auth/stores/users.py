"""User accounts in the `users` collection: the only module that reads or writes it.

    {_id: ObjectId, email (normal form, unique), name, age, password_hash, created_at,
     token_version, revoked_sessions: [{sid, until}], known_networks: [{net, seen}],
     welcome_enqueued}

`token_version` is copied into every access token: logout-all increments it, so every access
token issued before is refused at once. `revoked_sessions` holds each session ended by logout
or reuse detection until its last access token has expired (`until`), however many sessions
end in between; expired entries are dropped by the next revocation, so the list is bounded by
the sessions one user ends within one access-token lifetime. Both come back in the one read that
authenticates a request (the profile route needs that read anyway). The `mfa` field (the second
factor) is written only by stores/mfa.py.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from bson import ObjectId
from bson.errors import InvalidId
from pymongo import ReturnDocument
from pymongo.client_session import ClientSession
from pymongo.collection import Collection
from pymongo.database import Database
from pymongo.errors import DuplicateKeyError

from api.auth.networks import REMEMBERED
from api.errors import Conflict

COLLECTION = "users"
AUTH_FIELDS = {
    "name": 1,
    "email": 1,
    "age": 1,
    "created_at": 1,
    "token_version": 1,
    "revoked_sessions": 1,
    "email_verified": 1,
    "role": 1,
}


LOGIN_FIELDS = {
    "email": 1,
    "password_hash": 1,
    "token_version": 1,
    "welcome_enqueued": 1,
    "name": 1,
    "known_networks": 1,
    "email_verified": 1,
    "first_login_done": 1,
    "role": 1,
    "mfa": 1,
}


class RoleChange(StrEnum):
    DONE = "done"
    NO_ACCOUNT = "no_account"
    UNVERIFIED = "unverified"

    def message(self, email: str) -> str:
        """What an operator is told when the change did not happen."""
        if self is RoleChange.UNVERIFIED:
            return f"{email} has not verified the address yet: roles need a verified address."
        return f"No account with the address {email!r}."


def parse_user_id(value: str) -> ObjectId | None:
    """Return the ObjectId for a user id string, or None when it is malformed."""
    if len(value) != 24:
        return None
    try:
        return ObjectId(value)
    except (InvalidId, TypeError):
        return None


class UserStore:
    """Create, find and update user accounts."""

    def __init__(self, db: Database[Any]) -> None:
        self.db = db
        self._users: Collection[Any] = db[COLLECTION]
        self._indexed = False

    def ensure_indexes(self) -> None:
        """Create the unique index on the normalised email (one account per address)."""
        self._users.create_index("email", name="email_unique", unique=True)
        self._indexed = True

    def create(
        self,
        *,
        name: str,
        email: str,
        age: int | None,
        password_hash: str,
        network: str,
        now: datetime,
    ) -> ObjectId:
        """Insert a new account, signed up from the network `network` (a digest, networks.py);
        return its id; raise Conflict if the email is taken."""
        if not self._indexed:
            # Uniqueness rests on this index: never insert without it (start may have failed).
            self.ensure_indexes()
        doc: dict[str, Any] = {
            "email": email,
            "name": name,
            "age": age,
            "password_hash": password_hash,
            "created_at": now,
            "token_version": 0,
            "revoked_sessions": [],
            "known_networks": [{"net": network, "seen": now}],
            "email_verified": False,
            "welcome_enqueued": False,
        }
        try:
            user_id: ObjectId = self._users.insert_one(doc).inserted_id
        except DuplicateKeyError:
            # The unique index decides races between concurrent sign-ups with one email.
            raise Conflict("This email cannot be used.", code="email_unavailable") from None
        return user_id

    def find_for_login(self, email: str) -> dict[str, Any] | None:
        """Return the fields a login needs (id, hash, token version, welcome flag, networks,
        role, second factor)."""
        doc: dict[str, Any] | None = self._users.find_one({"email": email}, LOGIN_FIELDS)
        return doc

    def find_for_login_by_id(self, user_id: ObjectId) -> dict[str, Any] | None:
        """`find_for_login` by id (the login's code step, a signed-in user's factor step)."""
        doc: dict[str, Any] | None = self._users.find_one({"_id": user_id}, LOGIN_FIELDS)
        return doc

    def remember_network(self, user_id: ObjectId, digest: str, *, now: datetime) -> None:
        """Record a login from the network `digest` (networks.py): most recent first, at most
        networks.REMEMBERED kept."""
        self._users.update_one(
            {"_id": user_id},
            [
                {
                    "$set": {
                        "known_networks": {
                            "$slice": [
                                {
                                    "$concatArrays": [
                                        [{"net": {"$literal": digest}, "seen": now}],
                                        {
                                            "$filter": {
                                                "input": {"$ifNull": ["$known_networks", []]},
                                                "as": "n",
                                                "cond": {"$ne": ["$$n.net", digest]},
                                            }
                                        },
                                    ]
                                },
                                REMEMBERED,
                            ]
                        }
                    }
                }
            ],
        )

    def find_for_auth(self, user_id: ObjectId) -> dict[str, Any] | None:
        """Return the profile fields plus what token checks need, in one read."""
        doc: dict[str, Any] | None = self._users.find_one({"_id": user_id}, AUTH_FIELDS)
        return doc

    def find_public(self, user_id: ObjectId) -> dict[str, Any] | None:
        """Return only the public fields of an account (never email, hash or tokens)."""
        doc: dict[str, Any] | None = self._users.find_one(
            {"_id": user_id}, {"name": 1, "created_at": 1}
        )
        return doc

    def find_for_refresh(self, user_id: ObjectId) -> dict[str, Any] | None:
        """Return what a refresh needs (token version, verified flag), or None if it is gone."""
        doc: dict[str, Any] | None = self._users.find_one(
            {"_id": user_id}, {"token_version": 1, "email_verified": 1, "role": 1}
        )
        return doc

    def end_all_tokens(
        self,
        user_id: ObjectId,
        *,
        password_hash: str | None = None,
        verified: bool = False,
        expected_hash: str | None = None,
        session: ClientSession | None = None,
    ) -> int | None:
        """Invalidate every access token issued so far (and set a new password hash, and mark
        the address verified, in the same write); return the new token version. With
        `expected_hash`, only while that is still the password hash: None if it is not."""
        changes: dict[str, Any] = {}
        if password_hash is not None:
            changes["password_hash"] = password_hash
        if verified:
            changes["email_verified"] = True
        query: dict[str, Any] = {"_id": user_id}
        if expected_hash is not None:
            query["password_hash"] = expected_hash
        doc = self._users.find_one_and_update(
            query,
            {"$inc": {"token_version": 1}, **({"$set": changes} if changes else {})},
            projection={"token_version": 1},
            return_document=ReturnDocument.AFTER,
            session=session,
        )
        if doc is None:
            return None if expected_hash is not None else 0
        return int(doc["token_version"])

    def revoke_session_access(
        self,
        user_id: ObjectId,
        sid: str,
        *,
        until: datetime,
        now: datetime,
        session: ClientSession | None = None,
    ) -> None:
        """Refuse the access tokens of session `sid` until `until` (when the last of them has
        expired); entries whose time has passed are dropped in the same write."""
        still_needed = {
            "$filter": {
                "input": {"$ifNull": ["$revoked_sessions", []]},
                "as": "entry",
                "cond": {"$gt": ["$$entry.until", now]},
            }
        }
        entry = {"sid": {"$literal": sid}, "until": until}
        self._users.update_one(
            {"_id": user_id, "revoked_sessions.sid": {"$ne": sid}},
            [{"$set": {"revoked_sessions": {"$concatArrays": [still_needed, [entry]]}}}],
            session=session,
        )

    def mark_verified(self, user_id: ObjectId, *, email: str) -> bool:
        """Mark the address verified if it is still `email`; False if it is not."""
        result = self._users.update_one(
            {"_id": user_id, "email": email}, {"$set": {"email_verified": True}}
        )
        return result.matched_count == 1

    def email_of(self, user_id: ObjectId) -> str | None:
        """Return the account's address, or None if the account is gone."""
        doc = self._users.find_one({"_id": user_id}, {"email": 1})
        return None if doc is None else str(doc["email"])

    def find_for_password(self, user_id: ObjectId) -> dict[str, Any] | None:
        """Return what checking the account's current password needs (hash, address)."""
        doc: dict[str, Any] | None = self._users.find_one(
            {"_id": user_id}, {"password_hash": 1, "email": 1, "token_version": 1,
                               "email_verified": 1, "name": 1, "known_networks": 1}
        )  # fmt: skip
        return doc

    def set_password(self, user_id: ObjectId, password_hash: str, *, expected_hash: str) -> bool:
        """Replace the account's password hash if it is still `expected_hash` (sessions stay;
        see revocation.py to end them); False if another change came first."""
        result = self._users.update_one(
            {"_id": user_id, "password_hash": expected_hash},
            {"$set": {"password_hash": password_hash}},
        )
        return result.modified_count == 1

    def find_by_email(self, email: str) -> dict[str, Any] | None:
        """Return the id, name and verification state of the account with this address."""
        doc: dict[str, Any] | None = self._users.find_one(
            {"email": email}, {"name": 1, "email": 1, "email_verified": 1}
        )
        return doc

    def find_contact(self, user_id: ObjectId) -> dict[str, Any] | None:
        """Return what mail to the user needs: address, name, verification state."""
        doc: dict[str, Any] | None = self._users.find_one(
            {"_id": user_id}, {"name": 1, "email": 1, "email_verified": 1}
        )
        return doc

    def mark_first_login(self, user_id: ObjectId) -> None:
        """Record that the user has logged in since signing up (new-device alerts start)."""
        self._users.update_one({"_id": user_id}, {"$set": {"first_login_done": True}})

    def set_role(self, email: str, role: str | None) -> RoleChange:
        """Give the account with this address a dashboard role (None: take it away). A role is
        only granted to an address its owner verified (whoever controls the mailbox can reset
        the password, so an unverified address must not carry power)."""
        if role is None:
            found = self._users.update_one({"email": email}, {"$unset": {"role": ""}})
            return RoleChange.DONE if found.matched_count else RoleChange.NO_ACCOUNT
        granted = self._users.update_one(
            {"email": email, "email_verified": True}, {"$set": {"role": role}}
        )
        if granted.matched_count:
            return RoleChange.DONE
        if self._users.count_documents({"email": email}, limit=1):
            return RoleChange.UNVERIFIED
        return RoleChange.NO_ACCOUNT

    def with_roles(self, limit: int = 200) -> list[dict[str, Any]]:
        """Return the accounts that have a dashboard role (with whether a factor is on)."""
        query = {"role": {"$exists": True}}
        fields = {"email": 1, "name": 1, "role": 1, "mfa.enabled": 1}
        return list(self._users.find(query, fields).limit(limit))

    def mark_welcome_enqueued(self, user_id: ObjectId) -> None:
        """Record that the user.created job is in the queue."""
        self._users.update_one({"_id": user_id}, {"$set": {"welcome_enqueued": True}})


def session_revoked(user: dict[str, Any], sid: str) -> bool:
    """Return True if the user document refuses the access tokens of session `sid`."""
    return any(entry.get("sid") == sid for entry in user.get("revoked_sessions", ()))

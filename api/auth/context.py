"""What every account flow works with: `AuthContext`, and the values flows hand back.

The flows (signup.py, login.py, refresh.py, logout.py, authenticate.py, ...) are short linear
functions over this one context, in the manner of django-allauth's account/internal/flows: a
flow reads like the rule it implements (validate, consume, change, revoke, notify, record), and
needs no object of its own. `create_app` builds the context once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from bson import ObjectId
from pymongo.database import Database

from api.admission import Admission
from api.auth.passwords.hashing import PasswordHasher
from api.auth.stores.account_tokens import AccountTokens
from api.auth.stores.ledger import LoginLedger
from api.auth.stores.limits import RateLimits
from api.auth.stores.mfa import CHALLENGE_TTL_S, MfaStore
from api.auth.stores.security_log import SecurityLog
from api.auth.stores.sessions import SessionStore
from api.auth.stores.user_cache import UserCache
from api.auth.stores.users import UserStore
from api.auth.tokens.codec import Claims, TokenCodec
from api.auth.tokens.totp import TotpKeys
from api.metrics import ApiMetrics
from api.settings import ApiSettings

if TYPE_CHECKING:
    from api.auth.steps.events import AccountEvents


@dataclass(frozen=True)
class TokenPair:
    access_token: str
    refresh_token: str
    expires_in: int


@dataclass(frozen=True)
class Principal:
    """An authenticated request: the verified claims and the user's profile fields."""

    claims: Claims
    user_id: ObjectId
    user: dict[str, Any]


@dataclass(frozen=True)
class Client:
    """Where a request came from, as the user sees it in their sessions and security log."""

    ip: str
    user_agent: str


@dataclass(frozen=True)
class AuthContext:
    """The stores, services and settings the account flows share."""

    settings: ApiSettings
    db: Database[Any]
    users: UserStore
    sessions: SessionStore
    limits: RateLimits
    hasher: PasswordHasher
    codec: TokenCodec
    events: AccountEvents
    tokens: AccountTokens
    security: SecurityLog
    user_cache: UserCache | None
    admission: Admission
    metrics: ApiMetrics
    clock: Callable[[], datetime]
    mfa: MfaStore
    totp_keys: TotpKeys
    ledger: LoginLedger

    @property
    def mfa_challenge_ttl_s(self) -> int:
        """How long the code step of a login stays open."""
        return CHALLENGE_TTL_S

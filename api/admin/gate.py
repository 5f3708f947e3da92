"""Signing in to the dashboard and checking every request: the cookie, the role, the origin and
the CSRF token.

Sign-in uses the accounts' own login (the same limits, the same session store, the same security
log) and its second factor: a role holder must have one (an account with a role but no factor
is refused: set one up at /account/security first), so sign-in is two steps, the password and
then a code or a recovery code; an account without a dashboard role is refused and its new
session ended at once. Every sign-in and every refusal is in the audit log. Role changes, bulk
deletes and ending a user's sessions need a sign-in no older than API_ADMIN_RECENT_SIGNIN_S. The
session's tokens then travel in one cookie, `__Host-jobauth_admin` = "<access>~<refresh>":
HttpOnly (no script reads it), Secure and `__Host-` (HTTPS only, this host only, path /),
SameSite=Strict (never sent with a request another site starts), no Max-Age (gone when the
browser closes). An expired access token is refreshed from it (rotating the refresh token, as
the API does); logout, logout-all, an ended session or a password change end it like any
session.

A request that changes anything must come from our own pages: `Sec-Fetch-Site: same-origin`
(every current browser sends it), or without that header an `Origin` equal to ours; and it must
carry the session's CSRF token (an HMAC of the session id, in the form or `X-CSRF-Token`).
Bearer tokens are not accepted here, and the cookie is not accepted by the JSON API.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import falcon

from api.admin.audit import AuditLog
from api.admin.roles import Role, role_of
from api.auth.context import AuthContext, Principal, TokenPair
from api.auth.flows.authenticate import authenticate
from api.auth.flows.login import MfaChallenge, login
from api.auth.flows.logout import logout
from api.auth.flows.mfa import complete_login
from api.auth.flows.refresh import refresh
from api.auth.steps.revocation import end_session
from api.errors import Unauthorized
from api.resources.accounts import client_of
from api.schemas import LoginRequest, MfaLoginRequest

COOKIE = "__Host-jobauth_admin"
EXPIRED = datetime(1970, 1, 1, tzinfo=UTC)  # a cookie set to expire then is deleted
SEPARATOR = "~"


class SignInRequired(Exception):
    """No valid dashboard session: show the sign-in page."""


class NotAllowed(Exception):
    """Signed in, but the role (or the request's origin or token) does not allow this."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class AdminUser:
    """The person behind a dashboard request."""

    principal: Principal
    role: Role
    csrf: str

    @property
    def email(self) -> str:
        return str(self.principal.user.get("email", ""))

    def can(self, needed: Role) -> bool:
        return self.role >= needed


class Gate:
    """See the module docstring."""

    def __init__(self, auth: AuthContext, audit: AuditLog) -> None:
        self.auth = auth
        self.audit = audit
        pepper = auth.settings.password_pepper
        self._csrf_key = hmac.new(pepper, b"jobauth dashboard csrf", hashlib.sha256).digest()
        public = urlsplit(auth.settings.accounts.public_url)
        self._public_origin = f"{public.scheme}://{public.netloc}"

    # -- signing in and out ----------------------------------------------------------------

    def sign_in(
        self, req: falcon.Request, resp: falcon.Response, email: str, password: str
    ) -> MfaChallenge:
        """The password step: a role holder's account gets its code step; any other is
        refused (NotAllowed)."""
        outcome = login(
            self.auth,
            LoginRequest(email=email, password=password),
            client=client_of(req, self.auth),
        )
        if isinstance(outcome, MfaChallenge):
            return outcome  # the role is checked once the code is right
        principal = authenticate(self.auth, outcome.access_token)
        end_session(
            self.auth, principal.user_id, principal.claims.sid, reason="dashboard_refused",
            now=self.auth.clock(),
        )  # fmt: skip
        if role_of(principal.user) is None:
            self._audit(principal.user, "signin.refused", "no role")
            raise NotAllowed("This account has no dashboard role. Ask an admin for one.")
        self._audit(principal.user, "signin.refused", "no second factor")
        raise NotAllowed(
            "Dashboard roles need a second factor. Set one up at /account/security, then sign "
            "in here again."
        )

    def complete(self, req: falcon.Request, resp: falcon.Response, body: MfaLoginRequest) -> None:
        """The code step: a right code or recovery code signs in a role holder."""
        pair = complete_login(self.auth, body, client=client_of(req, self.auth))
        principal = authenticate(self.auth, pair.access_token)
        if role_of(principal.user) is None:
            end_session(
                self.auth, principal.user_id, principal.claims.sid, reason="no_role",
                now=self.auth.clock(),
            )  # fmt: skip
            self._audit(principal.user, "signin.refused", "no role")
            raise NotAllowed("This account has no dashboard role. Ask an admin for one.")
        self._audit(principal.user, "signin", "+".join(principal.claims.amr))
        self._set(resp, pair)

    def sign_out(self, resp: falcon.Response, user: AdminUser) -> None:
        logout(self.auth, user.principal)
        self._audit(user.principal.user, "signout", "")
        # A __Host- cookie is only replaced by one with the same attributes (Secure, Path=/).
        resp.set_cookie(COOKIE, "", expires=EXPIRED, secure=True, http_only=True,
                        same_site="Strict", path="/")  # fmt: skip

    def require_recent(self, user: AdminUser) -> None:
        """Refuse a sensitive action unless the sign-in is recent enough."""
        auth_time = user.principal.claims.auth_time or 0
        if self.auth.clock().timestamp() - auth_time > self.auth.settings.admin_recent_signin_s:
            raise NotAllowed(
                "This needs a recent sign-in: sign out and in again, then repeat the action."
            )

    # -- every request -----------------------------------------------------------------------

    def user(self, req: falcon.Request, resp: falcon.Response, needed: Role) -> AdminUser:
        """Return the signed-in user if their role allows `needed`; raise SignInRequired or
        NotAllowed."""
        access, _, refresh_token = (req.cookies.get(COOKIE) or "").partition(SEPARATOR)
        if not access or not refresh_token:
            raise SignInRequired()
        try:
            principal = authenticate(self.auth, access)
        except Unauthorized as exc:
            if exc.code != "token_expired":
                raise SignInRequired() from None
            try:
                pair = refresh(self.auth, refresh_token, client=client_of(req, self.auth))
                principal = authenticate(self.auth, pair.access_token)
            except Unauthorized:
                raise SignInRequired() from None
            self._set(resp, pair)
        role = role_of(principal.user)
        if role is None:
            raise SignInRequired()
        user = AdminUser(principal, role, self._csrf_for(principal.claims.sid))
        if not user.can(needed):
            raise NotAllowed(f"Your role ({role.label}) cannot do this; it needs {needed.label}.")
        return user

    def check_change(self, req: falcon.Request, user: AdminUser, token: str | None) -> None:
        """Refuse a state-changing request that is not from our own page with its token."""
        if not self.same_origin(req):
            raise NotAllowed("This request did not come from the dashboard's own pages.")
        if not token or not hmac.compare_digest(token, user.csrf):
            raise NotAllowed("The form has expired or lacks its token. Reload the page.")

    def same_origin(self, req: falcon.Request) -> bool:
        site = req.get_header("Sec-Fetch-Site")
        if site is not None:
            return site == "same-origin"
        origin = req.get_header("Origin")
        return origin is not None and origin in (self._public_origin, req.prefix)

    # -- plumbing ----------------------------------------------------------------------------

    def _audit(self, user: dict[str, Any], action: str, detail: str) -> None:
        email = str(user.get("email") or user.get("_id", ""))
        self.audit.record(at=self.auth.clock(), email=email, action=action, target=detail)

    def _csrf_for(self, sid: str) -> str:
        return hmac.new(self._csrf_key, sid.encode(), hashlib.sha256).hexdigest()[:40]

    @staticmethod
    def _set(resp: falcon.Response, pair: TokenPair) -> None:
        resp.set_cookie(
            COOKIE,
            f"{pair.access_token}{SEPARATOR}{pair.refresh_token}",
            secure=True,
            http_only=True,
            same_site="Strict",
            path="/",
        )

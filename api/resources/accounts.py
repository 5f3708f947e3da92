"""The account resources (/users/...): thin adapters from HTTP to the account flows (api/auth).

Token responses are `{access_token, refresh_token, token_type: "Bearer", expires_in}` (the
field names existing clients use) and carry `Cache-Control: no-store` like every API response.
"""

from __future__ import annotations

import falcon

from api.admission import Admission
from api.auth.context import AuthContext, Client, Principal, TokenPair
from api.auth.flows.login import MfaChallenge, login
from api.auth.flows.logout import logout, logout_all
from api.auth.flows.refresh import refresh
from api.auth.flows.signup import signup
from api.auth.stores.users import UserStore, parse_user_id
from api.errors import NotFound, Unauthorized
from api.middleware import bearer_token
from api.openapi import Operation
from api.schemas import (
    LoginRequest,
    MfaChallengeResponse,
    ProfileResponse,
    PublicUserResponse,
    RefreshRequest,
    SignupRequest,
    TokenResponse,
    decode,
    send,
)

_BODY_ERRORS = (400, 408, 413, 415, 422, 503)


def send_tokens(resp: falcon.Response, pair: TokenPair, status: int) -> None:
    """Write a token pair as the token response body."""
    send(resp, TokenResponse(pair.access_token, pair.refresh_token, pair.expires_in), status)


def client_ip(req: falcon.Request, trusted_proxy_hops: int) -> str:
    """Return the client's IP: the peer, or the address our own proxies saw (X-Forwarded-For).

    Only the last `trusted_proxy_hops` entries were appended by proxies we run; anything left of
    them is client-controlled and ignored, so a client cannot pick the IP it is limited under.
    """
    peer = req.remote_addr or "unknown"
    if trusted_proxy_hops == 0:
        return peer
    forwarded = [part.strip() for part in (req.get_header("X-Forwarded-For") or "").split(",")]
    chain = [address for address in forwarded if address] + [peer]
    return chain[max(0, len(chain) - 1 - trusted_proxy_hops)][:64]


def client_of(req: falcon.Request, auth: AuthContext) -> Client:
    """Return where the request came from (the address our proxies vouch for, the user agent)."""
    return Client(client_ip(req, auth.settings.trusted_proxy_hops), req.user_agent or "")


class SignupResource:
    docs = {
        "post": Operation(
            "Create an account and start a session",
            "users",
            ok_status=201,
            request=SignupRequest,
            response=TokenResponse,
            errors=(*_BODY_ERRORS, 409, 429),
            description="The email is trimmed and compared case-insensitively. "
            "Passwords: 8-128 characters, not on the common-password list. "
            "Sign-ups are limited per client IP (429 with Retry-After).",
        )
    }

    def __init__(self, auth: AuthContext) -> None:
        self._auth = auth

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        body = decode(req.context.body, SignupRequest)
        ip = client_ip(req, self._auth.settings.trusted_proxy_hops)
        pair = signup(self._auth, body, ip=ip, user_agent=req.user_agent or "")
        send_tokens(resp, pair, 201)


class LoginResource:
    docs = {
        "post": Operation(
            "Log in with email and password and start a session",
            "users",
            request=LoginRequest,
            response=(TokenResponse, MfaChallengeResponse),
            errors=(*_BODY_ERRORS, 401, 429),
            description="An account with a second factor gets no tokens here: the answer is "
            "{mfa_required: true, mfa_token, expires_in}; send a code with the mfa_token to "
            "POST /users/login/mfa.",
        )
    }

    def __init__(self, auth: AuthContext) -> None:
        self._auth = auth

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        body = decode(req.context.body, LoginRequest)
        outcome = login(self._auth, body, client=client_of(req, self._auth))
        if isinstance(outcome, MfaChallenge):
            send(resp, MfaChallengeResponse(outcome.mfa_token, outcome.expires_in), 200)
            return
        send_tokens(resp, outcome, 200)


class RefreshResource:
    docs = {
        "post": Operation(
            "Rotate a refresh token (Authorization: Bearer, or {refresh_token} in the body)",
            "users",
            request=RefreshRequest,
            request_required=False,
            response=TokenResponse,
            errors=(*_BODY_ERRORS, 401),
            description="The token is taken from the body's refresh_token if it has one, else "
            "from Authorization: Bearer (a body of {} is fine). The presented refresh token is "
            "dead afterwards. Presenting an already-rotated token revokes its whole session.",
            extra={"security": [{"bearerAuth": []}, {}]},
        )
    }

    def __init__(self, auth: AuthContext) -> None:
        self._auth = auth

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        in_body = decode(req.context.body, RefreshRequest) if req.context.body else None
        token = (in_body.refresh_token if in_body else None) or bearer_token(req)
        if token is None:
            raise Unauthorized("A refresh token is required.", code="missing_token")
        send_tokens(resp, refresh(self._auth, token, client=client_of(req, self._auth)), 200)


class LogoutResource:
    """POST /users/logout ends this session; with `everywhere`, POST /users/logout-all ends
    every session of the user."""

    auth_required = True

    def __init__(self, auth: AuthContext, *, everywhere: bool = False) -> None:
        self._auth = auth
        self._end = logout_all if everywhere else logout
        summary = (
            "End every session of this user; earlier access tokens stop working (needs a "
            "login or reauthentication in the last 5 minutes)"
            if everywhere
            else "End this session (its refresh and access tokens stop working)"
        )
        self.docs = {
            "post": Operation(summary, "users", ok_status=204, bearer=True, errors=(401, 503))
        }

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        principal: Principal = req.context.principal
        self._end(self._auth, principal)
        resp.status = falcon.HTTP_204


class ProfileResource:
    auth_required = True
    docs = {
        "get": Operation(
            "The caller's own profile",
            "users",
            response=ProfileResponse,
            bearer=True,
            errors=(401, 503),
        )
    }

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        # Authentication already read the user document: the profile costs no further read.
        user = req.context.principal.user
        profile = ProfileResponse(
            id=str(user["_id"]),
            name=user["name"],
            email=user["email"],
            age=user.get("age"),
            created_at=user["created_at"],
            email_verified=bool(user.get("email_verified", False)),
        )
        send(resp, profile)


class PublicUserResource:
    docs = {
        "get": Operation(
            "Public fields of a user (no email, no secrets)",
            "users",
            response=PublicUserResponse,
            errors=(404, 503),
        )
    }

    def __init__(self, users: UserStore, admission: Admission) -> None:
        self._users = users
        self._admission = admission

    def on_get(self, req: falcon.Request, resp: falcon.Response, user_id: str) -> None:
        oid = parse_user_id(user_id)
        if oid is None:
            raise NotFound()
        with self._admission.operation("users.find"):
            user = self._users.find_public(oid)
        if user is None:
            raise NotFound()
        send(resp, PublicUserResponse(str(user["_id"]), user["name"], user["created_at"]))

"""The /users resources: thin adapters from HTTP to AuthService and UserStore.

Token responses are `{access_token, refresh_token, token_type: "Bearer", expires_in}` (the
field names existing clients use) and carry `Cache-Control: no-store` like every API response.
"""

from __future__ import annotations

import falcon

from api.accounts import UserStore, parse_user_id
from api.auth.service import AuthService, Principal, TokenPair
from api.database import DatabaseGuard
from api.errors import NotFound, Unauthorized
from api.middleware import bearer_token
from api.openapi import Operation
from api.schemas import (
    LoginRequest,
    ProfileResponse,
    PublicUserResponse,
    RefreshRequest,
    SignupRequest,
    TokenResponse,
    decode,
    send,
)

_BODY_ERRORS = (400, 413, 415, 422, 503)


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

    def __init__(self, auth: AuthService, trusted_proxy_hops: int) -> None:
        self._auth = auth
        self._hops = trusted_proxy_hops

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        body = decode(req.context.body, SignupRequest)
        pair = self._auth.signup(body, ip=client_ip(req, self._hops))
        send_tokens(resp, pair, 201)


class LoginResource:
    docs = {
        "post": Operation(
            "Log in with email and password and start a session",
            "users",
            request=LoginRequest,
            response=TokenResponse,
            errors=(*_BODY_ERRORS, 401, 429),
        )
    }

    def __init__(self, auth: AuthService, trusted_proxy_hops: int) -> None:
        self._auth = auth
        self._hops = trusted_proxy_hops

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        body = decode(req.context.body, LoginRequest)
        ip = client_ip(req, self._hops)
        pair = self._auth.login(body, ip=ip, user_agent=req.user_agent or "")
        send_tokens(resp, pair, 200)


class RefreshResource:
    docs = {
        "post": Operation(
            "Rotate a refresh token (Authorization: Bearer, or {refresh_token} in the body)",
            "users",
            request=RefreshRequest,
            request_required=False,
            response=TokenResponse,
            errors=(*_BODY_ERRORS, 401),
            description="The presented refresh token is dead afterwards. Presenting an "
            "already-rotated token revokes its whole session.",
            extra={"security": [{"bearerAuth": []}, {}]},
        )
    }

    def __init__(self, auth: AuthService) -> None:
        self._auth = auth

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        if req.context.body:
            token: str | None = decode(req.context.body, RefreshRequest).refresh_token
        else:
            token = bearer_token(req)
        if token is None:
            raise Unauthorized("A refresh token is required.", code="missing_token")
        send_tokens(resp, self._auth.refresh(token), 200)


class LogoutResource:
    auth_required = True
    docs = {
        "post": Operation(
            "End this session (its refresh and access tokens stop working)",
            "users",
            ok_status=204,
            bearer=True,
            errors=(401, 503),
        )
    }

    def __init__(self, auth: AuthService) -> None:
        self._auth = auth

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        principal: Principal = req.context.principal
        self._auth.logout(principal)
        resp.status = falcon.HTTP_204


class LogoutAllResource:
    auth_required = True
    docs = {
        "post": Operation(
            "End every session of this user; earlier access tokens stop working",
            "users",
            ok_status=204,
            bearer=True,
            errors=(401, 503),
        )
    }

    def __init__(self, auth: AuthService) -> None:
        self._auth = auth

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        principal: Principal = req.context.principal
        self._auth.logout_all(principal)
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

    def __init__(self, users: UserStore, guard: DatabaseGuard) -> None:
        self._users = users
        self._guard = guard

    def on_get(self, req: falcon.Request, resp: falcon.Response, user_id: str) -> None:
        oid = parse_user_id(user_id)
        if oid is None:
            raise NotFound()
        with self._guard.operation("users.find"):
            user = self._users.find_public(oid)
        if user is None:
            raise NotFound()
        send(resp, PublicUserResponse(str(user["_id"]), user["name"], user["created_at"]))

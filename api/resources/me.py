"""Resources for the caller's control of their own account (/users/me/...): the password, the
sessions, proof of identity for sensitive steps, and the security log."""

from __future__ import annotations

import falcon
from bson import ObjectId
from bson.errors import InvalidId

from api.auth.context import AuthContext, Principal
from api.auth.flows.password_change import change_password
from api.auth.flows.session_control import end_one, list_sessions, reauthenticate
from api.auth.stores.security_log import PAGE_MAX
from api.errors import BadRequest
from api.openapi import Operation
from api.resources.accounts import client_of, send_tokens
from api.schemas import (
    ChangePasswordRequest,
    ReauthenticateRequest,
    SecurityEventResponse,
    SecurityEventsPage,
    SessionsResponse,
    TokenResponse,
    decode,
    send,
)

_BODY_ERRORS = (400, 408, 413, 415, 422, 503)
PAGE_DEFAULT = 20


class PasswordResource:
    """POST /users/me/password: change the password, knowing the current one."""

    auth_required = True
    docs = {
        "post": Operation(
            "Change the password (the current one is required)",
            "account control",
            request=ChangePasswordRequest,
            response=TokenResponse,
            bearer=True,
            errors=(*_BODY_ERRORS, 401, 429),
            description="A wrong current password is a 401 invalid_credentials and counts as a "
            "failed login. The new password must differ and meet the policy (422). Every other "
            "session ends unless keep_other_sessions is true; the answer is a fresh token pair "
            "for the caller, and the user is told by mail.",
        )
    }

    def __init__(self, auth: AuthContext) -> None:
        self._auth = auth

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        principal: Principal = req.context.principal
        body = decode(req.context.body, ChangePasswordRequest)
        pair = change_password(
            self._auth,
            principal,
            body.current_password,
            body.new_password,
            keep_other_sessions=body.keep_other_sessions,
            client=client_of(req, self._auth),
        )
        send_tokens(resp, pair, 200)


class SessionsResource:
    """GET /users/me/sessions: the caller's live sessions."""

    auth_required = True
    docs = {
        "get": Operation(
            "The caller's live sessions, most recently used first",
            "account control",
            response=SessionsResponse,
            bearer=True,
            errors=(401, 503),
        )
    }

    def __init__(self, auth: AuthContext) -> None:
        self._auth = auth

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        principal: Principal = req.context.principal
        send(resp, SessionsResponse(list_sessions(self._auth, principal)))


class SessionResource:
    """DELETE /users/me/sessions/{session_id}: end one of the caller's sessions."""

    auth_required = True
    docs = {
        "delete": Operation(
            "End one of the caller's sessions",
            "account control",
            ok_status=204,
            bearer=True,
            errors=(401, 404, 503),
            description="Ending the caller's own session is a logout. Ending any other needs a "
            "login or reauthentication in the last 5 minutes (else 401 "
            "reauthentication_required). Its access tokens stop working at once.",
        )
    }

    def __init__(self, auth: AuthContext) -> None:
        self._auth = auth

    def on_delete(self, req: falcon.Request, resp: falcon.Response, session_id: str) -> None:
        principal: Principal = req.context.principal
        end_one(self._auth, principal, session_id[:64], client=client_of(req, self._auth))
        resp.status = falcon.HTTP_204


class ReauthenticateResource:
    """POST /users/me/reauthenticate {password}: prove the password again."""

    auth_required = True
    docs = {
        "post": Operation(
            "Enter the password again; returns a token pair with a fresh auth_time",
            "account control",
            request=ReauthenticateRequest,
            response=TokenResponse,
            bearer=True,
            errors=(*_BODY_ERRORS, 401, 429),
            description="Checked under the login limits. The session's previous refresh token "
            "is dead afterwards: use the returned pair.",
        )
    }

    def __init__(self, auth: AuthContext) -> None:
        self._auth = auth

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        principal: Principal = req.context.principal
        body = decode(req.context.body, ReauthenticateRequest)
        pair = reauthenticate(
            self._auth, principal, body.password, client=client_of(req, self._auth)
        )
        send_tokens(resp, pair, 200)


class SecurityEventsResource:
    """GET /users/me/security-events?before=&limit=: the caller's security log, newest first."""

    auth_required = True
    docs = {
        "get": Operation(
            "The caller's security log, newest first",
            "account control",
            response=SecurityEventsPage,
            bearer=True,
            errors=(400, 401, 503),
            description="Pages of `limit` events (1-100, default 20); pass next_before as "
            "`before` for the next page.",
            extra={
                "parameters": [
                    {"name": "before", "in": "query", "schema": {"type": "string"}},
                    {
                        "name": "limit",
                        "in": "query",
                        "schema": {"type": "integer", "minimum": 1, "maximum": PAGE_MAX},
                    },
                ]
            },
        )
    }

    def __init__(self, auth: AuthContext) -> None:
        self._auth = auth

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        principal: Principal = req.context.principal
        before, limit = _before(req.get_param("before")), _limit(req.get_param("limit"))
        with self._auth.admission.operation("security_events.page"):
            docs = self._auth.security.page(principal.user_id, before=before, limit=limit + 1)
        events = [
            SecurityEventResponse(
                id=str(doc["_id"]),
                type=doc["type"],
                at=doc["at"],
                ip=doc.get("ip"),
                user_agent=doc.get("user_agent"),
            )
            for doc in docs[:limit]
        ]
        next_before = events[-1].id if len(docs) > limit else None
        send(resp, SecurityEventsPage(events, next_before))


def _before(raw: str | None) -> ObjectId | None:
    if raw is None:
        return None
    try:
        return ObjectId(raw)
    except (InvalidId, TypeError):
        raise BadRequest("`before` must be an event id.", code="invalid_cursor") from None


def _limit(raw: str | None) -> int:
    if raw is None:
        return PAGE_DEFAULT
    if not raw.isdecimal() or not 1 <= int(raw) <= PAGE_MAX:
        raise BadRequest(f"`limit` must be 1-{PAGE_MAX}.", code="invalid_limit")
    return int(raw)

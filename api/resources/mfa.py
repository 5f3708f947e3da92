"""The second factor's resources: the login's code step, and the caller's own factor
(/users/me/mfa...). Thin adapters over api/auth/flows/mfa.py."""

from __future__ import annotations

import falcon

from api.auth.context import AuthContext, Principal
from api.auth.flows import mfa
from api.openapi import Operation
from api.resources.accounts import client_of, send_tokens
from api.schemas import (
    MfaCodeRequest,
    MfaConfirmRequest,
    MfaEnrolment,
    MfaLoginRequest,
    MfaStatus,
    RecoveryCodes,
    TokenResponse,
    decode,
    send,
)

_BODY_ERRORS = (400, 408, 413, 415, 422, 503)


class MfaLoginResource:
    """POST /users/login/mfa: finish a login with a code or a recovery code."""

    docs = {
        "post": Operation(
            "Finish a login with the second factor (a code, or a recovery code)",
            "users",
            request=MfaLoginRequest,
            response=TokenResponse,
            errors=(*_BODY_ERRORS, 401, 429),
            description="mfa_token is what POST /users/login answered (valid 5 minutes, for "
            "one successful step). A code is accepted once: the same code again is a 401. "
            "Wrong codes count against the login limits. The tokens' amr says how: "
            '["pwd","otp"] or ["pwd","rec"].',
        )
    }

    def __init__(self, auth: AuthContext) -> None:
        self._auth = auth

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        body = decode(req.context.body, MfaLoginRequest)
        send_tokens(
            resp, mfa.complete_login(self._auth, body, client=client_of(req, self._auth)), 200
        )


class TotpEnrolmentResource:
    """POST /users/me/mfa/totp: start an enrolment (needs a recent sign-in)."""

    auth_required = True
    docs = {
        "post": Operation(
            "Start adding an authenticator (TOTP): a secret and its QR code",
            "account control",
            ok_status=201,
            response=MfaEnrolment,
            request_required=False,
            bearer=True,
            errors=(401, 409, 503),
            description="Needs a sign-in or POST /users/me/reauthenticate within 5 minutes "
            "(else 401 reauthentication_required). Nothing is on until confirmed.",
        )
    }

    def __init__(self, auth: AuthContext) -> None:
        self._auth = auth

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        principal: Principal = req.context.principal
        send(resp, mfa.enrol(self._auth, principal, client=client_of(req, self._auth)), 201)


class TotpConfirmResource:
    """POST /users/me/mfa/totp/confirm {code}: turn the factor on."""

    auth_required = True
    docs = {
        "post": Operation(
            "Turn the authenticator on with one of its codes; get 10 recovery codes, once",
            "account control",
            request=MfaConfirmRequest,
            response=RecoveryCodes,
            bearer=True,
            errors=(*_BODY_ERRORS, 401, 409, 429),
        )
    }

    def __init__(self, auth: AuthContext) -> None:
        self._auth = auth

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        principal: Principal = req.context.principal
        body = decode(req.context.body, MfaConfirmRequest)
        codes = mfa.confirm(self._auth, principal, body.code, client=client_of(req, self._auth))
        send(resp, codes, 200)


class MfaResource:
    """GET /users/me/mfa: whether the factor is on, and unused recovery codes."""

    auth_required = True
    docs = {
        "get": Operation(
            "Whether the second factor is on, and unused recovery codes",
            "account control",
            response=MfaStatus,
            bearer=True,
            errors=(401, 503),
        )
    }

    def __init__(self, auth: AuthContext) -> None:
        self._auth = auth

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        principal: Principal = req.context.principal
        send(resp, mfa.status(self._auth, principal))


class MfaDisableResource:
    """POST /users/me/mfa/disable {code | recovery_code}: turn the factor off."""

    auth_required = True
    docs = {
        "post": Operation(
            "Turn the second factor off (a code or a recovery code, now)",
            "account control",
            ok_status=204,
            request=MfaCodeRequest,
            bearer=True,
            errors=(*_BODY_ERRORS, 401, 409, 429),
        )
    }

    def __init__(self, auth: AuthContext) -> None:
        self._auth = auth

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        principal: Principal = req.context.principal
        body = decode(req.context.body, MfaCodeRequest)
        mfa.disable(self._auth, principal, body, client=client_of(req, self._auth))
        resp.status = falcon.HTTP_204


class RecoveryCodesResource:
    """POST /users/me/mfa/recovery-codes {code | recovery_code}: new recovery codes."""

    auth_required = True
    docs = {
        "post": Operation(
            "Replace the recovery codes (a code or a recovery code, now)",
            "account control",
            request=MfaCodeRequest,
            response=RecoveryCodes,
            bearer=True,
            errors=(*_BODY_ERRORS, 401, 409, 429),
        )
    }

    def __init__(self, auth: AuthContext) -> None:
        self._auth = auth

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        principal: Principal = req.context.principal
        body = decode(req.context.body, MfaCodeRequest)
        codes = mfa.regenerate(self._auth, principal, body, client=client_of(req, self._auth))
        send(resp, codes, 200)

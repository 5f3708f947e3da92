"""Resources for the mailed account links: verify the address, forget and reset the password.

The raw token travels only in the request body (the pages read it from the link's fragment,
which browsers never send to a server or put in a Referer); it is never logged.
"""

from __future__ import annotations

import falcon

from api.auth.context import AuthContext, Principal
from api.auth.flows.password_reset import forgot_password, reset_password
from api.auth.flows.verification import confirm_email, request_verification
from api.openapi import Operation
from api.resources.accounts import client_of
from api.schemas import (
    ForgotPasswordRequest,
    ResetPasswordRequest,
    StatusResponse,
    VerifyEmailRequest,
    decode,
    send,
)

_BODY_ERRORS = (400, 408, 413, 415, 422, 503)
ACCEPTED = StatusResponse("accepted")


class VerificationMailResource:
    """POST /users/me/verify-email: send the verification link again."""

    auth_required = True
    docs = {
        "post": Operation(
            "Send the email-verification link again",
            "account recovery",
            ok_status=202,
            response=StatusResponse,
            bearer=True,
            errors=(401, 503),
            description="Always 202. Nothing is sent when the address is verified already or a "
            "link was sent within the cooldown (API_VERIFY_COOLDOWN_S). A new link replaces the "
            "previous one; it is valid for 24 hours.",
        )
    }

    def __init__(self, auth: AuthContext) -> None:
        self._auth = auth

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        principal: Principal = req.context.principal
        request_verification(self._auth, principal)
        send(resp, ACCEPTED, 202)


class VerifyEmailResource:
    """POST /users/verify-email {token}: redeem a verification link."""

    docs = {
        "post": Operation(
            "Confirm an email address with the token from the verification link",
            "account recovery",
            ok_status=204,
            request=VerifyEmailRequest,
            errors=_BODY_ERRORS,
            description="400 invalid_token when the token is unknown, used, expired, replaced "
            "by a newer link or was sent to an address the account no longer has.",
        )
    }

    def __init__(self, auth: AuthContext) -> None:
        self._auth = auth

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        body = decode(req.context.body, VerifyEmailRequest)
        confirm_email(self._auth, body.token, client=client_of(req, self._auth))
        resp.status = falcon.HTTP_204


class ForgotPasswordResource:
    """POST /users/forgot-password {email}: mail a reset link if the address has an account."""

    docs = {
        "post": Operation(
            "Ask for a password-reset link",
            "account recovery",
            ok_status=202,
            request=ForgotPasswordRequest,
            response=StatusResponse,
            errors=(*_BODY_ERRORS, 429),
            description="Always 202 with the same body for every address, whether or not it has "
            "an account: the answer says nothing about which addresses exist. At most "
            "API_FORGOT_MAX_PER_ADDRESS links per hour go to one address; more than "
            "API_FORGOT_MAX_PER_IP requests per minute from one client are refused (429). The "
            "link is valid for 30 minutes.",
        )
    }

    def __init__(self, auth: AuthContext) -> None:
        self._auth = auth

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        body = decode(req.context.body, ForgotPasswordRequest)
        forgot_password(self._auth, body.email, client=client_of(req, self._auth))
        send(resp, ACCEPTED, 202)


class ResetPasswordResource:
    """POST /users/reset-password {token, password}: set a new password with a reset link."""

    docs = {
        "post": Operation(
            "Set a new password with the token from the reset link",
            "account recovery",
            ok_status=204,
            request=ResetPasswordRequest,
            errors=_BODY_ERRORS,
            description="The password policy is checked first (422 weak_password leaves the "
            "link usable). Then the link is spent, every session and access token of the "
            "account ends, the address counts as verified and the user is told by mail. No "
            "tokens are returned: log in with the new password.",
        )
    }

    def __init__(self, auth: AuthContext) -> None:
        self._auth = auth

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        body = decode(req.context.body, ResetPasswordRequest)
        reset_password(self._auth, body.token, body.password, client=client_of(req, self._auth))
        resp.status = falcon.HTTP_204

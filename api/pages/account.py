"""The account pages the mailed links open, so the flows work without a front-end of our own:

    GET /account/reset-password   a form for the new password; its script reads the token from
                                  the link's fragment (#token=...), removes it from the address
                                  bar, and posts {token, password} to /users/reset-password
    GET /account/verify-email     a button that posts {token} to /users/verify-email (a button,
                                  not an automatic post: mail scanners that open links must not
                                  spend them)
    GET /account/security         sign in (with the code step for an enrolled account), then add
                                  an authenticator (the QR code and the secret as text, a code to
                                  confirm, the recovery codes shown once), or turn it off, or get
                                  new recovery codes; the tokens live in the page's memory only

Set API_ACCOUNT_LINKS_URL to point the links at an app's own pages instead; they then call the
same two routes.
"""

from __future__ import annotations

import falcon

from api.auth.passwords.policy import MIN_LENGTH
from api.pages import render


class ResetPasswordPage:
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        render(resp, "reset_password.html", min_length=MIN_LENGTH)


class VerifyEmailPage:
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        render(resp, "verify_email.html")


class SecurityPage:
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        render(resp, "security.html")

"""The account pages in real headless Chromium against a real gunicorn API: a user opens the
links from the outbox mails, verifies their address and sets a new password, then logs in; a
user adds an authenticator on the security page and signs in with its codes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from accountmail import TOKEN_RE, MailRunner, body_of, only
from apihelpers import PASSWORD
from apiserver import ApiServer, start_api
from authenticator import Authenticator
from browser import watch
from playwright.sync_api import BrowserContext, Page
from pymongo.database import Database

from api.key_material import parse_keyring
from api.settings import AccountSettings
from api.tasks import with_product_tasks
from queue_worker import JobStore, QueueSettings
from queue_worker.builtin import load_tasks

NEW_PASSWORD = "a fresh and rather long passphrase"
EMAIL = "ada@example.com"


@pytest.fixture
def api(mongo_env: dict[str, str]) -> Iterator[ApiServer]:
    # Logins' bookkeeping at once, as in the dashboard's page tests (a browser is fast).
    server = start_api(mongo_env, workers=1, API_LOGIN_LEDGER_FLUSH_MS="0")
    yield server
    server.stop()


@pytest.fixture
def mail(api: ApiServer, db: Database[Any], tmp_path: Path) -> MailRunner:
    """Runs the mail jobs with the server's token keys; links point at the server."""
    settings = with_product_tasks(QueueSettings())
    store = JobStore(db, settings, registry=load_tasks(settings))
    accounts = AccountSettings(
        parse_keyring(api.env["API_ACCOUNT_TOKEN_KEYS"]),
        public_url=f"http://127.0.0.1:{api.port}",
    )
    return MailRunner(store, accounts, tmp_path / "outbox")


def link_in(message: Any) -> str:
    body = body_of(message)
    found = [word for word in body.split() if TOKEN_RE.search(word)]
    assert len(found) == 1, body
    return found[0]


def test_the_reset_page_sets_a_new_password(
    api: ApiServer, mail: MailRunner, context: BrowserContext
) -> None:
    signup = {"name": "Ada", "email": EMAIL, "password": PASSWORD}
    assert api.request("POST", "/users/signup", signup).status == 201
    assert api.request("POST", "/users/forgot-password", {"email": EMAIL}).status == 202
    link = link_in(only(mail.run(), "Reset your password"))
    assert link.startswith(f"http://127.0.0.1:{api.port}/account/reset-password#token=")

    page = context.new_page()
    problems = watch(page)
    response = page.goto(link)
    assert response is not None and response.status == 200
    headers = response.headers
    assert "script-src 'self'" in headers["content-security-policy"]
    assert "unsafe-inline" not in headers["content-security-policy"]
    assert headers["referrer-policy"] == "no-referrer"
    assert "#" not in page.url  # the token left the address bar at once
    page.fill("#password", NEW_PASSWORD)
    page.fill("#confirm", "something else entirely")
    page.click("#submit")
    page.wait_for_selector("#status.error")
    assert "differ" in page.inner_text("#status")
    page.fill("#password", "password1234")
    page.fill("#confirm", "password1234")
    page.click("#submit")
    page.wait_for_selector("#status.error >> text=/password/i")
    page.fill("#password", NEW_PASSWORD)
    page.fill("#confirm", NEW_PASSWORD)
    page.click("#submit")
    page.wait_for_selector("#status.ok")
    assert "log in" in page.inner_text("#status")
    assert not problems, problems
    assert problems.statuses == [(422, "/users/reset-password")]  # the weak password only

    old = api.request("POST", "/users/login", {"email": EMAIL, "password": PASSWORD})
    new = api.request("POST", "/users/login", {"email": EMAIL, "password": NEW_PASSWORD})
    assert (old.status, new.status) == (401, 200)


def test_the_verification_page_confirms_the_address(
    api: ApiServer, mail: MailRunner, context: BrowserContext
) -> None:
    signup = {"name": "Ada", "email": EMAIL, "password": PASSWORD}
    tokens = api.request("POST", "/users/signup", signup).json
    link = link_in(only(mail.run(), "Welcome aboard"))
    page = context.new_page()
    problems = watch(page)
    page.goto(link)
    page.click("#submit")
    page.wait_for_selector("#status.ok")
    auth = {"Authorization": f"Bearer {tokens['access_token']}"}
    assert api.request("GET", "/users/profile", headers=auth).json["email_verified"] is True
    again = context.new_page()  # a second use of the same link
    again_problems = watch(again)
    again.goto(link)
    again.click("#submit")
    again.wait_for_selector("#status.error")
    assert "invalid or has expired" in again.inner_text("#status")
    assert not problems and not problems.statuses, problems
    assert again_problems.statuses == [(400, "/users/verify-email")]


def test_a_link_without_its_token_says_so(api: ApiServer, context: BrowserContext) -> None:
    page = context.new_page()
    page.goto(f"http://127.0.0.1:{api.port}/account/reset-password")
    page.wait_for_selector("#status.error")
    assert page.is_disabled("#submit")


def security_sign_in(page: Page, base: str, email: str, password: str = PASSWORD) -> None:
    page.goto(f"{base}/account/security")
    page.fill("#email", email)
    page.fill("#password", password)
    page.click("#signin")


def test_the_security_page_adds_an_authenticator_and_its_codes_sign_in_once(
    api: ApiServer, context: BrowserContext
) -> None:
    """A user adds an authenticator on /account/security (QR code and key shown, a code from
    the key turns it on, 10 recovery codes shown once); signing in again asks for a code, which
    works once; a recovery code works once; the API's login answers with a challenge, not
    tokens."""
    base = f"http://127.0.0.1:{api.port}"
    signup = {"name": "Ada", "email": EMAIL, "password": PASSWORD}
    assert api.request("POST", "/users/signup", signup).status == 201
    page = context.new_page()
    problems = watch(page)
    security_sign_in(page, base, EMAIL)
    page.wait_for_selector("#factor-state >> text=/off/")
    page.click("#enrol")
    page.wait_for_selector("#qr svg")
    authenticator = Authenticator(page.inner_text("#secret"))
    page.fill("#confirm-code", authenticator.code())
    page.click("#confirm")
    page.wait_for_selector("#recovery-codes li")
    recovery = [item.inner_text() for item in page.query_selector_all("#recovery-codes li")]
    assert len(set(recovery)) == 10
    page.wait_for_selector("#factor-state >> text=/is on \\(10 recovery/")

    password_only = api.request("POST", "/users/login", {"email": EMAIL, "password": PASSWORD})
    assert password_only.json["mfa_required"] is True and "access_token" not in password_only.json

    code = authenticator.code()
    for attempt in ("first", "replay"):
        again = context.new_page()
        security_sign_in(again, base, EMAIL)
        again.fill("#login-code", code)
        again.click("#verify")
        if attempt == "first":
            again.wait_for_selector("#factor-state >> text=/is on/")
        else:
            again.wait_for_selector("#status.error")
            assert again.is_hidden("#factor")
    for attempt in ("first", "again"):
        other = context.new_page()
        security_sign_in(other, base, EMAIL)
        other.fill("#login-recovery", recovery[0])
        other.click("#verify")
        if attempt == "first":
            other.wait_for_selector("#factor-state >> text=/9 recovery codes/")
        else:
            other.wait_for_selector("#status.error")
    assert not problems.console, problems.console

"""Email verification and password reset, end to end: the API enqueues, a real consumer runs
the mail jobs into an outbox, and the test follows the links in the mails like a user."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import jwt
import pytest
from accountmail import MailRunner, body_of, only, token_in
from apihelpers import PASSWORD, Clock, bearer, signup
from falcon import testing
from pymongo.database import Database

from api.auth.stores.account_tokens import COLLECTION as TOKENS
from api.settings import ApiSettings
from queue_worker import JobStore

NEW_PASSWORD = "a fresh and rather long passphrase"
WELCOME, VERIFY, RESET = "Welcome aboard", "Confirm your email address", "Reset your password"


@pytest.fixture
def mail(job_store: JobStore, settings: ApiSettings, tmp_path: Path) -> MailRunner:
    return MailRunner(job_store, settings.accounts, tmp_path / "outbox")


def profile(client: testing.TestClient, access: str) -> dict[str, Any]:
    result = client.simulate_get("/users/profile", headers=bearer(access))
    assert result.status_code == 200, result.text
    body: dict[str, Any] = result.json
    return body


def login(client: testing.TestClient, password: str, email: str = "ada@example.com") -> Any:
    return client.simulate_post("/users/login", json={"email": email, "password": password})


def verify(client: testing.TestClient, token: str) -> Any:
    return client.simulate_post("/users/verify-email", json={"token": token})


def reset(client: testing.TestClient, token: str, password: str = NEW_PASSWORD) -> Any:
    return client.simulate_post(
        "/users/reset-password", json={"token": token, "password": password}
    )


def forgot(client: testing.TestClient, email: str = "ada@example.com", ip: str = "") -> Any:
    headers = {"X-Forwarded-For": ip} if ip else {}
    return client.simulate_post("/users/forgot-password", json={"email": email}, headers=headers)


# -- verification -----------------------------------------------------------------------------


def test_the_welcome_mail_verifies_the_address(
    client: testing.TestClient, mail: MailRunner
) -> None:
    """Sign-up mails a link; redeeming it marks the address verified in the profile and in the
    access tokens issued afterwards; the link works once."""
    tokens = signup(client)
    assert profile(client, tokens["access_token"])["email_verified"] is False
    welcome = only(mail.run(), WELCOME)
    assert "/account/verify-email#token=" in body_of(welcome)
    token = token_in(welcome)
    assert verify(client, token).status_code == 204
    assert profile(client, tokens["access_token"])["email_verified"] is True
    refreshed = client.simulate_post(
        "/users/refresh", json={"refresh_token": tokens["refresh_token"]}
    ).json
    claims = jwt.decode(refreshed["access_token"], options={"verify_signature": False})
    assert claims["email_verified"] is True
    again = verify(client, token)
    assert again.status_code == 400 and again.json["error"]["code"] == "invalid_token"


def test_twenty_parallel_redemptions_have_one_winner(
    client: testing.TestClient, mail: MailRunner
) -> None:
    """The token is consumed by one compare-and-set: of 20 concurrent redemptions one wins."""
    signup(client)
    token = token_in(only(mail.run(), WELCOME))
    with ThreadPoolExecutor(20) as pool:
        statuses = list(pool.map(lambda _: verify(client, token).status_code, range(20)))
    assert sorted(statuses) == [204] + [400] * 19


def test_resend_has_a_cooldown_and_replaces_the_previous_link(
    client: testing.TestClient, mail: MailRunner, clock: Clock
) -> None:
    """Asking again always answers 202; within the cooldown nothing is sent; a new link kills
    the one before it."""
    tokens = signup(client)
    first = token_in(only(mail.run(), WELCOME))
    resend = lambda: client.simulate_post(  # noqa: E731
        "/users/me/verify-email", headers=bearer(tokens["access_token"])
    )
    assert resend().status_code == 202
    second = token_in(only(mail.run(), VERIFY))
    assert resend().status_code == 202  # within the cooldown
    assert mail.run() == []
    clock.advance(61)
    fresh = client.simulate_post("/users/refresh", json={"refresh_token": tokens["refresh_token"]})
    tokens = fresh.json
    assert resend().status_code == 202
    third = token_in(only(mail.run(), VERIFY))
    assert len({first, second, third}) == 3
    assert verify(client, first).status_code == 400
    assert verify(client, second).status_code == 400
    assert verify(client, third).status_code == 204
    clock.advance(61)
    assert resend().status_code == 202  # verified: nothing more to send
    assert mail.run() == []


def test_resends_are_capped_per_day_in_a_rolling_window(
    client: testing.TestClient, mail: MailRunner, clock: Clock, settings: ApiSettings
) -> None:
    """Past the cooldown each ask sends a mail, up to API_VERIFY_MAX_PER_DAY in any 24 hours;
    further asks answer 202 and send nothing (no mailbox flooding at one a minute for ever);
    24 hours after the first, one more may go. Before: one every 60 s, without end."""
    cap = settings.accounts.verify_max_per_day
    tokens = signup(client)
    only(mail.run(), WELCOME)
    resend = lambda access: client.simulate_post(  # noqa: E731
        "/users/me/verify-email", headers=bearer(access)
    )
    for _ in range(cap):
        assert resend(tokens["access_token"]).status_code == 202
        only(mail.run(), VERIFY)
        clock.advance(61)
    for _ in range(3):
        assert resend(tokens["access_token"]).status_code == 202
        assert mail.run() == []
        clock.advance(61)
    clock.advance(86_400 - (cap + 3) * 61 + 1)  # the first mail is over a day old
    fresh = client.simulate_post("/users/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert resend(fresh.json["access_token"]).status_code == 202
    only(mail.run(), VERIFY)


def test_a_verification_link_expires_after_a_day(
    client: testing.TestClient, mail: MailRunner, clock: Clock
) -> None:
    signup(client)
    token = token_in(only(mail.run(), WELCOME))
    clock.advance(24 * 3600 + 1)
    assert verify(client, token).status_code == 400


def test_a_link_sent_to_a_former_address_does_not_verify_the_new_one(
    client: testing.TestClient, mail: MailRunner, db: Database[Any]
) -> None:
    """The token is bound to the address it was mailed to."""
    tokens = signup(client)
    token = token_in(only(mail.run(), WELCOME))
    db.users.update_one({}, {"$set": {"email": "ada.new@example.com"}})
    assert verify(client, token).status_code == 400
    assert profile(client, tokens["access_token"])["email_verified"] is False


@pytest.mark.parametrize("token", ["", "x" * 3000, "t1.not-a-token", "nokid", "zz.abc"])
def test_bad_tokens_are_clear_4xx(client: testing.TestClient, token: str) -> None:
    for result in (verify(client, token), reset(client, token)):
        assert result.status_code in (400, 422), result.text
        assert result.json["error"]["code"] in ("invalid_token", "validation_error")


def test_only_digests_of_tokens_are_stored(
    client: testing.TestClient, mail: MailRunner, db: Database[Any], job_store: JobStore
) -> None:
    """The raw token is in the mail only: not in the token collection, not in any job."""
    signup(client)
    forgot(client)
    messages = mail.run()
    raw = [token_in(only(messages, WELCOME)), token_in(only(messages, RESET))]
    for name in db.list_collection_names():
        dump = str(list(db[name].find()))
        for token in raw:
            assert token not in dump and token.split(".")[1] not in dump, name
    assert db[TOKENS].count_documents({}) == 2


# -- forgot and reset --------------------------------------------------------------------------


def test_forgot_password_answers_alike_for_every_address(
    client: testing.TestClient, mail: MailRunner, db: Database[Any]
) -> None:
    """Known, unknown and unverified addresses get the same status, body and headers, and the
    same work (one job each); only the known one gets a mail."""
    signup(client)
    mail.run()
    signup(client, email="unverified@example.com")
    known, unknown, unverified = (
        forgot(client, "ada@example.com"),
        forgot(client, "nobody@example.com"),
        forgot(client, "unverified@example.com"),
    )
    shapes = [
        (r.status_code, r.text, {k: v for k, v in r.headers.items() if k != "x-request-id"})
        for r in (known, unknown, unverified)
    ]
    assert shapes[0] == shapes[1] == shapes[2]
    assert known.status_code == 202 and known.json == {"status": "accepted"}
    jobs = db.jobs.count_documents(
        {"task": "user.password_reset"}
    ) + db.jobs_backlog.count_documents({"task": "user.password_reset"})
    assert jobs == 3
    resets = [m for m in mail.run() if m["Subject"] == RESET]
    assert sorted(str(m["To"]) for m in resets) == [
        "ada@example.com",
        "unverified@example.com",
    ]


def test_reset_sets_the_password_and_ends_every_session(
    client: testing.TestClient, mail: MailRunner
) -> None:
    """A refused password leaves the link usable; the reset ends every session and access
    token, verifies the address, mails a notice, does not log in, and works once."""
    tokens = signup(client)
    mail.run()
    assert forgot(client).status_code == 202
    token = token_in(only(mail.run(), RESET))
    weak = reset(client, token, "password1234")
    assert weak.status_code == 422 and weak.json["error"]["code"] == "weak_password"
    done = reset(client, token)
    assert done.status_code == 204 and done.text == ""
    assert (
        client.simulate_get("/users/profile", headers=bearer(tokens["access_token"])).status_code
        == 401
    )
    assert (
        client.simulate_post(
            "/users/refresh", json={"refresh_token": tokens["refresh_token"]}
        ).status_code
        == 401
    )
    assert login(client, PASSWORD).status_code == 401
    fresh = login(client, NEW_PASSWORD)
    assert fresh.status_code == 200
    assert profile(client, fresh.json["access_token"])["email_verified"] is True
    notice = only(mail.run(), "Your password was reset")
    assert "ada@example.com" in str(notice["To"])
    assert reset(client, token, "another long passphrase here").status_code == 400


def test_a_reset_link_expires_after_thirty_minutes(
    client: testing.TestClient, mail: MailRunner, clock: Clock
) -> None:
    signup(client)
    forgot(client)
    token = token_in(only(mail.run(), RESET))
    clock.advance(30 * 60 + 1)
    assert reset(client, token).status_code == 400


def test_twenty_parallel_resets_with_one_link_have_one_winner(
    client: testing.TestClient, mail: MailRunner
) -> None:
    signup(client)
    forgot(client)
    token = token_in(only(mail.run(), RESET))
    with ThreadPoolExecutor(20) as pool:
        statuses = list(pool.map(lambda _: reset(client, token).status_code, range(20)))
    assert sorted(statuses) == [204] + [400] * 19


def test_a_reset_racing_a_refresh_leaves_no_live_token(
    client: testing.TestClient, mail: MailRunner
) -> None:
    """Refreshes running while the reset commits cannot carry a session past it: afterwards
    neither the last refresh token nor its access token works."""
    tokens = signup(client)
    forgot(client)
    token = token_in(only(mail.run(), RESET))
    latest = [tokens]

    def keep_refreshing() -> None:
        for _ in range(30):
            result = client.simulate_post(
                "/users/refresh", json={"refresh_token": latest[-1]["refresh_token"]}
            )
            if result.status_code != 200:
                return
            latest.append(result.json)

    with ThreadPoolExecutor(2) as pool:
        racer = pool.submit(keep_refreshing)
        assert reset(client, token).status_code == 204
        racer.result()
    last = latest[-1]
    assert (
        client.simulate_get("/users/profile", headers=bearer(last["access_token"])).status_code
        == 401
    )
    assert (
        client.simulate_post(
            "/users/refresh", json={"refresh_token": last["refresh_token"]}
        ).status_code
        == 401
    )


def test_forgot_is_quiet_beyond_three_an_hour_per_address(
    client: testing.TestClient, mail: MailRunner
) -> None:
    signup(client)
    mail.run()
    statuses = [forgot(client).status_code for _ in range(5)]
    assert statuses == [202] * 5
    assert len([m for m in mail.run() if m["Subject"] == RESET]) == 3


def test_forgot_is_refused_beyond_twenty_a_minute_per_client(client: testing.TestClient) -> None:
    statuses = [forgot(client, f"u{i}@example.com", ip="").status_code for i in range(21)]
    assert statuses == [202] * 20 + [429]
    refused = forgot(client, "u99@example.com")
    assert refused.json["error"]["code"] == "rate_limited"
    assert int(refused.headers["retry-after"]) > 0


@pytest.mark.parametrize("body", [{}, {"email": 5}, {"email": "a@b.c", "extra": 1}, {"token": "x"}])
def test_forgot_validates_its_body(client: testing.TestClient, body: dict[str, Any]) -> None:
    assert forgot_raw(client, body).status_code == 422


def forgot_raw(client: testing.TestClient, body: dict[str, Any]) -> Any:
    return client.simulate_post("/users/forgot-password", json=body)

"""The second factor over the API: enrolment (a fresh sign-in, a sealed secret, hashed recovery
codes shown once), the login's code step (no tokens before it, amr after it, every code and
recovery code accepted exactly once, also under 20 parallel submissions), its limits, turning
it off and new recovery codes (a second-factor step each), the security log and the mail."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from threading import Barrier
from typing import Any

import pytest
from accountmail import MailRunner, only, reset_token
from apihelpers import PASSWORD, Clock, bearer, enrol_totp, next_code, signup
from falcon import testing
from pymongo.database import Database

from api.auth.stores.mfa import CHALLENGE_MAX_FAILURES, CHALLENGE_TTL_S
from api.auth.tokens.totp import code_at
from api.settings import ApiSettings
from queue_worker import JobStore

EMAIL = "ada@example.com"


def password_step(client: testing.TestClient, password: str = PASSWORD, **kw: Any) -> Any:
    return client.simulate_post("/users/login", json={"email": EMAIL, "password": password}, **kw)


def code_step(
    client: testing.TestClient, token: str, remote_addr: str = "127.0.0.1", **fields: str
) -> Any:
    body = {"mfa_token": token, **fields}
    return client.simulate_post("/users/login/mfa", json=body, remote_addr=remote_addr)


def challenges(client: testing.TestClient, n: int) -> list[tuple[str, str]]:
    """`n` open code steps, from `n` devices of the user's own network (a right password stays
    counted until its code step succeeds, so one device could not open 20)."""
    return [
        (
            password_step(client, remote_addr=f"127.0.0.{i + 1}").json["mfa_token"],
            f"127.0.0.{i + 1}",
        )
        for i in range(n)
    ]


def claims(token: str) -> dict[str, Any]:
    import base64
    import json

    body = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))  # type: ignore[no-any-return]


@pytest.fixture
def mail(job_store: JobStore, settings: ApiSettings, tmp_path: Path) -> MailRunner:
    return MailRunner(job_store, settings.accounts, tmp_path / "outbox")


@pytest.fixture
def enrolled(client: testing.TestClient, clock: Clock) -> tuple[str, list[str]]:
    """Ada, signed up, with an authenticator on: its secret and recovery codes."""
    access = signup(client)["access_token"]
    return enrol_totp(client, access, clock)


def test_enrolment_needs_a_recent_sign_in_and_shows_a_uri_a_secret_and_a_qr_code(
    client: testing.TestClient, clock: Clock, db: Database[Any]
) -> None:
    """Starting needs a sign-in within 5 minutes; the answer has the otpauth URI, the secret as
    text and an SVG QR code; the stored secret is sealed (never in clear), and nothing is on
    until confirmed."""
    access = signup(client)["access_token"]
    clock.advance(301)
    stale = client.simulate_post("/users/me/mfa/totp", headers=bearer(access))
    assert stale.status_code == 401 and stale.json["error"]["code"] == "reauthentication_required"
    fresh = client.simulate_post(
        "/users/me/reauthenticate", json={"password": PASSWORD}, headers=bearer(access)
    ).json["access_token"]
    started = client.simulate_post("/users/me/mfa/totp", headers=bearer(fresh))
    assert started.status_code == 201
    body = started.json
    assert (
        body["otpauth_uri"].startswith("otpauth://totp/")
        and "issuer=jobauth" in body["otpauth_uri"]
    )
    assert body["qr_svg"].startswith("<svg") and "<script" not in body["qr_svg"]
    user = db.users.find_one()
    assert body["secret"] not in str(user)
    assert "pending" in user["mfa"] and not user["mfa"].get("enabled")
    status = client.simulate_get("/users/me/mfa", headers=bearer(fresh)).json
    assert status == {"enabled": False, "recovery_codes_left": 0}


def test_confirming_turns_it_on_with_ten_hashed_single_use_recovery_codes(
    client: testing.TestClient, clock: Clock, db: Database[Any], mail: MailRunner
) -> None:
    """A right code turns the factor on; ten recovery codes are answered once and stored only
    as digests; the change is in the security log and mailed."""
    access = signup(client)["access_token"]
    secret = client.simulate_post("/users/me/mfa/totp", headers=bearer(access)).json["secret"]
    wrong = client.simulate_post(
        "/users/me/mfa/totp/confirm", json={"code": "000000"}, headers=bearer(access)
    )
    assert wrong.status_code == 400 and wrong.json["error"]["code"] == "invalid_code"
    right = client.simulate_post(
        "/users/me/mfa/totp/confirm",
        json={"code": code_at(secret, clock.now)},
        headers=bearer(access),
    )
    codes = right.json["recovery_codes"]
    assert right.status_code == 200 and len(codes) == 10 and len(set(codes)) == 10
    stored = db.users.find_one()["mfa"]
    assert stored["enabled"] and len(stored["recovery"]) == 10
    assert not [c for c in codes if c in str(stored)]
    assert secret not in str(stored)
    again = client.simulate_post("/users/me/mfa/totp", headers=bearer(access))
    assert again.status_code == 409
    assert db.security_events.count_documents({"type": "mfa_enabled"}) == 1
    only(mail.run(), "Two-step sign-in was turned on")


def test_a_password_login_of_an_enrolled_account_gets_a_challenge_and_no_tokens(
    client: testing.TestClient, enrolled: tuple[str, list[str]], clock: Clock, db: Database[Any]
) -> None:
    """The right password answers {mfa_required, mfa_token, expires_in} and starts no session;
    a right code then answers the tokens, whose amr is ["pwd", "otp"]."""
    secret, _ = enrolled
    sessions = db.sessions.count_documents({})
    step = password_step(client)
    assert step.status_code == 200
    assert set(step.json) == {"mfa_required", "mfa_token", "expires_in"}
    assert step.json["mfa_required"] is True and step.json["expires_in"] == CHALLENGE_TTL_S
    assert db.sessions.count_documents({}) == sessions
    done = code_step(client, step.json["mfa_token"], code=next_code(secret, clock))
    assert done.status_code == 200
    assert claims(done.json["access_token"])["amr"] == ["pwd", "otp"]
    refreshed = client.simulate_post(
        "/users/refresh", json={"refresh_token": done.json["refresh_token"]}
    ).json
    assert claims(refreshed["access_token"])["amr"] == ["pwd", "otp"]  # the session keeps it


def test_a_code_is_accepted_once_and_the_challenge_is_single_use(
    client: testing.TestClient, enrolled: tuple[str, list[str]], clock: Clock
) -> None:
    """The same code cannot sign in twice (a replay within its 30-second window), and an
    mfa_token used once is dead."""
    secret, _ = enrolled
    code = next_code(secret, clock)
    first = password_step(client).json["mfa_token"]
    assert code_step(client, first, code=code).status_code == 200
    assert code_step(client, first, code=code).json["error"]["code"] == "invalid_mfa_token"
    second = password_step(client).json["mfa_token"]
    replay = code_step(client, second, code=code)
    assert replay.status_code == 401 and replay.json["error"]["code"] == "invalid_code"


def test_twenty_parallel_submissions_of_one_code_sign_in_exactly_once(
    client: testing.TestClient, enrolled: tuple[str, list[str]], clock: Clock
) -> None:
    """Each of 20 challenges gets the same valid code at the same moment: one wins."""
    secret, _ = enrolled
    code = next_code(secret, clock)
    tokens = challenges(client, 20)
    barrier = Barrier(20)

    def submit(step: tuple[str, str]) -> int:
        barrier.wait()
        return int(code_step(client, step[0], step[1], code=code).status_code)

    with ThreadPoolExecutor(20) as pool:
        statuses = list(pool.map(submit, tokens))
    assert sorted(statuses) == [200] + [401] * 19


def test_a_recovery_code_signs_in_once_with_amr_rec_and_is_mailed(
    client: testing.TestClient,
    enrolled: tuple[str, list[str]],
    mail: MailRunner,
    db: Database[Any],
) -> None:
    """A recovery code (any case, with or without its dash) signs in once, with amr
    ["pwd","rec"]; the same code again is refused; 20 parallel uses of another: one wins."""
    _, codes = enrolled
    mail.run()
    used = code_step(
        client,
        password_step(client).json["mfa_token"],
        recovery_code=codes[0].lower().replace("-", ""),
    )
    assert used.status_code == 200 and claims(used.json["access_token"])["amr"] == ["pwd", "rec"]
    again = code_step(client, password_step(client).json["mfa_token"], recovery_code=codes[0])
    assert again.status_code == 401
    only(mail.run(), "A recovery code was used")
    tokens = challenges(client, 20)
    barrier = Barrier(20)

    def submit(step: tuple[str, str]) -> int:
        barrier.wait()
        return int(code_step(client, step[0], step[1], recovery_code=codes[1]).status_code)

    with ThreadPoolExecutor(20) as pool:
        assert sorted(pool.map(submit, tokens)) == [200] + [401] * 19
    left = client.simulate_get("/users/me/mfa", headers=bearer(used.json["access_token"]))
    assert left.json["recovery_codes_left"] == 8


def test_wrong_codes_count_against_the_login_limits_and_kill_the_challenge(
    client: testing.TestClient,
    enrolled: tuple[str, list[str]],
    clock: Clock,
    db: Database[Any],
) -> None:
    """Wrong codes are failed attempts like wrong passwords: the account and client run into
    their backoff (429 without the code being checked), and a challenge dies after
    CHALLENGE_MAX_FAILURES wrong codes; each is in the security log."""
    secret, _ = enrolled
    token = password_step(client).json["mfa_token"]
    statuses = [code_step(client, token, code="000000").status_code for _ in range(8)]
    assert 429 in statuses and statuses[0] == 401
    assert db.security_events.count_documents({"type": "mfa_failed"}) >= 1
    clock.advance(3600)
    dead = code_step(client, token, code=next_code(secret, clock))
    assert dead.status_code == 401 and dead.json["error"]["code"] == "invalid_mfa_token"
    fresh = password_step(client).json["mfa_token"]
    for _ in range(CHALLENGE_MAX_FAILURES):
        clock.advance(3600)  # past every backoff: only the challenge's own count remains
        code_step(client, fresh, code="000000")
    clock.advance(3600)
    assert code_step(client, fresh, code=next_code(secret, clock)).status_code == 401


def test_a_reset_never_bypasses_the_factor(
    client: testing.TestClient,
    enrolled: tuple[str, list[str]],
    mail: MailRunner,
) -> None:
    """A password reset signs nobody in and leaves the factor on: the next login still asks."""
    mail.run()
    client.simulate_post("/users/forgot-password", json={"email": EMAIL})
    link = reset_token(mail)
    reset = client.simulate_post(
        "/users/reset-password", json={"token": link, "password": "a new passphrase 42"}
    )
    assert reset.status_code == 204 and not reset.text
    step = password_step(client, "a new passphrase 42")
    assert step.status_code == 200 and step.json["mfa_required"] is True


def test_turning_it_off_and_new_recovery_codes_need_a_second_factor_step_now(
    client: testing.TestClient,
    enrolled: tuple[str, list[str]],
    clock: Clock,
    mail: MailRunner,
    db: Database[Any],
) -> None:
    """Without a code, or with a wrong one, nothing changes; with a code, new recovery codes
    replace the old (which stop working), then the factor goes off; each is mailed and logged."""
    secret, codes = enrolled
    access = code_step(
        client, password_step(client).json["mfa_token"], code=next_code(secret, clock)
    ).json["access_token"]
    mail.run()
    none = client.simulate_post("/users/me/mfa/recovery-codes", json={}, headers=bearer(access))
    wrong = client.simulate_post(
        "/users/me/mfa/recovery-codes", json={"code": "000000"}, headers=bearer(access)
    )
    assert (none.status_code, wrong.status_code) == (401, 401)
    new = client.simulate_post(
        "/users/me/mfa/recovery-codes",
        json={"code": next_code(secret, clock)},
        headers=bearer(access),
    )
    assert new.status_code == 200 and set(new.json["recovery_codes"]).isdisjoint(codes)
    old = code_step(client, password_step(client).json["mfa_token"], recovery_code=codes[3])
    assert old.status_code == 401
    off = client.simulate_post(
        "/users/me/mfa/disable", json={"code": next_code(secret, clock)}, headers=bearer(access)
    )
    assert off.status_code == 204
    assert "mfa" not in db.users.find_one()
    assert set(password_step(client).json) == {
        "access_token",
        "refresh_token",
        "expires_in",
        "token_type",
    }
    subjects = [m["Subject"] for m in mail.run()]
    assert (
        "New recovery codes were made" in subjects and "Two-step sign-in was turned off" in subjects
    )
    kinds = {e["type"] for e in db.security_events.find()}
    assert {"recovery_codes_regenerated", "mfa_disabled", "mfa_failed"} <= kinds


def test_a_challenge_expires(
    client: testing.TestClient, enrolled: tuple[str, list[str]], clock: Clock
) -> None:
    """An mfa_token older than its lifetime is refused even with a right code."""
    secret, _ = enrolled
    token = password_step(client).json["mfa_token"]
    clock.advance(CHALLENGE_TTL_S + 1)
    late = code_step(client, token, code=code_at(secret, clock.now))
    assert late.status_code == 401 and late.json["error"]["code"] == "invalid_mfa_token"


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"mfa_token": "x"},
        {"mfa_token": "x", "code": "12ab56"},
        {"mfa_token": "", "code": "123456"},
        {"mfa_token": "x", "code": "123456", "extra": 1},
    ],
)
def test_malformed_code_steps_are_4xx_json(
    client: testing.TestClient, body: dict[str, Any]
) -> None:
    """Nonsense at the code step is a 4xx JSON error, never a 500."""
    result = client.simulate_post("/users/login/mfa", json=body)
    assert 400 <= result.status_code < 500 and "error" in result.json

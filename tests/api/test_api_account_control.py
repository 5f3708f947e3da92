"""The caller's control of their account: changing the password, the session list, ending a
session, re-authentication, the security log, and the security mail."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from accountmail import MailRunner, only
from apihelpers import PASSWORD, Clock, bearer, signup
from falcon import testing
from pymongo.database import Database

from api.settings import ApiSettings
from queue_worker import JobStore

NEW_PASSWORD = "a fresh and rather long passphrase"
CHANGED = "Your password was changed"
NEW_DEVICE = "New sign-in to your account"


@pytest.fixture
def mail(job_store: JobStore, settings: ApiSettings, tmp_path: Path) -> MailRunner:
    return MailRunner(job_store, settings.accounts, tmp_path / "outbox")


def login(client: testing.TestClient, password: str = PASSWORD, ip: str = "127.0.0.1") -> Any:
    return client.simulate_post(
        "/users/login",
        json={"email": "ada@example.com", "password": password},
        remote_addr=ip,
        headers={"User-Agent": f"agent-from-{ip}"},
    )


def change(client: testing.TestClient, access: str, current: str, new: str, **extra: Any) -> Any:
    body = {"current_password": current, "new_password": new, **extra}
    return client.simulate_post("/users/me/password", json=body, headers=bearer(access))


def works(client: testing.TestClient, pair: dict[str, Any]) -> tuple[int, int]:
    """Return the status of the pair's access token on /users/profile and of a refresh."""
    access = client.simulate_get("/users/profile", headers=bearer(pair["access_token"]))
    refresh = client.simulate_post("/users/refresh", json={"refresh_token": pair["refresh_token"]})
    return access.status_code, refresh.status_code


def sessions(client: testing.TestClient, access: str) -> list[dict[str, Any]]:
    result = client.simulate_get("/users/me/sessions", headers=bearer(access))
    assert result.status_code == 200, result.text
    found: list[dict[str, Any]] = result.json["sessions"]
    return found


def events(client: testing.TestClient, access: str, query: str = "") -> dict[str, Any]:
    result = client.simulate_get(
        "/users/me/security-events", headers=bearer(access), query_string=query
    )
    assert result.status_code == 200, result.text
    body: dict[str, Any] = result.json
    return body


# -- change password ---------------------------------------------------------------------------


def test_changing_the_password_ends_other_sessions_and_mails(
    client: testing.TestClient, mail: MailRunner
) -> None:
    first = signup(client)
    other = login(client).json
    result = change(client, first["access_token"], PASSWORD, NEW_PASSWORD)
    assert result.status_code == 200
    assert works(client, first) == (401, 401)
    assert works(client, other) == (401, 401)
    assert works(client, result.json)[0] == 200
    assert login(client).status_code == 401
    assert login(client, NEW_PASSWORD).status_code == 200
    assert only(mail.run(), CHANGED)["To"].addresses[0].addr_spec == "ada@example.com"


def test_keep_other_sessions_keeps_them(client: testing.TestClient) -> None:
    first = signup(client)
    other = login(client).json
    result = change(client, first["access_token"], PASSWORD, NEW_PASSWORD, keep_other_sessions=True)
    assert result.status_code == 200
    assert works(client, other) == (200, 200)
    assert works(client, result.json) == (200, 200)
    # The caller's own refresh token was rotated: presenting the old one is a replay.
    assert works(client, first)[1] == 401


def test_a_wrong_current_password_is_a_failed_login(
    client: testing.TestClient, db: Database[Any]
) -> None:
    tokens = signup(client)
    result = change(client, tokens["access_token"], "not my password", NEW_PASSWORD)
    assert result.status_code == 401 and result.json["error"]["code"] == "invalid_credentials"
    assert db.rate_limits.count_documents({"scope": "account_ip"}) == 1
    assert events(client, tokens["access_token"])["events"][0]["type"] == "login_failed"
    statuses = [
        change(client, tokens["access_token"], "still wrong", NEW_PASSWORD).status_code
        for _ in range(8)
    ]
    assert 429 in statuses  # the login limits apply: no cheaper way to guess


def test_the_new_password_must_differ_and_meet_the_policy(client: testing.TestClient) -> None:
    tokens = signup(client)
    same = change(client, tokens["access_token"], PASSWORD, PASSWORD)
    assert same.status_code == 422 and same.json["error"]["code"] == "password_unchanged"
    weak = change(client, tokens["access_token"], PASSWORD, "ada@example.com-jobauth")
    assert weak.status_code == 422 and weak.json["error"]["code"] == "weak_password"
    assert login(client).status_code == 200


def test_two_changes_at_once_have_one_winner(client: testing.TestClient) -> None:
    """The new hash is compare-and-set against the checked one: one change wins, the other
    is told its current password is no longer current, and only the winner's password works."""
    tokens = signup(client)
    candidates = ["first brand new passphrase", "second brand new passphrase"]
    with ThreadPoolExecutor(2) as pool:
        results = list(
            pool.map(lambda new: change(client, tokens["access_token"], PASSWORD, new), candidates)
        )
    statuses = sorted(r.status_code for r in results)
    assert statuses == [200, 401]
    winner = candidates[[r.status_code for r in results].index(200)]
    loser = candidates[1 - candidates.index(winner)]
    assert login(client, winner).status_code == 200
    assert login(client, loser).status_code == 401


# -- sessions ----------------------------------------------------------------------------------


def test_the_session_list_shows_live_sessions(client: testing.TestClient) -> None:
    first = signup(client)
    second = login(client, ip="203.0.113.9").json
    listed = sessions(client, second["access_token"])
    assert len(listed) == 2
    assert {s["current"] for s in listed} == {True, False}
    mine = next(s for s in listed if s["current"])
    assert (mine["ip"], mine["user_agent"]) == ("203.0.113.9", "agent-from-203.0.113.9")
    assert set(mine) == {
        "id", "created_at", "last_used_at", "expires_at", "ip", "user_agent", "current"
    }  # fmt: skip
    client.simulate_post("/users/logout", headers=bearer(first["access_token"]))
    assert len(sessions(client, second["access_token"])) == 1


def test_ending_another_session_stops_its_tokens_at_once(
    client: testing.TestClient, clock: Clock
) -> None:
    first = signup(client)
    other = login(client).json
    other_id = next(s["id"] for s in sessions(client, first["access_token"]) if not s["current"])
    result = client.simulate_delete(
        f"/users/me/sessions/{other_id}", headers=bearer(first["access_token"])
    )
    assert result.status_code == 204
    assert works(client, other) == (401, 401)
    assert works(client, first)[0] == 200


def test_ending_another_session_needs_recent_authentication(
    client: testing.TestClient, clock: Clock
) -> None:
    first = signup(client)
    login(client)
    clock.advance(301)
    renewed = client.simulate_post(
        "/users/refresh", json={"refresh_token": first["refresh_token"]}
    ).json
    other_id = next(s["id"] for s in sessions(client, renewed["access_token"]) if not s["current"])
    path = f"/users/me/sessions/{other_id}"
    refused = client.simulate_delete(path, headers=bearer(renewed["access_token"]))
    assert refused.status_code == 401
    assert refused.json["error"]["code"] == "reauthentication_required"
    logout_all = client.simulate_post("/users/logout-all", headers=bearer(renewed["access_token"]))
    assert logout_all.json["error"]["code"] == "reauthentication_required"
    wrong = client.simulate_post(
        "/users/me/reauthenticate",
        json={"password": "nope"},
        headers=bearer(renewed["access_token"]),
    )
    assert wrong.status_code == 401
    proved = client.simulate_post(
        "/users/me/reauthenticate",
        json={"password": PASSWORD},
        headers=bearer(renewed["access_token"]),
    )
    assert proved.status_code == 200
    ok = client.simulate_delete(path, headers=bearer(proved.json["access_token"]))
    assert ok.status_code == 204
    assert works(client, renewed)[1] == 401  # reauthentication rotated the refresh token


def test_another_users_session_id_is_not_found(client: testing.TestClient) -> None:
    ada = signup(client)
    bob = signup(client, email="bob@example.com")
    bobs = sessions(client, bob["access_token"])[0]["id"]
    result = client.simulate_delete(
        f"/users/me/sessions/{bobs}", headers=bearer(ada["access_token"])
    )
    assert result.status_code == 404
    assert works(client, bob)[0] == 200
    unknown = client.simulate_delete("/users/me/sessions/nope", headers=bearer(ada["access_token"]))
    assert unknown.status_code == 404


def test_ending_the_own_session_is_a_logout(client: testing.TestClient, clock: Clock) -> None:
    tokens = signup(client)
    clock.advance(600)  # no recent authentication needed for one's own session
    renewed = client.simulate_post(
        "/users/refresh", json={"refresh_token": tokens["refresh_token"]}
    ).json
    own = sessions(client, renewed["access_token"])[0]["id"]
    result = client.simulate_delete(
        f"/users/me/sessions/{own}", headers=bearer(renewed["access_token"])
    )
    assert result.status_code == 204
    assert works(client, renewed) == (401, 401)


# -- security log and mail ---------------------------------------------------------------------


def test_the_security_log_pages_newest_first(client: testing.TestClient, mail: MailRunner) -> None:
    tokens = signup(client)
    for _ in range(3):
        login(client, "wrong password")
    login(client)
    mail.run()  # the login's event is written by its job
    page = events(client, tokens["access_token"], "limit=2")
    assert [e["type"] for e in page["events"]] == ["login_succeeded", "login_failed"]
    assert set(page["events"][0]) == {"id", "type", "at", "ip", "user_agent"}
    rest = events(client, tokens["access_token"], f"limit=2&before={page['next_before']}")
    assert [e["type"] for e in rest["events"]] == ["login_failed", "login_failed"]
    assert rest["next_before"] is None
    for query in ("limit=0", "limit=101", "limit=x", "before=zz"):
        bad = client.simulate_get(
            "/users/me/security-events", headers=bearer(tokens["access_token"]), query_string=query
        )
        assert bad.status_code == 400


def test_a_new_network_is_mailed_at_most_hourly(
    client: testing.TestClient, mail: MailRunner, clock: Clock
) -> None:
    """Not for the first login after sign-up, then once per hour for unseen networks."""
    signup(client)
    assert login(client, ip="198.51.100.7").status_code == 200  # the first login: no alert
    assert [m["Subject"] for m in mail.run()] == ["Welcome aboard"]
    assert login(client, ip="192.0.2.10").status_code == 200
    notice = only(mail.run(), NEW_DEVICE)
    assert "192.0.2.10" in notice.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert login(client, ip="100.64.0.1").status_code == 200
    assert mail.run() == []  # within the hour: logged, not mailed
    assert login(client, ip="192.0.2.10").status_code == 200  # known now
    clock.advance(3601)
    assert login(client, ip="172.16.0.1").status_code == 200
    only(mail.run(), NEW_DEVICE)


def test_a_replayed_refresh_token_is_mailed(
    client: testing.TestClient, mail: MailRunner, clock: Clock
) -> None:
    """A refresh token replayed after its grace period ends the session and is mailed."""
    tokens = signup(client)
    client.simulate_post("/users/refresh", json={"refresh_token": tokens["refresh_token"]})
    clock.advance(60)
    replay = client.simulate_post("/users/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert replay.status_code == 401
    only(mail.run(), "We signed out a device")


def test_no_secret_reaches_a_job_or_the_log(
    client: testing.TestClient, mail: MailRunner, db: Database[Any], caplog: Any
) -> None:
    tokens = signup(client)
    change(client, tokens["access_token"], PASSWORD, NEW_PASSWORD)
    client.simulate_post("/users/forgot-password", json={"email": "ada@example.com"})
    mail.run()
    secrets = [PASSWORD, NEW_PASSWORD, tokens["refresh_token"], tokens["access_token"]]
    user = db.users.find_one()
    assert user is not None
    secrets.append(user["password_hash"])
    for name in ("jobs", "jobs_backlog", "jobs_done", "security_events"):
        dump = str(list(db[name].find()))
        assert not [s for s in secrets if s in dump], name
    assert not [s for s in secrets if s in caplog.text]

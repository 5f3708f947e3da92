"""Token families through the test client: rotation, reuse detection, logout, lifetimes."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from apihelpers import PASSWORD, AppFactory, Clock, bearer, signup
from falcon import testing
from pymongo.database import Database
from pymongo.errors import AutoReconnect

from api.auth.stores.users import UserStore
from api.settings import ApiSettings


def refresh(client: testing.TestClient, token: str) -> testing.Result:
    return client.simulate_post("/users/refresh", headers=bearer(token))


def login(client: testing.TestClient) -> dict:
    result = client.simulate_post(
        "/users/login", json={"email": "ada@example.com", "password": PASSWORD}
    )
    assert result.status_code == 200
    return result.json


def profile_status(client: testing.TestClient, access_token: str) -> int:
    return client.simulate_get("/users/profile", headers=bearer(access_token)).status_code


def past_grace(clock: Clock) -> None:
    """Move past the time a just-rotated refresh token is still answered (API_REFRESH_GRACE_S)."""
    clock.advance(ApiSettings.refresh_grace_s + 1)


def test_refresh_rotates_and_the_used_token_is_dead(
    client: testing.TestClient, clock: Clock
) -> None:
    """A refresh returns a new pair; presenting the old refresh token again after the grace
    period is refused."""
    first = signup(client)
    second = refresh(client, first["refresh_token"])
    assert second.status_code == 200
    assert second.json["refresh_token"] != first["refresh_token"]
    assert second.headers["Cache-Control"] == "no-store"
    assert profile_status(client, second.json["access_token"]) == 200
    past_grace(clock)
    assert refresh(client, first["refresh_token"]).status_code == 401


def test_refresh_accepts_the_token_in_the_body(client: testing.TestClient) -> None:
    """{refresh_token} in a JSON body works like the Authorization header."""
    first = signup(client)
    result = client.simulate_post("/users/refresh", json={"refresh_token": first["refresh_token"]})
    assert result.status_code == 200


def test_refresh_tokens_are_stored_only_as_sha256_digests(
    client: testing.TestClient, db: Database
) -> None:
    """The session document holds a 32-byte digest, never the token itself."""
    tokens = signup(client)
    session = db["sessions"].find_one()
    assert len(session["refresh_digest"]) == 32
    assert tokens["refresh_token"] not in str(session)


def test_reusing_a_rotated_token_revokes_the_whole_family_only(
    client: testing.TestClient, db: Database, clock: Clock
) -> None:
    """Replaying a rotated refresh token after the grace period is 401 and kills the family's
    newest tokens too, while the user's other session keeps working."""
    family = signup(client)
    other = login(client)
    newest = refresh(client, family["refresh_token"]).json
    past_grace(clock)
    replay = refresh(client, family["refresh_token"])
    assert replay.status_code == 401
    assert replay.json["error"]["code"] == "refresh_token_reused"
    assert refresh(client, newest["refresh_token"]).status_code == 401
    assert profile_status(client, newest["access_token"]) == 401
    assert profile_status(client, other["access_token"]) == 200
    assert refresh(client, other["refresh_token"]).status_code == 200
    assert db["sessions"].count_documents({"revoked_reason": "reuse"}) == 1


def test_logout_ends_only_that_session(client: testing.TestClient) -> None:
    """Logout stops the session's refresh and access tokens; another session still works."""
    mine = signup(client)
    other = login(client)
    assert (
        client.simulate_post("/users/logout", headers=bearer(mine["access_token"])).status_code
        == 204
    )
    assert refresh(client, mine["refresh_token"]).status_code == 401
    assert profile_status(client, mine["access_token"]) == 401
    assert profile_status(client, other["access_token"]) == 200


def test_logout_all_ends_every_session_and_earlier_access_tokens(
    client: testing.TestClient,
) -> None:
    """After logout-all, every earlier access and refresh token is refused; a new login works."""
    first = signup(client)
    second = login(client)
    assert (
        client.simulate_post(
            "/users/logout-all", headers=bearer(second["access_token"])
        ).status_code
        == 204
    )
    for tokens in (first, second):
        assert profile_status(client, tokens["access_token"]) == 401
        assert refresh(client, tokens["refresh_token"]).status_code == 401
    fresh = login(client)
    assert profile_status(client, fresh["access_token"]) == 200


def test_an_idle_family_expires(client: testing.TestClient, clock: Clock) -> None:
    """A family not refreshed for the idle timeout (14 days) cannot be refreshed."""
    tokens = signup(client)
    clock.advance(14 * 86400 + 1)
    result = refresh(client, tokens["refresh_token"])
    assert result.status_code == 401
    assert result.json["error"]["code"] == "session_ended"


def test_a_family_ends_at_its_absolute_lifetime_even_when_used(
    client: testing.TestClient, clock: Clock
) -> None:
    """Refreshing every 10 days keeps a family alive only until its 30-day lifetime."""
    token = signup(client)["refresh_token"]
    for _ in range(2):
        clock.advance(10 * 86400)
        result = refresh(client, token)
        assert result.status_code == 200
        token = result.json["refresh_token"]
    clock.advance(10 * 86400 + 31)
    assert refresh(client, token).status_code == 401


def test_an_access_token_is_refused_at_the_refresh_endpoint(client: testing.TestClient) -> None:
    """The refresh endpoint only takes refresh tokens (typ claim)."""
    tokens = signup(client)
    result = refresh(client, tokens["access_token"])
    assert result.status_code == 401
    assert result.json["error"]["code"] == "wrong_token_type"


def test_access_tokens_expire(client: testing.TestClient, clock: Clock) -> None:
    """An access token is refused after its 15 minutes (plus leeway)."""
    tokens = signup(client)
    clock.advance(900 + 31)
    assert profile_status(client, tokens["access_token"]) == 401


def test_refresh_without_a_token_is_401(client: testing.TestClient) -> None:
    """No header and no body: 401 JSON."""
    result = client.simulate_post("/users/refresh")
    assert result.status_code == 401
    assert result.json["error"]["code"] == "missing_token"


def test_a_failure_between_the_two_revocation_writes_leaves_neither_applied(
    client: testing.TestClient, db: Database, monkeypatch: pytest.MonkeyPatch, clock: Clock
) -> None:
    """Replay detection ends the family and its access tokens in one transaction: a database
    failure after the first write answers 503 and leaves both as they were (never the family
    ended with its access tokens still valid); the next replay ends both."""
    family = signup(client)
    newest = refresh(client, family["refresh_token"]).json
    past_grace(clock)
    real = UserStore.revoke_session_access

    def fail_after_the_session_write(*args: Any, **kwargs: Any) -> None:
        raise AutoReconnect("connection lost between the two writes")

    monkeypatch.setattr(UserStore, "revoke_session_access", fail_after_the_session_write)
    assert refresh(client, family["refresh_token"]).status_code == 503
    assert db["sessions"].count_documents({"revoked_at": {"$ne": None}}) == 0
    assert profile_status(client, newest["access_token"]) == 200
    monkeypatch.setattr(UserStore, "revoke_session_access", real)
    assert refresh(client, family["refresh_token"]).json["error"]["code"] == "refresh_token_reused"
    assert profile_status(client, newest["access_token"]) == 401
    assert refresh(client, newest["refresh_token"]).status_code == 401


def test_a_logged_out_sessions_access_token_stays_refused_after_many_more_logouts(
    client: testing.TestClient, db: Database, clock: Clock
) -> None:
    """Revocation holds for the whole access-token lifetime, however many sessions the user
    ends in between (it used to keep only the last 100); entries past that lifetime are dropped."""
    first = signup(client)
    assert (
        client.simulate_post("/users/logout", headers=bearer(first["access_token"])).status_code
        == 204
    )
    for _ in range(105):
        tokens = login(client)
        client.simulate_post("/users/logout", headers=bearer(tokens["access_token"]))
    assert profile_status(client, first["access_token"]) == 401
    clock.advance(901 + 30)  # every token above has expired
    later = login(client)
    client.simulate_post("/users/logout", headers=bearer(later["access_token"]))
    assert len(db["users"].find_one()["revoked_sessions"]) == 1


def test_refresh_with_a_bearer_token_and_an_empty_json_body_works(
    client: testing.TestClient,
) -> None:
    """What axios sends (the seed's documented call): the token as Bearer and a body of {}."""
    first = signup(client)
    result = client.simulate_post("/users/refresh", json={}, headers=bearer(first["refresh_token"]))
    assert result.status_code == 200, result.text
    logout = client.simulate_post(
        "/users/logout", json={}, headers=bearer(result.json["access_token"])
    )
    assert logout.status_code == 204
    again = client.simulate_post(
        "/users/refresh", json={}, headers=bearer(result.json["refresh_token"])
    )
    assert again.status_code == 401


def test_a_token_presented_twice_at_once_gets_the_same_new_pair_not_a_theft_alarm(
    client: testing.TestClient, db: Database, clock: Clock
) -> None:
    """Two tabs refreshing with one expired cookie: the second, within the grace period, gets
    the same new refresh token as the first (one rotation, no reuse alarm, no mail), and that
    token goes on working; after the grace, the old token is a replay again."""
    first = signup(client)
    winner = refresh(client, first["refresh_token"])
    clock.advance(ApiSettings.refresh_grace_s - 1)
    late = refresh(client, first["refresh_token"])
    assert (winner.status_code, late.status_code) == (200, 200)
    assert late.json["refresh_token"] == winner.json["refresh_token"]
    assert profile_status(client, late.json["access_token"]) == 200
    assert db["sessions"].find_one()["rotations"] == 1
    assert db["security_events"].count_documents({"type": "refresh_reuse_detected"}) == 0
    assert refresh(client, late.json["refresh_token"]).status_code == 200
    past_grace(clock)
    assert refresh(client, first["refresh_token"]).json["error"]["code"] == "refresh_token_reused"


def test_a_token_two_rotations_behind_is_a_replay_even_within_the_grace(
    client: testing.TestClient, clock: Clock
) -> None:
    """The grace covers only the token rotated last: once its successor has rotated too, the
    first token is two behind and ends the family at once."""
    first = signup(client)
    second = refresh(client, first["refresh_token"]).json
    assert refresh(client, second["refresh_token"]).status_code == 200
    replay = refresh(client, first["refresh_token"])
    assert replay.json["error"]["code"] == "refresh_token_reused"


def test_sessions_beyond_the_cap_end_oldest_first(
    make_client: AppFactory, settings: ApiSettings, clock: Clock, db: Database
) -> None:
    """With API_MAX_SESSIONS_PER_USER=2, a third session ends the oldest (its refresh and
    access tokens stop working); the two newest go on."""
    client = make_client(dataclasses.replace(settings, max_sessions_per_user=2))
    first = signup(client)
    clock.advance(1)
    second = login(client)
    clock.advance(1)
    third = login(client)
    assert profile_status(client, first["access_token"]) == 401
    assert refresh(client, first["refresh_token"]).status_code == 401
    for live in (second, third):
        assert profile_status(client, live["access_token"]) == 200
    assert db["sessions"].count_documents({"revoked_reason": "evicted"}) == 1

"""Every bad input is a 4xx JSON error with a request id; failures never leak details."""

from __future__ import annotations

from typing import Any

import jwt
import pytest
from apihelpers import PASSWORD, AppFactory, bearer, signup
from falcon import testing
from pymongo import MongoClient
from pymongo.database import Database

from api.app import create_app
from api.resources.accounts import client_ip
from api.settings import ApiSettings
from queue_worker import JobStore, QueueSettings

SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def assert_error(result: testing.Result, status: int) -> dict[str, Any]:
    assert result.status_code == status, result.text
    assert result.headers["Content-Type"].startswith("application/json")
    error: dict[str, Any] = result.json["error"]
    assert set(error) == {"code", "message", "request_id"}
    assert error["request_id"] == result.headers["X-Request-ID"]
    assert "Traceback" not in result.text
    return error


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        (b"{not json", 400, "malformed_json"),
        (b"", 400, "missing_body"),
        (
            b'{"name": 1, "email": "a@b.co", "password": "xkcd-staple-horse"}',
            422,
            "validation_error",
        ),
        (
            b'{"name": "A", "email": "a@b.co", "password": "xkcd-staple-horse", "admin": true}',
            422,
            "validation_error",
        ),
        (b'{"name": "A", "email": "a@b.co"}', 422, "validation_error"),
        (
            b'{"name": "A", "email": "a@b.co", "password": "xkcd-staple-horse", "age": 1'
            + b"0" * 22
            + b"}",
            422,
            "validation_error",
        ),
        (
            b'{"name": "A", "email": "a@b.co", "password": "xkcd-staple-horse", "age": true}',
            422,
            "validation_error",
        ),
        (b'["a"]', 422, "validation_error"),
        (b'"\\ud800"', 400, "malformed_json"),
    ],
)
def test_bad_bodies_are_4xx_json_errors(
    client: testing.TestClient, body: bytes, status: int, code: str
) -> None:
    """Malformed JSON is 400; wrong types, unknown or missing fields, out-of-range numbers 422."""
    result = client.simulate_post(
        "/users/signup", body=body, headers={"Content-Type": "application/json"}
    )
    assert assert_error(result, status)["code"] == code


def test_a_body_over_the_limit_is_413(client: testing.TestClient) -> None:
    """A Content-Length over API_MAX_BODY_BYTES (4 KiB here) is refused with 413."""
    body = b'{"name": "' + b"a" * 5000 + b'"}'
    result = client.simulate_post(
        "/users/signup", body=body, headers={"Content-Type": "application/json"}
    )
    assert_error(result, 413)


def test_a_body_that_is_not_json_is_415(client: testing.TestClient) -> None:
    """Form or text bodies are refused with 415."""
    for content_type in ["application/x-www-form-urlencoded", "text/plain", "application/jsonx"]:
        result = client.simulate_post(
            "/users/login", body=b"email=a", headers={"Content-Type": content_type}
        )
        assert_error(result, 415)


def test_json_with_a_charset_parameter_is_accepted(client: testing.TestClient) -> None:
    """application/json; charset=utf-8 is JSON."""
    result = client.simulate_post(
        "/users/login",
        body=b'{"email": "x@example.com", "password": "whatever-pass"}',
        headers={"Content-Type": "application/json; charset=utf-8"},
    )
    assert_error(result, 401)


def test_unknown_routes_and_methods_are_json_errors(client: testing.TestClient) -> None:
    """An unknown path is 404 JSON; a known path with another method is 405 JSON with Allow."""
    assert assert_error(client.simulate_get("/nope"), 404)["code"] == "not_found"
    result = client.simulate_delete("/users/signup")
    assert_error(result, 405)
    assert "POST" in result.headers["Allow"]


def test_security_headers_are_on_success_and_error_responses(client: testing.TestClient) -> None:
    """nosniff, DENY, no-referrer, no-store, CSP and HSTS are on every API response."""
    for result in (client.simulate_get("/healthz"), client.simulate_get("/nope")):
        for name, value in SECURITY_HEADERS.items():
            assert result.headers[name] == value
        assert "default-src 'none'" in result.headers["Content-Security-Policy"]
        assert "max-age=" in result.headers["Strict-Transport-Security"]


def test_a_sane_incoming_request_id_is_echoed_and_a_bad_one_replaced(
    client: testing.TestClient,
) -> None:
    """X-Request-ID is kept when it is a short token, replaced when it is not."""
    kept = client.simulate_get("/nope", headers={"X-Request-ID": "abc-123-def-456"})
    assert kept.headers["X-Request-ID"] == "abc-123-def-456"
    replaced = client.simulate_get("/nope", headers={"X-Request-ID": "<script>" * 20})
    assert replaced.headers["X-Request-ID"] != "<script>" * 20
    assert replaced.json["error"]["request_id"] == replaced.headers["X-Request-ID"]


class ExplodingJobStore(JobStore):
    """A real JobStore whose reads hit a bug: the app must answer a generic 500."""

    def get(self, job_id: str) -> Any:
        raise RuntimeError("secret internal detail")


def test_an_unexpected_error_is_a_generic_500_without_details(
    make_client: AppFactory, settings: ApiSettings, db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    """A bug is logged with its traceback server-side; the client sees only a request id."""
    store = ExplodingJobStore(db, QueueSettings.from_env({}))
    client = make_client(store=store)
    tokens = signup(client)
    result = client.simulate_get(
        "/jobs/6b059b67580172644f5dbbfa", headers=bearer(tokens["access_token"])
    )
    error = assert_error(result, 500)
    assert error["code"] == "internal_error"
    assert "secret internal detail" not in result.text
    assert "secret internal detail" in caplog.text


def test_an_unreachable_database_is_a_fast_503(settings: ApiSettings) -> None:
    """With the database down, /readyz and data routes answer 503 JSON quickly; /healthz 200."""
    dead: MongoClient[dict[str, Any]] = MongoClient(
        "mongodb://127.0.0.1:1/?directConnection=true", serverSelectionTimeoutMS=200, timeoutMS=300
    )
    db = dead["app"]
    client = testing.TestClient(create_app(settings, db, JobStore(db, QueueSettings.from_env({}))))
    assert client.simulate_get("/healthz").status_code == 200
    assert assert_error(client.simulate_get("/readyz"), 503)["code"] == "service_unavailable"
    result = client.simulate_post(
        "/users/login", json={"email": "a@example.com", "password": PASSWORD}
    )
    assert_error(result, 503)
    assert_error(client.simulate_get("/users/6b059b67580172644f5dbbfa"), 503)
    dead.close()


def test_a_validly_signed_token_with_a_jku_header_is_401_not_500(
    client: testing.TestClient, settings: ApiSettings
) -> None:
    """Key-reference headers are refused at the HTTP level too (401 JSON, no fetch)."""
    tokens = signup(client)
    claims = jwt.decode(tokens["access_token"], options={"verify_signature": False})
    forged = jwt.encode(
        claims,
        settings.jwt_keys["k2"],
        algorithm="HS256",
        headers={"kid": "k2", "jku": "http://127.0.0.1:1/jwks.json"},
    )
    assert_error(client.simulate_get("/users/profile", headers=bearer(forged)), 401)


def test_the_client_ip_comes_from_trusted_proxy_hops_only() -> None:
    """With one trusted proxy, the last X-Forwarded-For entry is the client; spoofed entries
    to its left are ignored; with none trusted, the header is ignored."""
    req = testing.create_req(
        headers={"X-Forwarded-For": "6.6.6.6, 203.0.113.9"}, remote_addr="10.0.0.1"
    )
    assert client_ip(req, 0) == "10.0.0.1"
    assert client_ip(req, 1) == "203.0.113.9"
    assert client_ip(req, 2) == "6.6.6.6"
    assert client_ip(req, 5) == "6.6.6.6"


def test_readyz_fails_until_every_index_exists_and_a_failed_one_does_not_skip_the_rest(
    db: Database[Any], make_client: AppFactory
) -> None:
    """A database error on one store's index (here: a conflicting index already holds the name
    the sessions store uses) leaves /readyz at 503 and is retried on each probe; once it is
    gone, the same app creates it and every later store's index (rate-limit, token and MFA
    challenge TTLs, the security log's order) and answers 200. Before: the error was logged,
    the rest skipped and /readyz said 200 regardless."""
    db.sessions.create_index([("created_at", 1)], name="user_id")
    client = make_client()
    for _ in range(2):
        assert assert_error(client.simulate_get("/readyz"), 503)["code"] == "service_unavailable"
    assert "expires_ttl" not in db.rate_limits.index_information()
    db.sessions.drop_index("user_id")
    assert client.simulate_get("/readyz").status_code == 200
    assert db.sessions.index_information()["user_id"]["key"] == [("user_id", 1)]
    for collection in ("rate_limits", "account_tokens", "mfa_challenges"):
        assert "expires_ttl" in db[collection].index_information(), collection
    assert "user_page" in db.security_events.index_information()

"""/openapi.json is generated from the code, /docs is self-hosted, /metrics has the catalogue."""

from __future__ import annotations

import re

import pytest
from apihelpers import AppFactory, bearer, signup
from falcon import testing
from pymongo.database import Database

from api.openapi import Operation, build_spec
from api.settings import ApiSettings
from queue_worker import JobStore

ROUTES = {
    ("/users/signup", "post"), ("/users/login", "post"), ("/users/refresh", "post"),
    ("/users/logout", "post"), ("/users/logout-all", "post"), ("/users/profile", "get"),
    ("/users/{user_id}", "get"), ("/jobs", "post"), ("/jobs/{job_id}", "get"),
    ("/healthz", "get"), ("/readyz", "get"), ("/metrics", "get"),
    ("/users/verify-email", "post"), ("/users/forgot-password", "post"),
    ("/users/reset-password", "post"), ("/users/me/verify-email", "post"),
    ("/users/me/password", "post"), ("/users/me/sessions", "get"),
    ("/users/me/sessions/{session_id}", "delete"), ("/users/me/reauthenticate", "post"),
    ("/users/me/security-events", "get"), ("/.well-known/jwks.json", "get"),
    ("/users/login/mfa", "post"), ("/users/me/mfa", "get"), ("/users/me/mfa/disable", "post"),
    ("/users/me/mfa/totp", "post"), ("/users/me/mfa/totp/confirm", "post"),
    ("/users/me/mfa/recovery-codes", "post"),
}  # fmt: skip


def test_openapi_documents_every_route_with_schemas(client: testing.TestClient) -> None:
    """Every API route and method is in the document, with request and response schemas."""
    spec = client.simulate_get("/openapi.json").json
    assert spec["openapi"].startswith("3.1")
    documented = {(path, method) for path, ops in spec["paths"].items() for method in ops}
    assert documented == ROUTES
    signup_op = spec["paths"]["/users/signup"]["post"]
    assert signup_op["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "SignupRequest"
    )
    schemas = spec["components"]["schemas"]
    assert schemas["SignupRequest"]["additionalProperties"] is False
    assert set(schemas["TokenResponse"]["properties"]) == {
        "access_token",
        "refresh_token",
        "token_type",
        "expires_in",
    }
    assert schemas["JobRequest"]["properties"]["task"]["enum"] == ["bench.noop", "bench.sleep"]
    assert spec["paths"]["/users/profile"]["get"]["security"] == [{"bearerAuth": []}]


def test_an_undocumented_responder_fails_the_build() -> None:
    """A resource whose responders and docs disagree stops the app from being built."""

    class Undocumented:
        docs = {"get": Operation("x", "t")}

        def on_get(self) -> None: ...

        def on_post(self) -> None: ...

    with pytest.raises(ValueError, match="documented"):
        build_spec([("/x", Undocumented())], title="t", version="1")


def test_docs_page_and_assets_are_served_by_the_app(client: testing.TestClient) -> None:
    """/docs loads Swagger UI from this app only: no external URL in the page or its starter."""
    page = client.simulate_get("/docs")
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    sources = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert sources and all(source.startswith("/docs/") for source in sources)
    for source in sources:
        asset = client.simulate_get(source)
        assert asset.status_code == 200, source
        assert len(asset.content) > 0
    assert "default-src 'self'" in page.headers["Content-Security-Policy"]
    assert "http" not in client.simulate_get("/docs/init.js").text
    assert client.simulate_get("/docs/../settings.py").status_code == 404
    assert client.simulate_get("/docs/index.j2").status_code == 404


def test_metrics_exposes_the_catalogue_names(client: testing.TestClient) -> None:
    """After a sign-up, a failed login and a profile read, /metrics shows the API's metrics."""
    tokens = signup(client)
    client.simulate_post(
        "/users/login", json={"email": "ada@example.com", "password": "wrong-pass"}
    )
    client.simulate_get("/users/profile", headers=bearer(tokens["access_token"]))
    text = client.simulate_get("/metrics").text
    for name in [
        'http_requests_total{method="GET",route="/users/profile",status_class="2xx"}',
        "http_request_duration_seconds_bucket",
        "http_requests_in_flight",
        "auth_bcrypt_queue_length",
        "auth_bcrypt_seconds_count",
        'auth_login_failures_total{reason="bad_credentials"} 1.0',
        "auth_refresh_reuse_detected_total",
        "auth_rate_limited_total",
        "db_operation_errors_total",
    ]:
        assert name in text, name
    assert "ada@example.com" not in text


def test_readiness_fails_when_the_database_refuses_writes(
    make_client: AppFactory, settings: ApiSettings, db: Database, job_store: JobStore
) -> None:
    """/readyz answers 503 when the database answers but refuses writes (as with a full disk):
    here a real validator makes every write of the probe fail."""
    db.create_collection("api_health", validator={"$jsonSchema": {"required": ["never"]}})
    api = make_client()
    result = api.simulate_get("/readyz")
    assert (result.status_code, result.json["error"]["code"]) == (503, "service_unavailable")
    db.drop_collection("api_health")
    fresh = make_client()
    assert fresh.simulate_get("/readyz").status_code == 200

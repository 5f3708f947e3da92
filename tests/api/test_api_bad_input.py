"""Edge-case input on every route is a 4xx JSON error (or accepted), never a 500."""

from __future__ import annotations

import base64
import dataclasses
import json
from collections.abc import Iterator
from typing import Any

import pytest
from apihelpers import PASSWORD, bearer, signup, submitted_jobs
from falcon import testing
from pymongo.database import Database

from api.app import create_app
from api.auth.passwords.hashing import HashPool
from api.metrics import ApiMetrics
from api.schemas import KEY_SCOPE_CHARS
from api.settings import ApiSettings
from queue_worker import JobStore
from queue_worker.enqueue import MAX_KEY_LENGTH

JSON = {"Content-Type": "application/json"}
BODY_ROUTES = ["/users/signup", "/users/login", "/users/refresh", "/jobs"]


def post(
    client: testing.TestClient, path: str, body: bytes, token: str | None = None
) -> testing.Result:
    headers = {**JSON, **(bearer(token) if token else {})}
    return client.simulate_post(path, body=body, headers=headers)


def assert_4xx(result: testing.Result, status: int | None = None) -> str:
    """Assert a JSON client error (the given status, if any); return its code."""
    assert 400 <= result.status_code < 500, result.text
    if status is not None:
        assert result.status_code == status, result.text
    assert result.headers["Content-Type"].startswith("application/json")
    code: str = result.json["error"]["code"]
    return code


def signup_body(**fields: Any) -> bytes:
    body = {"name": "Ada", "email": "ada@example.com", "password": PASSWORD, **fields}
    return json.dumps(body).encode()


def job_body(**fields: Any) -> bytes:
    return json.dumps({"task": "bench.noop", "payload": {}, **fields}).encode()


@pytest.fixture
def token(client: testing.TestClient) -> str:
    access: str = signup(client, email="owner@example.com")["access_token"]
    return access


@pytest.mark.parametrize("path", BODY_ROUTES)
@pytest.mark.parametrize("body", [b"null", b"1", b'"text"', b"true", b"[]", b"[{}]", b"1e400"])
def test_json_bodies_that_are_not_objects_are_422(
    client: testing.TestClient, token: str, path: str, body: bytes
) -> None:
    """null, numbers, strings, booleans and arrays as the whole body are 422 on every route."""
    assert_4xx(post(client, path, body, token), 422)


@pytest.mark.parametrize(
    "body",
    [
        b"\xef\xbb\xbf{}",  # a UTF-8 byte order mark
        b'{"email": "\xff\xfe", "password": "p"}',  # invalid UTF-8 inside a string
        b'{"email": "\\ud800x", "password": "p"}',  # a lone surrogate escape
        b"\x00",
        b'{"email": "a@example.com", "password": "p"}\x00',
        b'{"email": "a@example.com", "password": "p"}{"b": 2}',
    ],
)
def test_undecodable_bodies_are_400(client: testing.TestClient, body: bytes) -> None:
    """Byte order marks, invalid UTF-8, lone surrogates, NUL bytes and trailing data are 400."""
    assert assert_4xx(post(client, "/users/login", body), 400) == "malformed_json"


@pytest.mark.parametrize("path", BODY_ROUTES)
def test_deeply_nested_bodies_are_4xx_not_a_recursion_error(
    client: testing.TestClient, token: str, path: str
) -> None:
    """2,000 levels of nesting (within the body limit) are refused, not a RecursionError 500."""
    deep = b"[" * 2000 + b"]" * 2000
    bodies = [deep, b'{"payload": {"a": ' + deep + b"}}", b'{"name": ' + deep + b"}"]
    for body in bodies:
        assert_4xx(post(client, path, body, token), 422)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("age", 10**30),
        ("age", -(10**30)),
        ("age", 2**63),
        ("age", 1e308),
        ("age", 36.5),
        ("age", "36"),
        ("age", -1),
        ("name", "A" * 101),
        ("name", "   "),
        ("name", "Ada\x00"),
        ("name", "Ada\r\nBcc: victim@example.com"),
        ("email", "ada@example.com\x00"),
        ("email", "ad\x00a@example.com"),
        ("email", "a\u2028b@example.com"),
        ("email", "ada\uff20example.com"),
        ("email", "\u0130" * 240 + "@example.com"),
        ("email", "a" * 250 + "@example.com"),
        ("password", "short"),
        ("password", "x" * 129),
    ],
)
def test_out_of_range_and_odd_signup_fields_are_422(
    client: testing.TestClient, db: Database, field: str, value: Any
) -> None:
    """Huge or fractional ages, blank or control-character names, emails with NUL, line
    separators, fullwidth @ or too long once lower-cased: 422, and no account is created."""
    assert_4xx(post(client, "/users/signup", signup_body(**{field: value})), 422)
    assert db["users"].count_documents({}) == 0


@pytest.mark.parametrize(
    ("email", "stored"),
    [
        ("ada@ex\u00e4mple.com", "ada@xn--exmple-cua.com"),
        ("ada+tag@xn--exmple-cua.com", "ada+tag@xn--exmple-cua.com"),
        ("Ada@B\u00dcCHER.de", "ada@xn--bcher-kva.de"),
    ],
)
def test_internationalised_domains_sign_up_in_their_ascii_form(
    client: testing.TestClient, db: Database, email: str, stored: str
) -> None:
    """An IDN domain is stored IDNA-encoded (so mail to it needs no SMTPUTF8) and the account
    logs in with either spelling and any case."""
    result = post(client, "/users/signup", signup_body(email=email))
    assert result.status_code == 201, result.text
    assert db["users"].find_one()["email"] == stored
    for spelling in (email, email.upper(), stored):
        login = {"email": spelling, "password": PASSWORD}
        assert client.simulate_post("/users/login", json=login).status_code == 200


@pytest.mark.parametrize(
    "email", ["\u00e4d\u00e4@example.com", "\u0130ris@example.com", "ada@example.test"]
)
def test_addresses_that_cannot_be_mailed_are_refused_at_sign_up(
    client: testing.TestClient, db: Database, email: str
) -> None:
    """A non-ASCII local part (mail to it needs SMTPUTF8, which relays may not offer) or a
    special-use domain is a 422 saying why, never an account whose welcome mail dies."""
    result = post(client, "/users/signup", signup_body(email=email))
    assert assert_4xx(result, 422) == "invalid_email"
    assert "@" in result.json["error"]["message"] or "domain" in result.json["error"]["message"]
    assert db["users"].count_documents({}) == 0


@pytest.mark.parametrize(
    "variant",
    [
        "\uff41\uff44\uff41@example.com",  # full-width letters
        "ada@example.com.",  # a trailing dot on the domain
        "a\u200bda@example.com",  # a zero-width space
        "a\u00adda@example.com",  # a soft hyphen
        "ADA@EXAMPLE.COM",
    ],
)
def test_spellings_of_one_address_are_one_account(
    client: testing.TestClient, db: Database, variant: str
) -> None:
    """Full-width letters, a trailing dot, invisible characters and case all normalise to the
    same address: the second sign-up is a 409, and login works with any of them."""
    assert post(client, "/users/signup", signup_body(email="ada@example.com")).status_code == 201
    assert assert_4xx(post(client, "/users/signup", signup_body(email=variant)), 409)
    login = {"email": variant, "password": PASSWORD}
    assert client.simulate_post("/users/login", json=login).status_code == 200
    assert db["users"].count_documents({}) == 1


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("ad\u00e1@b\u00fccher.de", "ad\u00e1@xn--bcher-kva.de"),  # IDN and punycode
        ("ada@b\u00fccher.de", "ada@bu\u0308cher.de"),  # NFC and NFD
    ],
)
def test_idn_punycode_nfc_and_nfd_spellings_collide(
    client: testing.TestClient, first: str, second: str
) -> None:
    """The same domain in Unicode, punycode, NFC or NFD is one account (or one refusal)."""
    one = post(client, "/users/signup", signup_body(email=first))
    two = post(client, "/users/signup", signup_body(email=second))
    assert (one.status_code, two.status_code) in ((201, 409), (422, 422))


@pytest.mark.parametrize(
    "email", ["\x00", "a" * 254, "\u0130" * 254, "$ne", "ada@example.com\x00", "\U0001f600"]
)
def test_odd_login_emails_are_401(client: testing.TestClient, email: str) -> None:
    """Login with NUL bytes, operator-like or over-long (lower-cased) emails is a plain 401."""
    result = client.simulate_post("/users/login", json={"email": email, "password": PASSWORD})
    assert assert_4xx(result, 401) == "invalid_credentials"


def test_duplicate_keys_are_decoded_as_the_last_value_and_validated(
    client: testing.TestClient, token: str
) -> None:
    """With a key given twice the last value counts, and that value is the one validated:
    a duplicate cannot smuggle a task past the allowlist."""
    smuggled = b'{"task": "bench.noop", "task": "user.created", "payload": {}}'
    assert assert_4xx(post(client, "/jobs", smuggled, token), 422) == "task_not_allowed"
    allowed = b'{"task": "user.created", "task": "bench.noop", "payload": {}}'
    assert post(client, "/jobs", allowed, token).status_code == 202
    signup_twice = b'{"name": "A", "name": "B", "email": "b@example.com", "password": "%s"}'
    result = post(client, "/users/signup", signup_twice.replace(b"%s", PASSWORD.encode()))
    assert result.status_code == 201


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("priority", 10**30),
        ("priority", -(2**64)),
        ("priority", 1.5),
        ("priority", 1001),
        ("priority", True),
        ("delay_s", 10**30),
        ("delay_s", -1),
        ("delay_s", "NaN"),
        ("delay_s", 31 * 86400),
        ("payload", {"n": 2**64}),
        ("payload", {"n": -(2**63) - 1}),
        ("payload", {"\x00": 1}),
        ("payload", {"a\x00b": 1}),
        ("payload", {"$gt": 1}),
        ("payload", {"a": {"b.c": 1}}),
        ("payload", []),
        ("payload", None),
        ("task", "bench.noop\x00"),
        ("task", "x" * 201),
        ("idempotency_key", ""),
        ("idempotency_key", "k" * (MAX_KEY_LENGTH - KEY_SCOPE_CHARS + 1)),
        ("idempotency_key", 5),
    ],
)
def test_out_of_range_job_fields_are_422(
    client: testing.TestClient, db: Database, token: str, field: str, value: Any
) -> None:
    """Huge, fractional or boolean priorities, huge, infinite or negative delays, unstorable
    payload numbers and keys, and bad idempotency keys are 422; nothing is enqueued."""
    result = post(client, "/jobs", job_body(**{field: value}), token)
    assert_4xx(result, 422)
    assert submitted_jobs(db) == 0


@pytest.mark.parametrize("body", [b'{"delay_s": 1e400}', b'{"payload": {"f": -1e400}}'])
def test_numbers_beyond_a_double_are_422(
    client: testing.TestClient, token: str, body: bytes
) -> None:
    """1e400 overflows a double: the decoder refuses it (422), nothing reaches the queue."""
    body = body.replace(b"{", b'{"task": "bench.noop", ', 1)
    assert assert_4xx(post(client, "/jobs", body, token), 422) == "validation_error"


def nested(depth: int) -> dict[str, Any]:
    """Return a payload whose innermost dict is `depth` levels below the payload itself."""
    payload: dict[str, Any] = {"leaf": 1}
    for _ in range(depth):
        payload = {"a": payload}
    return payload


def test_payload_nesting_is_capped_well_below_mongodbs_100_levels(
    client: testing.TestClient, token: str
) -> None:
    """32 levels are stored; 33 and 150 (beyond MongoDB's 100) are 422, not a server error."""
    assert post(client, "/jobs", job_body(payload=nested(31)), token).status_code == 202
    for depth in (33, 150):
        code = assert_4xx(post(client, "/jobs", job_body(payload=nested(depth)), token), 422)
        assert code == "invalid_payload"


@pytest.mark.parametrize(
    "key",
    ["\x00", "$where", "a.b", '{"$ne": 1}', "\U0001f600" * 150, " ", "\u202eevil", "k:1:2"],
)
def test_idempotency_keys_with_odd_characters_work(
    client: testing.TestClient, token: str, key: str
) -> None:
    """NUL, '$', '.', JSON-looking, 150 emoji, blank, bidi and ':' keys are plain values: the
    first submission is 202 and a repeat returns the same job."""
    first = post(client, "/jobs", job_body(idempotency_key=key), token)
    assert first.status_code == 202, first.text
    again = post(client, "/jobs", job_body(idempotency_key=key), token)
    assert again.status_code == 202 and again.json["id"] == first.json["id"]


@pytest.mark.parametrize(
    "path",
    [
        "/users/" + "a" * 100_000,
        "/users/" + "6b059b67580172644f5dbbf%00",
        "/users/%ff%fe%fd",
        "/users/6b059b67580172644f5dbbfa%20",
        "/jobs/" + "f" * 100_000,
        "/jobs/6b059b67580172644f5dbbf%00",
        "/jobs/%ff" * 12,
        "/jobs/\u00e9" * 24,
    ],
)
def test_very_long_and_odd_ids_are_404(client: testing.TestClient, token: str, path: str) -> None:
    """Ids of 100,000 characters, with NUL, invalid percent-encoding or non-ASCII are 404."""
    assert assert_4xx(client.simulate_get(path, headers=bearer(token)), 404) == "not_found"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


@pytest.mark.parametrize(
    "token",
    [
        "\u00e9" * 50,
        "a.b.c",
        "..",
        b64url(b"[]") + ".e30.sig",
        b64url(b'{"alg": "HS256", "kid": ["k2"]}') + ".e30.sig",
        b64url(b'{"alg": "HS256", "kid": {"a": 1}}') + ".e30.sig",
        b64url(b'{"alg": ["HS256"], "kid": "k2"}') + ".e30.sig",
        b64url(b'{"alg": "HS256", "kid": "k2"}') + "." + b64url(b"\xff" * 10) + ".sig",
        "x" * 3000,
    ],
)
def test_garbage_tokens_are_401(client: testing.TestClient, token: str) -> None:
    """Non-ASCII, truncated, non-object headers, unhashable kid or alg, undecodable payloads
    and huge tokens are 401 on authenticated routes and on refresh (header and body)."""
    assert_4xx(client.simulate_get("/users/profile", headers=bearer(token)), 401)
    assert_4xx(client.simulate_post("/users/refresh", headers=bearer(token)), 401)
    body = json.dumps({"refresh_token": token}).encode()
    assert_4xx(post(client, "/users/refresh", body), 401)


@pytest.fixture
def big_client(
    settings: ApiSettings, db: Database[dict[str, Any]], job_store: JobStore, metrics: ApiMetrics
) -> Iterator[testing.TestClient]:
    """A client over an app with the largest body limit the settings allow (16 MiB)."""
    big = dataclasses.replace(settings, max_body_bytes=16 << 20)
    pool = HashPool(1, metrics)
    yield testing.TestClient(create_app(big, db, job_store, metrics=metrics, hash_pool=pool))
    pool.close()


def test_a_payload_larger_than_a_mongodb_document_is_413(
    big_client: testing.TestClient, db: Database
) -> None:
    """Under a 16 MiB body limit, a payload whose job document would pass MongoDB's 16 MiB
    document limit (a long string, or a short array that grows in BSON) is 413, not 500."""
    token = signup(big_client)["access_token"]
    for payload in [{"s": "x" * ((16 << 20) - 200)}, {"zeros": [0] * 2_000_000}]:
        body = job_body(payload=payload)
        assert len(body) <= 16 << 20
        assert_4xx(post(big_client, "/jobs", body, token), 413)
    assert submitted_jobs(db) == 0
    over = post(big_client, "/jobs", b" " * ((16 << 20) + 1), token)
    assert_4xx(over, 413)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"task": "bench.noop", "priority": -888.0}, 202),  # JSON Schema: an integer
        ({"task": "bench.noop", "priority": -1e2}, 202),
        ({"task": "bench.noop", "priority": -888.5}, 422),
        ({"task": "bench.noop", "priority": "-888"}, 422),  # a string is never a number
        ({"task": "bench.noop", "payload": {"x": 1.0}}, 202),
    ],
)
def test_integral_numbers_are_integers_as_json_schema_says(
    client: testing.TestClient, db: Database, token: str, body: dict[str, Any], expected: int
) -> None:
    """A number with no fractional part is accepted for an integer field, as JSON Schema's
    `integer` reads; fractions and strings are not; the payload is passed on unchanged."""
    result = post(client, "/jobs", json.dumps(body).encode(), token)
    assert result.status_code == expected, result.text
    if "payload" in body:
        stored = db["jobs_backlog"].find_one({"task": "bench.noop"})
        assert stored is not None and isinstance(stored["payload"]["x"], float)


def test_an_integral_age_is_an_age(client: testing.TestClient, db: Database) -> None:
    """ "age": 30.0 signs up with age 30."""
    body = json.loads(signup_body())
    raw = json.dumps({**body, "age": 30.0}).encode()
    assert post(client, "/users/signup", raw).status_code == 201
    assert db["users"].find_one()["age"] == 30

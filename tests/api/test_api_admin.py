"""The dashboard's gate and actions over HTTP, without a browser: off by default, sign-in only
with a role, the `__Host-` cookie's attributes, origin and CSRF checks on every change, role
checks, the state machine's refusals, the shared snapshot with its ETag, the audit log, and the
role CLI. The browser-level behaviour is in tests/pages/test_admin_dashboard.py."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from threading import Barrier
from typing import Any
from urllib.parse import urlencode

import pytest
from apihelpers import PASSWORD, Clock, bearer, enrol_totp, next_code, signup
from falcon import testing
from pymongo.database import Database
from pymongo.errors import NetworkTimeout

from api.admin import __main__ as roles_cli
from api.admin import snapshot as snapshot_module
from api.admin.gate import COOKIE
from api.admin.snapshot import REFRESH_S, Snapshot
from api.app import create_app
from api.auth.passwords.hashing import HashPool
from api.metrics import ApiMetrics
from api.settings import ApiSettings
from queue_worker import JobStore
from queue_worker.controls import Controls
from queue_worker.job import JobState

SAME = {"Sec-Fetch-Site": "same-origin"}
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


@pytest.fixture
def admin_client(
    settings: ApiSettings, db: Database[Any], job_store: JobStore, clock: Clock,
    metrics: ApiMetrics,
) -> Iterator[testing.TestClient]:  # fmt: skip
    pool = HashPool(2, metrics)
    on = dataclasses.replace(settings, admin_enabled=True)
    yield testing.TestClient(create_app(on, db, job_store, clock=clock, metrics=metrics,
                                        hash_pool=pool))  # fmt: skip
    pool.close()


class Browser:
    """Just enough of a browser: the dashboard cookie, the CSRF token from a page, forms."""

    def __init__(self, client: testing.TestClient, clock: Clock | None = None) -> None:
        self.client = client
        self.clock = clock
        self.cookie = ""

    def sign_in(
        self, email: str, password: str = PASSWORD, *, secret: str = "", **headers: str
    ) -> Any:
        """Both steps of the sign-in: the password, then (with `secret`) the next code."""
        body = urlencode({"email": email, "password": password, "next": "/admin"})
        result = self.client.simulate_post(
            "/admin/login", body=body, headers={**FORM, **SAME, **headers}
        )
        token = re.search(r'name="mfa_token" value="([^"]+)"', result.text)
        if token and secret:
            assert self.clock is not None
            step = {"mfa_token": token.group(1), "code": next_code(secret, self.clock),
                    "next": "/admin"}  # fmt: skip
            result = self.client.simulate_post(
                "/admin/login", body=urlencode(step), headers={**FORM, **SAME, **headers}
            )
        if COOKIE in result.cookies:
            self.cookie = result.cookies[COOKIE].value
        return result

    def get(self, path: str, **headers: str) -> Any:
        return self.client.simulate_get(path, cookies={COOKIE: self.cookie}, headers=headers)

    def csrf(self) -> str:
        found = re.search(r'name="csrf-token" content="([^"]+)"', self.get("/admin/queues").text)
        assert found, "no CSRF token on the page"
        return found.group(1)

    def post(self, path: str, fields: dict[str, str], headers: dict[str, str] = SAME) -> Any:
        return self.client.simulate_post(
            path, body=urlencode(fields), cookies={COOKIE: self.cookie},
            headers={**FORM, **headers},
        )  # fmt: skip


def with_role(
    client: testing.TestClient, db: Database[Any], email: str, role: str, clock: Clock
) -> Browser:
    """A signed-in dashboard user: an account with `role` and an authenticator."""
    secret = role_holder(client, db, email, role, clock)
    browser = Browser(client, clock)
    assert browser.sign_in(email, secret=secret).status_code == 303
    return browser


def role_holder(
    client: testing.TestClient, db: Database[Any], email: str, role: str, clock: Clock
) -> str:
    """Sign up `email` with a verified address, `role` and an authenticator; its secret."""
    access = signup(client, email)["access_token"]
    db.users.update_one({"email": email}, {"$set": {"role": role, "email_verified": True}})
    secret, _ = enrol_totp(client, access, clock)
    return secret


def test_the_dashboard_is_off_unless_enabled(client: testing.TestClient) -> None:
    """Without API_ADMIN_ENABLED there are no dashboard routes."""
    assert client.simulate_get("/admin").status_code == 404
    assert client.simulate_get("/admin/login").status_code == 404


def test_signing_in_sets_a_host_only_strict_http_only_cookie(
    admin_client: testing.TestClient, db: Database[Any], clock: Clock
) -> None:
    """The dashboard cookie is __Host-, Secure, HttpOnly, SameSite=Strict and a session cookie,
    set only after both steps (the password, then the code)."""
    secret = role_holder(admin_client, db, "ops@example.com", "viewer", clock)
    password_step = Browser(admin_client).sign_in("ops@example.com")
    assert password_step.status_code == 200 and COOKIE not in password_step.cookies
    assert 'name="mfa_token"' in password_step.text
    result = Browser(admin_client, clock).sign_in("ops@example.com", secret=secret)
    assert result.status_code == 303 and result.headers["location"] == "/admin"
    cookie = result.cookies[COOKIE]
    assert cookie.secure and cookie.http_only and cookie.same_site == "Strict"
    assert cookie.path == "/" and cookie.domain is None and cookie.max_age is None


def test_an_account_without_a_role_is_refused_and_its_new_session_ended(
    admin_client: testing.TestClient, db: Database[Any]
) -> None:
    """An account without a role cannot sign in, and the session its login opened is ended."""
    signup(admin_client, "user@example.com")
    live_before = db.sessions.count_documents({"revoked_at": None})
    result = Browser(admin_client).sign_in("user@example.com")
    assert result.status_code == 403 and COOKIE not in result.cookies
    assert "no dashboard role" in result.text
    assert db.sessions.count_documents({"revoked_at": None}) == live_before


def test_a_wrong_password_is_refused_like_the_api_refuses_it(
    clock: Clock, admin_client: testing.TestClient, db: Database[Any]
) -> None:
    """A wrong password is a 401 with no cookie, through the accounts' own login."""
    with_role(admin_client, db, "ops@example.com", "admin", clock)
    result = Browser(admin_client).sign_in("ops@example.com", "not the password")
    assert result.status_code == 401 and COOKIE not in result.cookies


def test_a_cross_site_sign_in_is_refused(
    clock: Clock, admin_client: testing.TestClient, db: Database[Any]
) -> None:
    """A sign-in form posted from another site is refused."""
    with_role(admin_client, db, "ops@example.com", "admin", clock)
    result = Browser(admin_client).sign_in("ops@example.com", **{"Sec-Fetch-Site": "cross-site"})
    assert result.status_code == 403 and COOKIE not in result.cookies


@pytest.mark.parametrize(
    ("headers", "with_token"),
    [
        ({"Sec-Fetch-Site": "cross-site"}, True),
        ({"Sec-Fetch-Site": "same-site"}, True),
        ({"Origin": "https://evil.example"}, True),
        ({}, True),  # neither header: refused
        (SAME, False),
    ],
)
def test_changes_need_our_origin_and_the_csrf_token(
    clock: Clock,
    admin_client: testing.TestClient, db: Database[Any], headers: dict[str, str],
    with_token: bool,
) -> None:  # fmt: skip
    """Without same-origin Sec-Fetch-Site (or our Origin) and the CSRF token, nothing changes."""
    browser = with_role(admin_client, db, "ops@example.com", "admin", clock)
    fields = {"csrf": browser.csrf()} if with_token else {}
    assert browser.post("/admin/queues/mail/pause", fields, headers).status_code == 403
    assert Controls(db).paused() == set()


def test_an_origin_header_of_our_own_is_enough_without_sec_fetch(
    clock: Clock, admin_client: testing.TestClient, db: Database[Any], settings: ApiSettings
) -> None:
    """An older browser without Sec-Fetch-* passes with our own Origin and the token."""
    browser = with_role(admin_client, db, "ops@example.com", "operator", clock)
    origin = {"Origin": settings.accounts.public_url}
    result = browser.post("/admin/queues/mail/pause", {"csrf": browser.csrf()}, origin)
    assert result.status_code == 303 and Controls(db).paused() == {"mail"}


def test_a_viewer_cannot_act_and_an_operator_cannot_bulk(
    clock: Clock, admin_client: testing.TestClient, db: Database[Any], job_store: JobStore
) -> None:
    """Each role is refused what the next role up may do."""
    viewer = with_role(admin_client, db, "viewer@example.com", "viewer", clock)
    job = job_store.enqueue("bench.noop", delay_s=3600)
    assert viewer.post(f"/admin/jobs/{job.id}/run-now", {"csrf": viewer.csrf()}).status_code == 403
    operator = with_role(admin_client, db, "operator@example.com", "operator", clock)
    fields = {"csrf": operator.csrf(), "action": "retry", "confirm": "1"}
    assert operator.post("/admin/bulk", fields).status_code == 403
    ran = operator.post(f"/admin/jobs/{job.id}/run-now", {"csrf": operator.csrf()})
    assert ran.status_code == 303


def test_retrying_a_running_job_is_refused_not_applied(
    clock: Clock, admin_client: testing.TestClient, db: Database[Any], job_store: JobStore
) -> None:
    """A retry of a running job is a 409; the job keeps its owner and nothing is audited."""
    operator = with_role(admin_client, db, "ops@example.com", "operator", clock)
    job = job_store.enqueue("bench.noop", queue="ops")
    job_store.promote(["ops"])
    held = job_store.claim("worker-1", queues=["ops"])
    assert held is not None and held.job.id == job.id
    result = operator.post(f"/admin/jobs/{job.id}/retry", {"csrf": operator.csrf()})
    assert result.status_code == 409
    after = job_store.get(job.id)
    assert after is not None and after.state is JobState.RUNNING and after.lease_owner == "worker-1"
    assert db.admin_audit.count_documents({"action": {"$regex": "^job"}}) == 0


def test_bulk_retry_previews_then_acts_and_is_audited(
    clock: Clock, admin_client: testing.TestClient, db: Database[Any], job_store: JobStore
) -> None:
    """A bulk retry shows its count first, acts on confirmation, and is audited with its filter."""
    admin = with_role(admin_client, db, "admin@example.com", "admin", clock)
    for _ in range(3):
        job_store.enqueue("bench.noop", queue="mail", max_attempts=1)
    job_store.promote(["mail"])
    while held := job_store.claim("worker-1", queues=["mail"]):
        job_store.fail(held, "boom", retryable=False)
    fields = {"csrf": admin.csrf(), "action": "retry", "scope": "filter", "queue": "mail"}
    preview = admin.post("/admin/bulk", fields)
    assert preview.status_code == 200 and "3" in preview.text
    assert job_store.jobs.count_documents({"state": "dead"}) == 3  # nothing done yet
    done = admin.post("/admin/bulk", {**fields, "confirm": "1"})
    assert done.status_code == 303 and "retry%3A3" in done.headers["location"]
    assert job_store.jobs.count_documents({"state": "dead"}) == 0
    (entry,) = db.admin_audit.find({"action": "bulk.retry"})
    assert entry["email"] == "admin@example.com" and entry["action"] == "bulk.retry"
    assert entry["count"] == 3 and entry["filter"] == {"state": "dead", "queue": "mail"}


def test_bad_input_to_actions_is_a_page_error_not_a_500(
    clock: Clock, admin_client: testing.TestClient, db: Database[Any]
) -> None:
    """Bad ids, verbs, roles and filters answer 4xx pages, never a 500."""
    admin = with_role(admin_client, db, "admin@example.com", "admin", clock)
    token = admin.csrf()
    assert admin.post("/admin/jobs/not-an-id/retry", {"csrf": token}).status_code == 404
    assert admin.post("/admin/jobs/abc/explode", {"csrf": token}).status_code == 404
    assert admin.post("/admin/users/role", {"csrf": token, "email": "admin@example.com",
                                            "role": "emperor"}).status_code == 403  # fmt: skip
    assert admin.post("/admin/bulk", {"csrf": token, "action": "drop"}).status_code == 403
    assert admin.get("/admin/jobs?state=nonsense&since_h=x").status_code in (200, 400)


def test_bearer_tokens_do_not_open_the_dashboard_and_the_cookie_does_not_open_the_api(
    clock: Clock, admin_client: testing.TestClient, db: Database[Any]
) -> None:
    """The dashboard takes only its cookie and the JSON API only Bearer tokens."""
    admin = with_role(admin_client, db, "admin@example.com", "admin", clock)
    tokens = signup(admin_client, "someone@example.com")
    db.users.update_one({"email": "someone@example.com"}, {"$set": {"role": "admin"}})
    result = admin_client.simulate_get("/admin/queues", headers=bearer(tokens["access_token"]))
    assert result.status_code == 303 and result.headers["location"].startswith("/admin/login")
    profile = admin_client.simulate_get("/users/profile", cookies={COOKIE: admin.cookie})
    assert profile.status_code == 401


def test_signing_out_ends_the_session_behind_the_cookie(
    clock: Clock, admin_client: testing.TestClient, db: Database[Any]
) -> None:
    """Signing out ends the session: the same cookie no longer opens a page."""
    admin = with_role(admin_client, db, "admin@example.com", "admin", clock)
    assert admin.post("/admin/logout", {"csrf": admin.csrf()}).status_code == 303
    assert admin.get("/admin/queues").status_code == 303  # to the sign-in page


def test_the_overview_json_answers_304_to_an_unchanged_snapshot(
    clock: Clock, admin_client: testing.TestClient, db: Database[Any]
) -> None:
    """A poll with the current ETag costs a 304."""
    admin = with_role(admin_client, db, "admin@example.com", "admin", clock)
    first = admin.get("/admin/api/overview")
    assert first.status_code == 200 and first.json["totals"]["pending"] == 2  # the mail jobs
    again = admin.get("/admin/api/overview", **{"If-None-Match": first.headers["etag"]})
    assert again.status_code == 304


def test_every_tab_and_every_worker_share_one_snapshot_per_refresh_interval(
    job_store: JobStore, clock: Clock
) -> None:
    """Two workers (two Snapshots on one database), ten polls each: one computation per
    interval between them; an action's invalidation makes the next read compute afresh."""
    workers = [Snapshot(job_store, clock), Snapshot(job_store, clock)]
    for _ in range(10):
        for worker in workers:
            worker.get()
    assert sum(w.computed for w in workers) == 1
    assert workers[0].etag == workers[1].etag
    clock.advance(REFRESH_S)
    for worker in workers:
        worker.get()
    assert sum(w.computed for w in workers) == 2
    workers[1].invalidate()
    workers[0].get()
    assert sum(w.computed for w in workers) == 3


def test_the_role_cli_grants_revokes_and_refuses_unknown_accounts(
    client: testing.TestClient, db: Database[Any], mongo_uri: str,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    """The role CLI grants (to a verified address only), lists and revokes, refuses unknown
    accounts and roles, and writes each change to the audit log."""
    signup(client, "ops@example.com")
    env = {"MONGODB_URI": mongo_uri, "MONGODB_DATABASE": db.name}
    assert roles_cli.main(["grant", "OPS@example.com", "operator"], env) == 1
    assert "verified" in capsys.readouterr().err
    assert "role" not in db.users.find_one({"email": "ops@example.com"})
    db.users.update_one({"email": "ops@example.com"}, {"$set": {"email_verified": True}})
    assert roles_cli.main(["grant", "OPS@example.com", "operator"], env) == 0
    assert db.users.find_one({"email": "ops@example.com"})["role"] == "operator"
    assert roles_cli.main(["list"], env) == 0
    assert "ops@example.com\toperator" in capsys.readouterr().out
    assert roles_cli.main(["grant", "nobody@example.com", "admin"], env) == 1
    with pytest.raises(SystemExit) as bad:
        roles_cli.main(["grant", "ops@example.com", "emperor"], env)
    assert bad.value.code == 2
    assert roles_cli.main(["revoke", "ops@example.com"], env) == 0
    assert "role" not in db.users.find_one({"email": "ops@example.com"})
    changes = [(e["action"], e["target"]) for e in db.admin_audit.find().sort("_id", 1)]
    assert changes == [("user.role", "ops@example.com → operator"),
                       ("user.role", "ops@example.com → none")]  # fmt: skip
    assert all(e["email"].startswith("cli:") for e in db.admin_audit.find())


def test_a_database_timeout_is_a_503_page_not_a_500(
    clock: Clock,
    admin_client: testing.TestClient,
    db: Database[Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A poll while the database does not answer gets 503 with Retry-After, never a 500."""
    admin = with_role(admin_client, db, "admin@example.com", "admin", clock)

    def stalled(*args: Any, **kwargs: Any) -> Any:
        raise NetworkTimeout("127.0.0.1:27017: timed out")

    monkeypatch.setattr(snapshot_module.admin, "stats", stalled)
    result = admin.get("/admin/api/overview")
    assert result.status_code == 503 and result.headers["retry-after"] == "5"
    assert "did not answer in time" in result.text


def test_two_tabs_refreshing_one_expired_cookie_both_stay_signed_in(
    clock: Clock, admin_client: testing.TestClient, db: Database[Any]
) -> None:
    """Two requests with one expired access token (two tabs polling, or a poll and a click):
    both are served, the session stays, and nobody is mailed a theft warning."""
    admin = with_role(admin_client, db, "admin@example.com", "admin", clock)
    clock.advance(ApiSettings.access_ttl_s + 60)
    barrier = Barrier(2)

    def poll(_: int) -> int:
        barrier.wait()
        return int(admin.get("/admin/api/overview").status_code)

    with ThreadPoolExecutor(2) as pool:
        assert sorted(pool.map(poll, range(2))) == [200, 200]
    assert db.sessions.count_documents({"revoked_reason": "reuse"}) == 0
    assert db.security_events.count_documents({"type": "refresh_reuse_detected"}) == 0


def test_signing_out_deletes_the_host_cookie_with_its_own_attributes(
    clock: Clock, admin_client: testing.TestClient, db: Database[Any]
) -> None:
    """The deleting Set-Cookie repeats __Host-'s Secure and Path=/ (browsers ignore one
    without them), and sign-in and sign-out are in the audit log."""
    admin = with_role(admin_client, db, "admin@example.com", "admin", clock)
    out = admin.post("/admin/logout", {"csrf": admin.csrf()})
    header = next(v for k, v in out.headers.items() if k.lower() == "set-cookie")
    assert header.startswith(f'{COOKIE}="";') and "Secure" in header and "Path=/" in header
    assert "expires=thu, 01 jan 1970" in header.lower()
    actions = [e["action"] for e in db.admin_audit.find().sort("_id", 1)]
    assert actions[0] == "signin" and actions[-1] == "signout"


def test_role_holders_without_a_second_factor_cannot_sign_in(
    admin_client: testing.TestClient, db: Database[Any]
) -> None:
    """A role without a second factor is refused at the password step (and audited); the
    session that login opened is ended."""
    signup(admin_client, "ops@example.com")
    db.users.update_one({"email": "ops@example.com"}, {"$set": {"role": "admin"}})
    result = Browser(admin_client).sign_in("ops@example.com")
    assert result.status_code == 403 and "second factor" in result.text
    assert COOKIE not in result.cookies
    assert db.sessions.count_documents({"revoked_at": None}) == 1  # only the sign-up's
    assert db.admin_audit.find_one({"action": "signin.refused"})["target"] == "no second factor"


def test_sensitive_actions_need_a_recent_sign_in_and_roles_a_verified_address(
    clock: Clock, admin_client: testing.TestClient, db: Database[Any]
) -> None:
    """A role change needs a sign-in within API_ADMIN_RECENT_SIGNIN_S and a verified address;
    ending a user's sessions ends every one of them, mailed, logged and audited."""
    admin = with_role(admin_client, db, "admin@example.com", "admin", clock)
    target = signup(admin_client, "bob@example.com")
    change = {"csrf": admin.csrf(), "email": "bob@example.com", "role": "viewer"}
    unverified = admin.post("/admin/users/role", change)
    assert unverified.status_code == 403 and "verified" in unverified.text
    db.users.update_one({"email": "bob@example.com"}, {"$set": {"email_verified": True}})
    assert admin.post("/admin/users/role", change).status_code == 303
    clock.advance(ApiSettings.admin_recent_signin_s + 1)
    admin.get("/admin/queues")  # refreshes the access token: the sign-in stays as old
    stale = admin.post("/admin/users/role", {**change, "csrf": admin.csrf(), "role": "admin"})
    assert stale.status_code == 403 and "recent sign-in" in stale.text
    assert db.users.find_one({"email": "bob@example.com"})["role"] == "viewer"
    fresh = with_role(admin_client, db, "root@example.com", "admin", clock)
    ended = fresh.post("/admin/users/sessions", {"csrf": fresh.csrf(), "email": "bob@example.com"})
    assert ended.status_code == 303
    assert (
        admin_client.simulate_get(
            "/users/profile", headers=bearer(target["access_token"])
        ).status_code
        == 401
    )
    assert db.security_events.count_documents({"type": "sessions_ended_by_admin"}) == 1
    assert db.admin_audit.find_one({"action": "user.sessions_ended"})["target"] == "bob@example.com"

"""The dashboard in real headless Chromium, against a real gunicorn API and a real supervisor:
each role signs in, sees the overview move, searches, opens and retries jobs, bulk-retries a
filter, pauses a queue (and consumers stop claiming it), and is refused what its role does not
allow; cross-site posts, posts without the CSRF token and injected scripts are refused."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from apiserver import ROOT, ApiServer, start_api
from authenticator import Authenticator
from browser import watch
from playwright.sync_api import Browser, BrowserContext, Page
from pymongo import MongoClient
from waiting import wait_until

from queue_worker import JobStore, QueueSettings
from queue_worker.builtin import load_tasks

PASSWORD = "orbit lantern meadow 42"
ROLES = ("viewer", "operator", "admin")


@pytest.fixture(scope="module")
def system(
    tmp_path_factory: pytest.TempPathFactory, mongo_uri: str, mongo_client: MongoClient[Any]
) -> Iterator[dict[str, Any]]:
    """API (dashboard on), a supervisor, and one account per role, on a database of their own
    on the session's server."""
    tmp = tmp_path_factory.mktemp("admin")
    db_name = f"admin_ui_{uuid.uuid4().hex[:8]}"
    env = {
        "MONGODB_URI": mongo_uri, "MONGODB_DATABASE": db_name,
        "QUEUE_ENABLE_BENCH_TASKS": "1", "QUEUE_POLL_MAX_S": "0.2", "QUEUE_BACKOFF_BASE_S": "0.1",
        "QUEUE_BACKOFF_CAP_S": "0.2", "QUEUE_MAX_ATTEMPTS": "1",
    }  # fmt: skip
    # A browser signs in and out faster than a person: write each login's bookkeeping at once
    # (the ledger's 0.5 s batching would leave the sign-ins of the moment counted as attempts).
    api = start_api(env, workers=1, API_ADMIN_ENABLED="1", API_LOGIN_LEDGER_FLUSH_MS="0")
    log = open(tmp / "supervisor.log", "wb")  # noqa: SIM115 - closed below
    supervisor = subprocess.Popen(
        [sys.executable, "-m", "supervisor", "--workers", "1", "--concurrency", "2",
         "--queues", "default,other"],
        cwd=ROOT, env={**api.env, "PROMETHEUS_MULTIPROC_DIR": ""},
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        settings = QueueSettings.from_env(api.env)
        from queue_worker.connection import connect, database

        client = connect(settings, app_name="admin-test")
        store = JobStore(database(client, settings), settings, registry=load_tasks(settings))
        yield {"api": api, "store": store, "db": store.db, "base": f"http://127.0.0.1:{api.port}"}
        client.close()
    finally:
        supervisor.terminate()
        supervisor.wait(20)
        log.close()
        api.stop()
        mongo_client.drop_database(db_name)


@dataclass
class Account:
    email: str
    role: str | None
    authenticator: Authenticator | None


def account(system: dict[str, Any], role: str | None, *, second_factor: bool = True) -> Account:
    """A fresh account as an operator would have it: signed up, address verified, authenticator
    added through the API, role granted with the CLI. (Fresh per sign-in: codes come from the
    wall clock and each is good once.) The address is marked verified in the database, standing
    in for the mailed link that tests/pages/test_account_pages.py follows."""
    api: ApiServer = system["api"]
    email = f"{role or 'nobody'}-{uuid.uuid4().hex[:8]}@example.com"
    body = {"name": "Op", "email": email, "password": PASSWORD}
    signup = api.request("POST", "/users/signup", body)
    assert signup.status == 201, signup.json
    system["db"].users.update_one({"email": email}, {"$set": {"email_verified": True}})
    authenticator = None
    if second_factor:
        auth = {"Authorization": f"Bearer {signup.json['access_token']}"}
        started = api.request("POST", "/users/me/mfa/totp", {}, headers=auth)
        assert started.status == 201, started.json
        authenticator = Authenticator(started.json["secret"])
        confirmed = api.request(
            "POST", "/users/me/mfa/totp/confirm", {"code": authenticator.code()}, headers=auth
        )
        assert confirmed.status == 200, confirmed.json
    if role is not None:
        subprocess.run(
            [sys.executable, "-m", "api.admin", "grant", email, role],
            cwd=ROOT, env=api.env, check=True, capture_output=True,
        )  # fmt: skip
    return Account(email, role, authenticator)


def password_step(page: Page, base: str, who: Account) -> None:
    page.goto(f"{base}/admin")
    page.fill("#email", who.email)
    page.fill("#password", PASSWORD)
    page.click("#sign-in")


def sign_out(page: Page) -> None:
    """Sign out, and wait for the sign-in page it leads to (a navigation started before the
    sign-out's own redirect arrives would be overtaken by it)."""
    page.click("text=Sign out")
    page.wait_for_selector("#sign-in")


def sign_in(page: Page, system: dict[str, Any], role: str) -> Account:
    """Sign a fresh account with `role` in: password, then the authenticator's code."""
    who = account(system, role)
    assert who.authenticator is not None
    password_step(page, system["base"], who)
    page.fill("#code", who.authenticator.code())
    page.click("#verify")
    page.wait_for_selector("#role")
    assert page.inner_text("#role") == role
    return who


def test_each_role_signs_in_and_a_user_without_one_is_refused(
    system: dict[str, Any], context: BrowserContext
) -> None:
    """Each role signs in (password, then code) and out with the Strict cookie; an account
    without a role is refused; a role holder without a second factor is sent to set one up."""
    page = context.new_page()
    problems = watch(page)
    for role in ROLES:
        sign_in(page, system, role)
        cookie = next(c for c in context.cookies() if c["name"] == "__Host-jobauth_admin")
        assert cookie["httpOnly"] and cookie["secure"] and cookie["sameSite"] == "Strict"
        sign_out(page)
        assert not [c for c in context.cookies() if c["name"] == "__Host-jobauth_admin"]
    password_step(page, system["base"], account(system, None, second_factor=False))
    page.wait_for_selector("#error")
    assert "no dashboard role" in page.inner_text("#error")
    password_step(page, system["base"], account(system, "admin", second_factor=False))
    page.wait_for_selector("#error")
    assert "/account/security" in page.inner_text("#error")
    assert not [c for c in context.cookies() if c["name"] == "__Host-jobauth_admin"]
    assert not problems.console, problems.console


def test_a_code_signs_in_once_and_a_wrong_one_is_refused(
    system: dict[str, Any], context: BrowserContext
) -> None:
    """The password alone opens nothing; a wrong code is refused on the code step; a code that
    signed in once is refused the second time (replay), even with the right password."""
    page = context.new_page()
    problems = watch(page)
    who = account(system, "viewer")
    assert who.authenticator is not None
    password_step(page, system["base"], who)
    page.wait_for_selector("#code")
    page.goto(f"{system['base']}/admin/queues")
    page.wait_for_selector("#sign-in")  # the password step alone gave no session
    password_step(page, system["base"], who)
    code = who.authenticator.code()
    page.fill("#code", "000000" if code != "000000" else "111111")
    page.click("#verify")
    page.wait_for_selector("#error")
    password_step(page, system["base"], who)
    page.fill("#code", code)
    page.click("#verify")
    page.wait_for_selector("#role")
    sign_out(page)
    password_step(page, system["base"], who)
    page.fill("#code", code)
    page.click("#verify")
    page.wait_for_selector("#error")
    assert page.query_selector("#role") is None
    user = system["db"].users.find_one({"email": who.email})
    failed = system["db"].security_events.count_documents(
        {"user_id": user["_id"], "type": "mfa_failed"}
    )
    assert failed == 2  # the wrong code and the replayed one, both on the account's log
    assert not problems.console, problems.console


def test_the_overview_moves_while_jobs_run(system: dict[str, Any], context: BrowserContext) -> None:
    """The overview's own script updates the figures while jobs finish."""
    page = context.new_page()
    sign_in(page, system, "viewer")
    before = int(page.inner_text("#total-succeeded_1h"))
    system["store"].enqueue_many([{"task": "bench.noop"} for _ in range(5)])
    # The page's own script updates the figure (string evaluation is refused by the CSP).
    wait_until(
        lambda: int(page.inner_text("#total-succeeded_1h")) >= before + 5, what="the overview"
    )
    assert int(page.inner_text("#consumers")) >= 1


def test_search_open_and_retry_a_dead_job_then_bulk_retry_a_filter(
    system: dict[str, Any], context: BrowserContext
) -> None:
    """An operator finds a dead job by id and retries it; an admin bulk-retries a filter."""
    store: JobStore = system["store"]
    dead = [store.enqueue("bench.fail", {"tag": f"t{i}"}) for i in range(3)]
    wait_until(lambda: all(store.get(j.id).state.value == "dead" for j in dead), what="jobs to die")  # type: ignore[union-attr]
    page = context.new_page()
    operator = sign_in(page, system, "operator")
    page.goto(f"{system['base']}/admin/jobs?q={dead[0].id}")
    page.click("a.job-link")
    assert page.inner_text("#job-state") == "dead"
    assert '"tag": "t0"' in page.inner_text("#payload")
    first_death = store.get(dead[0].id).finished_at  # type: ignore[union-attr]
    page.click("#job-retry")
    page.wait_for_selector("#job-state")
    # Revived, run again and (bench.fail always fails) dead again: a later death, one retry.
    wait_until(lambda: (job := store.get(dead[0].id)) is not None and job.state.value == "dead"
             and job.finished_at != first_death, what="the retried job to die again")  # fmt: skip
    retried = system["db"].admin_audit.find_one({"action": "job.retry", "target": dead[0].id})
    assert retried is not None and retried["email"] == operator.email
    sign_out(page)
    sign_in(page, system, "admin")
    page.goto(f"{system['base']}/admin/jobs?view=dead&task=bench.fail")
    page.click("#retry-all")
    page.wait_for_selector("#confirm")
    assert "3" in page.inner_text("h1")
    page.click("#confirm")
    page.wait_for_url("**/admin/jobs?view=dead*")
    entries = system["db"].admin_audit.find_one({"action": "bulk.retry"})
    assert entries is not None and entries["count"] == 3
    assert entries["filter"]["task"] == "bench.fail"


def test_pausing_a_queue_stops_claims_until_it_resumes(
    system: dict[str, Any], context: BrowserContext
) -> None:
    """The consumers serve `default` and `other`. Once every consumer reports `default` paused,
    a job on `default` enqueued before one on `other` stays pending while the later one runs
    (each claim pass takes the earliest due job of its queues): the pause, not luck, held it."""
    store: JobStore = system["store"]
    store.enqueue("bench.noop", queue="default")  # the queue exists on the page
    page = context.new_page()
    sign_in(page, system, "operator")
    page.goto(f"{system['base']}/admin/queues")
    page.click("#queue-default .queue-toggle")
    page.wait_for_selector("#queue-default .state:text('paused')")
    wait_until(
        lambda: consumers_skip(system["db"], "default"), what="every consumer to see the pause"
    )
    held = store.enqueue("bench.noop")
    later = store.enqueue("bench.noop", queue="other")
    wait_until(
        lambda: store.get(later.id).state.value == "succeeded", what="the unpaused queue's job"
    )  # type: ignore[union-attr]
    assert store.get(held.id).state.value == "pending"  # type: ignore[union-attr]
    processes = f"{system['base']}/admin/processes"  # from the snapshot: up to 3 s behind
    wait_until(
        lambda: page.goto(processes) and "paused: default" in page.inner_text("main"),
        what="the processes page to show the pause",
    )
    page.goto(f"{system['base']}/admin/queues")
    page.click("#queue-default .queue-toggle")
    wait_until(lambda: store.get(held.id).state.value == "succeeded", what="the job after resume")  # type: ignore[union-attr]


def consumers_skip(db: Any, queue: str) -> bool:
    """True once every live consumer's heartbeat says it skips `queue`."""
    workers = list(db.workers.find({}, {"paused": 1}))
    return bool(workers) and all(queue in w.get("paused", []) for w in workers)


def test_a_viewer_is_refused_operator_actions(
    system: dict[str, Any], context: BrowserContext
) -> None:
    """A viewer is not offered cancel, and a posted cancel is refused."""
    job = system["store"].enqueue("bench.noop", delay_s=3600)
    page = context.new_page()
    sign_in(page, system, "viewer")
    page.goto(f"{system['base']}/admin/jobs/{job.id}")
    assert page.query_selector("#job-cancel") is None  # not offered
    csrf = page.get_attribute('meta[name="csrf-token"]', "content")
    answer = page.request.post(
        f"{system['base']}/admin/jobs/{job.id}/cancel", form={"csrf": csrf or ""},
        headers={"Sec-Fetch-Site": "same-origin"},
    )  # fmt: skip
    assert answer.status == 403
    assert system["store"].get(job.id).state.value == "pending"


def test_cross_site_posts_and_posts_without_the_token_are_refused(
    system: dict[str, Any], context: BrowserContext
) -> None:
    """Cross-site posts and posts without the CSRF token change nothing; a proper post does."""
    job = system["store"].enqueue("bench.noop", delay_s=3600)
    page = context.new_page()
    sign_in(page, system, "operator")
    csrf = page.get_attribute('meta[name="csrf-token"]', "content") or ""
    url = f"{system['base']}/admin/jobs/{job.id}/cancel"
    cross = page.request.post(url, form={"csrf": csrf}, headers={"Sec-Fetch-Site": "cross-site"})
    missing = page.request.post(url, form={}, headers={"Sec-Fetch-Site": "same-origin"})
    assert (cross.status, missing.status) == (403, 403)
    # A real cross-site form post from another origin's page: the Strict cookie stays home.
    other = context.new_page()
    other.set_content(
        f'<form method="post" action="{url}"><input name="csrf" value="{csrf}"></form>'
    )
    other.evaluate("document.forms[0].submit()")
    other.wait_for_load_state()
    assert system["store"].get(job.id).state.value == "pending"
    ok = page.request.post(url, form={"csrf": csrf}, headers={"Sec-Fetch-Site": "same-origin"})
    assert ok.status in (200, 303) and system["store"].get(job.id).state.value == "cancelled"


def test_payload_scripts_are_text_and_injected_scripts_do_not_run(
    system: dict[str, Any], context: BrowserContext
) -> None:
    """A payload's <script> shows as text; a script injected at run time is blocked (CSP)."""
    job = system["store"].enqueue("bench.noop", {"note": "<script>window.pwned = 1</script>"},
                                  delay_s=3600)  # fmt: skip
    page = context.new_page()
    problems = watch(page)
    sign_in(page, system, "viewer")
    page.goto(f"{system['base']}/admin/jobs/{job.id}")
    assert "<script>window.pwned = 1</script>" in page.inner_text("#payload")
    page.evaluate(
        "() => { const s = document.createElement('script');"
        " s.textContent = 'window.pwned = 2'; document.body.appendChild(s); }"
    )
    assert page.evaluate("window.pwned") is None
    assert any("Content Security Policy" in line for line in problems.console), problems.console


PAGES = {
    "overview": ("/admin", "Overview"),
    "queues": ("/admin/queues", "Queues"),
    "jobs-dead": ("/admin/jobs?view=dead", "Dead jobs"),
    "processes": ("/admin/processes", "Processes"),
    "schedules": ("/admin/schedules", "Schedules"),
    "audit": ("/admin/audit", "Audit log"),
}


def test_every_page_renders_for_an_admin_without_console_errors(
    system: dict[str, Any], browser: Browser
) -> None:
    """Each main page and a job's page render their heading with no script or CSP error.
    With DASHBOARD_SCREENSHOTS=<dir> (`make screenshots`) each is saved there as a PNG: the
    pictures in docs/dashboard.md."""
    shots = os.environ.get("DASHBOARD_SCREENSHOTS")
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    problems = watch(page)
    sign_in(page, system, "admin")
    system["store"].enqueue_many([{"task": "bench.noop", "queue": q} for q in ("default", "other")
                                  for _ in range(10)])  # fmt: skip
    failing = system["store"].enqueue("bench.fail", {"order": 1042, "api_key": "k-not-shown"})
    wait_until(lambda: system["store"].get(failing.id).state.value == "dead", what="a dead job")  # type: ignore[union-attr]
    overview = f"{system['base']}/admin"  # the consumers' counters reach it within ~10 s
    wait_until(
        lambda: page.goto(overview) and int(page.inner_text("#total-succeeded_1h")) >= 20,
        what="the overview to count the finished jobs",
    )
    for name, (path, heading) in {**PAGES, "job": (f"/admin/jobs/{failing.id}", "Job")}.items():
        page.goto(f"{system['base']}{path}")
        assert page.inner_text("h1").startswith(heading), name
        if shots:
            Path(shots).mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(Path(shots) / f"dashboard-{name}.png"), full_page=True)
    assert "k-not-shown" not in page.inner_text("#payload")  # redacted by key name
    assert not problems.console, problems.console
    context.close()

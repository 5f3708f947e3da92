"""Locust scenarios for the API: accounts, job producers, and a mix of both.

    locust -f loadtests/locustfile.py --host http://127.0.0.1:8000 --headless -u 20 -r 5 -t 60s \
        [AccountUser|JobProducer|MixedUser ...] [--tags account|jobs]

AccountUser signs up once, then cycles login → profile → refresh with an occasional logout;
JobProducer submits jobs through `POST /jobs` and polls `GET /jobs/{id}` until the job is done,
reporting the end-to-end job latency as a request of type "JOB"; MixedUser does both. Every
response is checked (status and body), so a wrong answer counts as a failure, not a success.

When the run ends, thresholds decide the exit code (see `--max-error-ratio`, `--p95-ms`,
`--p99-ms`, `--auth-p95-ms`, `--auth-p99-ms`, `--job-p95-ms`): a breach is printed and the
process exits 3.
"""

from __future__ import annotations

import os
import time
import uuid
from typing import Any

import gevent
from locust import FastHttpUser, between, events, tag, task
from locust.env import Environment
from thresholds import Limits, breaches

JOB_TASK = os.environ.get("LOCUST_JOB_TASK", "bench.sleep")
JOB_PAYLOAD_MS = int(os.environ.get("LOCUST_JOB_MS", "20"))
JOB_POLL_S = 0.1
JOB_TIMEOUT_S = 30.0
FINISHED_JOB_STATES = frozenset({"succeeded", "dead", "cancelled"})
TOKEN_KEYS = ("access_token", "refresh_token", "token_type", "expires_in")
THRESHOLD_EXIT_CODE = 3


class ApiUser(FastHttpUser):
    """Shared plumbing: one account per simulated user and its current token pair."""

    abstract = True
    wait_time = between(0.5, 1.5)

    def on_start(self) -> None:
        self.email = f"load-{uuid.uuid4().hex}@example.com"
        self.password = f"Lt-{uuid.uuid4().hex}"
        self.access_token: str | None = None
        self.refresh_token: str | None = None
        self.signup()

    def bearer(self, token: str | None) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}

    def take_tokens(self, response: Any) -> bool:
        """Store the token pair from a token response; mark it failed if the body is wrong."""
        try:
            body = response.json()
        except ValueError:
            response.failure("token response is not JSON")
            return False
        if not isinstance(body, dict) or any(key not in body for key in TOKEN_KEYS):
            response.failure(f"token response lacks {TOKEN_KEYS}: {sorted(body)}")
            return False
        if body["token_type"] != "Bearer" or "no-store" not in (
            response.headers.get("Cache-Control") or ""
        ):
            response.failure("token response must be Bearer and Cache-Control: no-store")
            return False
        self.access_token, self.refresh_token = body["access_token"], body["refresh_token"]
        return True

    def signup(self) -> None:
        body = {"name": "Load Tester", "email": self.email, "password": self.password, "age": 30}
        with self.client.post("/users/signup", json=body, catch_response=True) as response:
            if response.status_code != 201:
                response.failure(f"sign-up: want 201, got {response.status_code}")
            elif self.take_tokens(response):
                response.success()

    def login(self) -> None:
        body = {"email": self.email, "password": self.password}
        with self.client.post("/users/login", json=body, catch_response=True) as response:
            if response.status_code != 200:
                response.failure(f"login: want 200, got {response.status_code}")
            elif self.take_tokens(response):
                response.success()

    def ensure_session(self) -> bool:
        """Log in again when the previous task logged out (or sign-up failed)."""
        if self.access_token is None:
            self.login()
        return self.access_token is not None


class AccountUser(ApiUser):
    """Sign up once, then login → profile → refresh, with an occasional logout."""

    @tag("account")
    @task(6)
    def profile(self) -> None:
        if not self.ensure_session():
            return
        with self.client.get(
            "/users/profile", headers=self.bearer(self.access_token), catch_response=True
        ) as response:
            if response.status_code != 200:
                response.failure(f"profile: want 200, got {response.status_code}")
                return
            body = response.json()
            if body.get("email") != self.email or "password" in str(body).lower():
                response.failure("profile: wrong user, or a password field in the body")
            else:
                response.success()

    @tag("account")
    @task(2)
    def refresh(self) -> None:
        if not self.ensure_session():
            return
        with self.client.post(
            "/users/refresh", headers=self.bearer(self.refresh_token), catch_response=True
        ) as response:
            if response.status_code != 200:
                response.failure(f"refresh: want 200, got {response.status_code}")
            elif self.take_tokens(response):
                response.success()

    @tag("account")
    @task(1)
    def relogin(self) -> None:
        self.login()

    @tag("account")
    @task(1)
    def logout(self) -> None:
        if not self.ensure_session():
            return
        with self.client.post(
            "/users/logout", headers=self.bearer(self.access_token), catch_response=True
        ) as response:
            if response.status_code not in (200, 204):
                response.failure(f"logout: want 200/204, got {response.status_code}")
            else:
                response.success()
                self.access_token = self.refresh_token = None


class JobProducer(ApiUser):
    """Submit a job, poll it until it is done, and report its end-to-end latency as "JOB"."""

    @tag("jobs")
    @task
    def submit_and_wait(self) -> None:
        if not self.ensure_session():
            return
        started = time.perf_counter()
        body = {"task": JOB_TASK, "payload": {"ms": JOB_PAYLOAD_MS}}
        with self.client.post(
            "/jobs", json=body, headers=self.bearer(self.access_token), catch_response=True
        ) as response:
            job_id = response.json().get("id") if response.status_code == 202 else None
            if not job_id:
                response.failure(f"POST /jobs: want 202 with an id, got {response.status_code}")
                return
            response.success()
        state, error = self.wait_for(job_id)
        elapsed_ms = (time.perf_counter() - started) * 1000
        if error is None and state != "succeeded":
            error = f"job ended {state}"
        self.environment.events.request.fire(
            request_type="JOB",
            name=JOB_TASK,
            response_time=elapsed_ms,
            response_length=0,
            response=None,
            context={},
            exception=RuntimeError(error) if error else None,
        )

    def wait_for(self, job_id: str) -> tuple[str | None, str | None]:
        """Poll GET /jobs/{id} until the job finishes; return (state, error)."""
        deadline = time.monotonic() + JOB_TIMEOUT_S
        while time.monotonic() < deadline:
            with self.client.get(
                f"/jobs/{job_id}",
                headers=self.bearer(self.access_token),
                name="/jobs/[id]",
                catch_response=True,
            ) as response:
                if response.status_code != 200:
                    response.failure(f"GET /jobs/[id]: want 200, got {response.status_code}")
                    return None, f"poll answered {response.status_code}"
                state = response.json().get("state")
                response.success()
            if state in FINISHED_JOB_STATES:
                return state, None
            gevent.sleep(JOB_POLL_S)  # pacing the poll loop of a simulated client
        return None, f"not finished within {JOB_TIMEOUT_S}s"


class MixedUser(AccountUser, JobProducer):
    """Account traffic with a job submitted now and then."""


@events.init_command_line_parser.add_listener  # type: ignore[untyped-decorator]
def add_threshold_options(parser: Any, **_: Any) -> None:
    """Add the options whose limits fail the run."""
    group = parser.add_argument_group("thresholds (a breach exits 3)")
    d = Limits()
    add = group.add_argument
    add("--max-error-ratio", type=float, default=d.max_error_ratio, help="failed/total")
    add("--p95-ms", type=float, default=d.p95_ms, help="p95 per endpoint")
    add("--p99-ms", type=float, default=d.p99_ms, help="p99 per endpoint")
    add("--auth-p95-ms", type=float, default=d.auth_p95_ms, help="p95 sign-up/login")
    add("--auth-p99-ms", type=float, default=d.auth_p99_ms, help="p99 sign-up/login")
    add("--job-p95-ms", type=float, default=d.job_p95_ms, help="p95 job end-to-end")
    add("--job-p99-ms", type=float, default=d.job_p99_ms, help="p99 job end-to-end")


def threshold_breaches(environment: Environment) -> list[str]:
    """Return every threshold the run's statistics break."""
    options: Any = environment.parsed_options
    limits = Limits(**{name: getattr(options, name) for name in Limits.__dataclass_fields__})
    stats = environment.stats
    return breaches(
        limits, stats.total.num_requests, stats.total.fail_ratio, stats.entries.values()
    )


@events.quitting.add_listener  # type: ignore[untyped-decorator]
def enforce_thresholds(environment: Environment, **_: Any) -> None:
    """Fail the process when a threshold is breached (Locust exits with process_exit_code)."""
    if environment.parsed_options is None or not hasattr(
        environment.parsed_options, "max_error_ratio"
    ):
        return
    breaches = threshold_breaches(environment)
    for breach in breaches:
        print(f"THRESHOLD BREACHED: {breach}", flush=True)
    if breaches:
        environment.process_exit_code = THRESHOLD_EXIT_CODE
    else:
        print("all thresholds met", flush=True)

"""The dashboard's cost to the queue: the supervisor's drain with no dashboard open, then with
`tabs` signed-in tabs polling the overview as the page's script does (every 2 s, with
If-None-Match), alternately (without, with, with, without, ...), `rounds` times, on one
database server in one run.

The tabs are HTTP clients, not browsers: what a tab costs the system is its requests (a
browser's rendering would only take this machine's CPU from both sides). An API with the
dashboard on runs in both halves, so the difference is the polling alone.

    python loadtests/dashboard_bench.py [--jobs 1000] [--tabs 10] [--rounds 3]
"""

from __future__ import annotations

import argparse
import http.client
import json
import sys
import threading
import uuid
from dataclasses import dataclass, field
from statistics import median
from typing import Any
from urllib.parse import urlencode, urlsplit

import api_bench
import queue_bench
import queue_side  # noqa: F401 - registers the "supervisor" drainer
from harness import VAR
from pymongo import MongoClient
from stack import Stack, cpu_count, start_stack

from queue_worker import JobStore, QueueSettings

COOKIE = "__Host-jobauth_admin"
POLL_S = 2.0  # api/pages/static/admin.js POLL_MS
OUT = VAR / "dashboard-bench"


@dataclass
class Tabs:
    """`count` dashboard tabs of one signed-in admin, polling until stopped."""

    url: str
    cookie: str
    count: int
    statuses: dict[int, int] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __enter__(self) -> Tabs:
        for n in range(self.count):
            thread = threading.Thread(target=self._poll, args=(n,), daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(10)

    def _poll(self, n: int) -> None:
        netloc = urlsplit(self.url).netloc
        etag = ""
        self._stop.wait(POLL_S * n / self.count)  # tabs opened at different moments
        self._get(netloc, "/admin", "")  # the page itself, once
        while not self._stop.wait(POLL_S):
            status, etag = self._get(netloc, "/admin/api/overview", etag)

    def _get(self, netloc: str, path: str, etag: str) -> tuple[int, str]:
        connection = http.client.HTTPConnection(netloc, timeout=10)
        headers = {"Cookie": f"{COOKIE}={self.cookie}"}
        if etag:
            headers["If-None-Match"] = etag
        try:
            connection.request("GET", path, headers=headers)
            response = connection.getresponse()
            response.read()
            status, etag = response.status, response.getheader("ETag") or etag
        except OSError:
            status = 0
        finally:
            connection.close()
        with self._lock:
            self.statuses[status] = self.statuses.get(status, 0) + 1
        return status, etag


def admin_cookie(stack: Stack) -> str:
    """Sign up an account, make it an admin, sign in to the dashboard; return its cookie."""
    email, password = f"dash-{uuid.uuid4().hex[:8]}@example.com", f"Pw-{uuid.uuid4().hex}"
    status, body = api_bench.call(
        f"{stack.url}/users/signup", {"name": "Dash", "email": email, "password": password}
    )
    assert status == 201, (status, body)
    client: MongoClient[dict[str, Any]] = MongoClient(stack.uri)
    client[stack.database_name].users.update_one({"email": email}, {"$set": {"role": "admin"}})
    client.close()
    connection = http.client.HTTPConnection(urlsplit(stack.url).netloc, timeout=30)
    form = urlencode({"email": email, "password": password, "next": "/admin"})
    headers = {"Content-Type": "application/x-www-form-urlencoded", "Sec-Fetch-Site": "same-origin"}
    connection.request("POST", "/admin/login", body=form, headers=headers)
    response = connection.getresponse()
    response.read()
    for name, value in response.getheaders():
        if name.lower() == "set-cookie" and value.startswith(f"{COOKIE}="):
            return value.split(";", 1)[0].split("=", 1)[1]
    raise RuntimeError(f"dashboard sign-in failed: {response.status}")


def drain_jobs_per_s(stack: Stack, jobs: int, workers: int, concurrency: int) -> float:
    """Enqueue `jobs` no-ops into the stack's database and drain them through a supervisor."""
    database = stack.database_name
    client: MongoClient[dict[str, Any]] = MongoClient(stack.uri, tz_aware=True)
    try:
        store = JobStore(client[database], QueueSettings())
        for collection in store.in_move_order:  # only this round's no-ops count as drained
            collection.delete_many({})
        queue_bench.enqueue_noops(store, jobs)
        target = queue_bench.Target(stack.uri, database)
        queue_bench.DRAINERS["supervisor"](target, workers, concurrency, jobs)
        docs = list(store.done.find({}, {"started_at": 1, "finished_at": 1}))
        assert len(docs) == jobs, f"{len(docs)} of {jobs} drained"
        drain_s = max(d["finished_at"] for d in docs) - min(d["started_at"] for d in docs)
        return jobs / drain_s.total_seconds()
    finally:
        client.close()


def dashboard_drain(
    uri: str, jobs: int, workers: int, concurrency: int, tabs: int = 10, rounds: int = 3
) -> dict[str, Any]:
    """The drain without and with `tabs` polling tabs, alternately; medians and their ratio."""
    stack = start_stack(
        OUT / "stack", api_workers=cpu_count(), with_supervisor=False, server_uri=uri,
        database=f"dash_{uuid.uuid4().hex[:8]}", env_extra={"API_ADMIN_ENABLED": "1"},
    )  # fmt: skip
    rates: dict[str, list[float]] = {"without": [], "with": []}
    statuses: dict[int, int] = {}
    try:
        cookie = admin_cookie(stack)
        for n in range(rounds):
            # ABBA: the local server slows over a run, so neither side always goes second.
            for mode in ("without", "with") if n % 2 == 0 else ("with", "without"):
                queue_bench.progress(f"dashboard: round {n + 1}, drain {mode} {tabs} tabs")
                if mode == "without":
                    rates[mode].append(drain_jobs_per_s(stack, jobs, workers, concurrency))
                    continue
                with Tabs(stack.url, cookie, tabs) as open_tabs:
                    rates[mode].append(drain_jobs_per_s(stack, jobs, workers, concurrency))
                for status, count in open_tabs.statuses.items():
                    statuses[status] = statuses.get(status, 0) + count
    finally:
        stack.stop()
    without, with_tabs = median(rates["without"]), median(rates["with"])
    return {
        "dashboard_tabs": tabs,
        "dashboard_drain_without_jobs_per_s": round(without, 1),
        "dashboard_drain_with_jobs_per_s": round(with_tabs, 1),
        "dashboard_drain_ratio": round(with_tabs / without, 3),
        "dashboard_drain_rounds": {k: [round(v, 1) for v in vs] for k, vs in rates.items()},
        "dashboard_tab_responses": {str(k): v for k, v in sorted(statuses.items())},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--tabs", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=cpu_count())
    parser.add_argument("--concurrency", type=int, default=4)
    args = parser.parse_args(argv)
    with queue_bench.database_server() as uri:
        figures = dashboard_drain(
            uri, args.jobs, args.workers, args.concurrency, args.tabs, args.rounds
        )
    print(json.dumps(figures), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""API figures for the benchmark suite: wrk runs, the sign-up storm, bcrypt's limit, memory.

    profile       GET /users/profile at 50 connections (req/s, p50/p99)
    login         POST /users/login flat out: logins/s vs the bcrypt limit (cores / hash time)
                  (what a login costs the database: login_bench.py)
    profile during a login storm: p99 of profile requests while logins saturate the CPU
    sign-up storm 50 concurrent sign-ups whose welcome mails take 500 ms each at the SMTP
                  server: first request → last welcome-email job done, and sign-up latency
wrk runs pinned to the last CPU (taskset) so the figures say what the server did with the rest.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import statistics
import subprocess
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil
from harness import consumer_children, percentile, rss_mb
from pymongo import MongoClient
from stack import Stack, cpu_count

from queue_worker.layout import DONE, JOBS

UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}
WRK_CPUS = str(cpu_count() - 1)
LOGIN_ACCOUNTS = 24


def ensure_wrk() -> str:
    """Return the wrk binary, installing Debian's package first if it is missing."""
    found = shutil.which("wrk")
    if found:
        return found
    subprocess.run(["apt-get", "update", "-qq"], check=False, capture_output=True)
    subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=True, capture_output=True)
    found = shutil.which("wrk")
    if not found:
        raise RuntimeError("wrk is not installed and apt-get could not install it")
    return found


def call(url: str, body: dict[str, Any] | None = None, token: str | None = None) -> Any:
    """POST `body` (or GET without one) and return (status, parsed JSON body)."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method="POST" if data else "GET")
    request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")


def new_account(url: str) -> tuple[str, str, str]:
    """Sign up a fresh user; return (email, password, access token)."""
    email, password = f"bench-{uuid.uuid4().hex}@example.com", f"Bn-{uuid.uuid4().hex}"
    status, body = call(
        f"{url}/users/signup", {"name": "Bench", "email": email, "password": password}
    )
    if status != 201:
        raise RuntimeError(f"sign-up for the benchmark failed: {status} {body}")
    return email, password, str(body["access_token"])


def to_ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text.strip())
    if not match:
        raise ValueError(f"cannot read wrk latency {text!r}")
    return float(match.group(1)) * UNITS_MS[match.group(2)]


def parse_wrk(output: str) -> dict[str, float]:
    """Read req/s, latency percentiles, request and non-2xx counts from wrk --latency output."""
    figures: dict[str, float] = {}
    if match := re.search(r"Requests/sec:\s+([\d.]+)", output):
        figures["req_per_s"] = float(match.group(1))
    for pct, value in re.findall(r"^\s+(50|75|90|99)%\s+(\S+)\s*$", output, re.MULTILINE):
        figures[f"p{pct}_ms"] = round(to_ms(value), 2)
    if match := re.search(r"(\d+) requests in", output):
        figures["requests"] = int(match.group(1))
    match = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    figures["non_2xx"] = int(match.group(1)) if match else 0
    match = re.search(r"Socket errors:.*", output)
    figures["socket_errors"] = 0 if not match else sum(map(int, re.findall(r"\d+", match[0])))
    return figures


def wrk_command(
    url: str, connections: int, duration_s: int, headers: Sequence[str], script: Path | None
) -> list[str]:
    # wrk's default 2 s timeout would drop slow (bcrypt-queued) logins from the latencies.
    argv = [ensure_wrk(), "-t", "2", "-c", str(connections), "-d", f"{duration_s}s", "--latency",
            "--timeout", "30s"]  # fmt: skip
    for header in headers:
        argv += ["-H", header]
    if script is not None:
        argv += ["-s", str(script)]
    argv.append(url)
    return (["taskset", "-c", WRK_CPUS] if shutil.which("taskset") else []) + argv


def run_wrk(
    url: str,
    connections: int,
    duration_s: int,
    headers: Sequence[str] = (),
    script: Path | None = None,
    save_as: Path | None = None,
) -> dict[str, float]:
    """Run wrk once and return its parsed figures (raw output kept in `save_as`)."""
    argv = wrk_command(url, connections, duration_s, headers, script)
    before = _children_cpu_s()
    done = subprocess.run(argv, capture_output=True, text=True, timeout=duration_s + 60)
    if save_as is not None:
        save_as.write_text(done.stdout + done.stderr)
    if done.returncode != 0:
        raise RuntimeError(f"wrk failed: {done.stderr}")
    figures = parse_wrk(done.stdout)
    # Only meaningful when one wrk runs at a time (children's CPU is summed process-wide).
    figures["wrk_cores"] = round((_children_cpu_s() - before) / duration_s, 2)
    return figures


def _children_cpu_s() -> float:
    times = os.times()
    return times.children_user + times.children_system


def login_script(out_dir: Path, accounts: Sequence[tuple[str, str]]) -> Path:
    """Write the wrk Lua script that POSTs logins round-robin over `accounts`.

    Many accounts, not one: the per-account rate limit counts attempts in flight, and a
    benchmark measures hashing, not the limiter.
    """
    bodies = [json.dumps({"email": e, "password": p}) for e, p in accounts]
    lua_list = ",\n".join(f"  [[{body}]]" for body in bodies)
    path = out_dir / "login.lua"
    path.write_text(
        f"local bodies = {{\n{lua_list}\n}}\n"
        "local i = 0\n"
        'local headers = {["Content-Type"] = "application/json"}\n'
        "request = function()\n"
        "  i = i % #bodies + 1\n"
        '  return wrk.format("POST", nil, headers, bodies[i])\n'
        "end\n"
    )
    return path


def bcrypt_hash_s(cost: int, samples: int = 5) -> float:
    """Return the median time of one bcrypt check at `cost` in this process."""
    import bcrypt

    hashed = bcrypt.hashpw(b"benchmark-password-0123456789", bcrypt.gensalt(cost))
    times = []
    for _ in range(samples):
        started = time.perf_counter()
        bcrypt.checkpw(b"benchmark-password-0123456789", hashed)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def api_figures(stack: Stack, out_dir: Path, duration_s: int, bcrypt_cost: int) -> dict[str, Any]:
    """Profile at 50 connections, login flat out, and profile p99 under a login storm."""
    url = stack.url
    # Measured first, while the server is idle: queued logins would slow the measurement.
    hash_s = bcrypt_hash_s(bcrypt_cost)
    limit = cpu_count() / hash_s
    email, password, token = new_account(url)
    accounts = [(email, password)] + [new_account(url)[:2] for _ in range(LOGIN_ACCOUNTS - 1)]
    auth = [f"Authorization: Bearer {token}"]
    profile = run_wrk(
        f"{url}/users/profile", 50, duration_s, auth, save_as=out_dir / "wrk-profile.txt"
    )
    script = login_script(out_dir, accounts)
    login = run_wrk(
        f"{url}/users/login", 8, duration_s, script=script, save_as=out_dir / "wrk-login.txt"
    )
    # Both at once: logins saturate the hash pool while profile requests keep coming.
    storm: dict[str, dict[str, float]] = {}
    threads = [
        threading.Thread(target=lambda: storm.__setitem__("login", run_wrk(
            f"{url}/users/login", 16, duration_s, script=script,
            save_as=out_dir / "wrk-storm-login.txt"))),
        threading.Thread(target=lambda: storm.__setitem__("profile", run_wrk(
            f"{url}/users/profile", 10, duration_s, auth,
            save_as=out_dir / "wrk-storm-profile.txt"))),
    ]  # fmt: skip
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    script.unlink()  # it holds the throwaway accounts' passwords
    return {
        "profile_req_per_s": profile.get("req_per_s"),
        "profile_p50_ms": profile.get("p50_ms"),
        "profile_p99_ms": profile.get("p99_ms"),
        "profile_non_2xx": profile["non_2xx"],
        "profile_wrk_cores": profile["wrk_cores"],
        "login_per_s": login.get("req_per_s"),
        "login_p99_ms": login.get("p99_ms"),
        "login_non_2xx": login["non_2xx"],
        "wrk_socket_errors": profile["socket_errors"] + login["socket_errors"],
        "bcrypt_cost": bcrypt_cost,
        "bcrypt_check_ms": round(hash_s * 1000, 1),
        "bcrypt_limit_per_s": round(limit, 1),
        "login_vs_bcrypt_limit": round((login.get("req_per_s") or 0) / limit, 2),
        "storm_login_per_s": storm["login"].get("req_per_s"),
        "storm_profile_req_per_s": storm["profile"].get("req_per_s"),
        "storm_profile_p99_ms": storm["profile"].get("p99_ms"),
        "storm_non_2xx": storm["login"]["non_2xx"] + storm["profile"]["non_2xx"],
    }


def signup_storm(stack: Stack, signups: int = 50, timeout_s: float = 120.0) -> dict[str, Any]:
    """Fire `signups` sign-ups at once; time first request → last welcome-email job done."""
    url = stack.url
    latencies: list[float] = []
    statuses: list[int] = []
    lock = threading.Lock()
    gate = threading.Barrier(signups + 1)

    def one(index: int) -> None:
        body = {"name": f"Storm {index}", "email": f"storm-{uuid.uuid4().hex}@example.com",
                "password": f"St-{uuid.uuid4().hex}"}  # fmt: skip
        gate.wait()
        started = time.perf_counter()
        status, _ = call(f"{url}/users/signup", body)
        with lock:
            latencies.append((time.perf_counter() - started) * 1000)
            statuses.append(status)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(signups)]
    for thread in threads:
        thread.start()
    first_request = datetime.now(UTC)
    gate.wait()
    for thread in threads:
        thread.join()
    created = sum(1 for status in statuses if status == 201)
    last_done = wait_for_welcome_jobs(stack, created, timeout_s) if created else None
    total_s = (last_done - first_request).total_seconds() if last_done else None
    return {
        "signups": signups,
        "signup_ok": created,
        "signup_p50_ms": round(percentile(latencies, 50), 1),
        "signup_p95_ms": round(percentile(latencies, 95), 1),
        "signup_max_ms": round(max(latencies), 1),
        "first_request_to_last_email_s": round(total_s, 2) if total_s is not None else None,
    }


def wait_for_welcome_jobs(stack: Stack, count: int, timeout_s: float) -> datetime | None:
    """Poll until `count` user.created jobs succeeded; return the latest finished_at."""
    client: MongoClient[dict[str, Any]] = MongoClient(stack.uri, tz_aware=True)
    try:
        db = client[stack.database_name]
        wanted = {"task": "user.created", "state": "succeeded"}
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            # By distinct id: a job being archived is in both collections for a moment.
            finished = {
                doc["_id"]: doc["finished_at"]
                for name in (JOBS, DONE)
                for doc in db[name].find(wanted, {"finished_at": 1})
            }
            if len(finished) >= count:
                latest: datetime = max(finished.values())
                return latest
            time.sleep(0.05)
        return None
    finally:
        client.close()


def memory(stack: Stack) -> dict[str, Any]:
    """RSS (MiB) of the supervisor master, its consumers, the gunicorn master and workers."""
    figures: dict[str, Any] = {}
    if stack.supervisor is not None:
        figures["supervisor_master_rss_mb"] = round(rss_mb(stack.supervisor.pid), 1)
        figures["consumer_rss_mb"] = [
            round(rss_mb(c.pid), 1) for c in consumer_children(stack.supervisor.pid)
        ]
    if stack.api is not None:
        master = _gunicorn_master(stack.api.pid)
        if master is not None:
            figures["api_master_rss_mb"] = round(rss_mb(master.pid), 1)
            figures["api_worker_rss_mb"] = [round(rss_mb(w.pid), 1) for w in master.children()]
    return figures


def _gunicorn_master(pid: int) -> psutil.Process | None:
    """Return gunicorn's master (the API process, or its child when started via taskset)."""
    try:
        process = psutil.Process(pid)
    except psutil.NoSuchProcess:
        return None
    return process

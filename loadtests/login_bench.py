"""What a login costs: logins/s against the bcrypt limit, and the database commands per login.

    login_figures(stack, ...)   8 connections of logins flat out (wrk) as a share of the bcrypt
                                limit (cores / one hash's time), and commands_per_login
    commands_per_login          the API's own commands by name (mongodb_commands_total) and the
                                database server's operations (everything a login causes,
                                consumers' jobs included) per successful login, the idle rate
                                subtracted
Used by bench.py (the api section) and compare.py (--only logins).
"""

from __future__ import annotations

import concurrent.futures
import re
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from api_bench import LOGIN_ACCOUNTS, bcrypt_hash_s, call, login_script, new_account, run_wrk
from pymongo import MongoClient
from stack import Stack, cpu_count


def api_commands(url: str) -> dict[str, float]:
    """Return the API's database commands so far by name (mongodb_commands_total, all workers)."""
    with urllib.request.urlopen(f"{url}/metrics", timeout=30) as response:
        text = response.read().decode()
    counts: dict[str, float] = {}
    for name, value in re.findall(
        r'^mongodb_commands_total\{command="([^"]+)"\} ([\d.e+]+)$', text, re.MULTILINE
    ):
        counts[name] = counts.get(name, 0.0) + float(value)
    return counts


SERVER_OPS = ("insert", "query", "update", "delete", "getmore", "command")


def server_commands(client: MongoClient[Any]) -> dict[str, float]:
    """Return the database server's operation counters (every client of it: API, consumers)."""
    counters = client.admin.command("serverStatus")["opcounters"]
    return {f"server:{name}": float(counters.get(name, 0)) for name in SERVER_OPS}


def commands_per_login(
    url: str, uri: str, accounts: Sequence[tuple[str, str]], logins: int = 120, threads: int = 8
) -> dict[str, Any]:
    """Database commands per successful login: `logins` logins from `threads` threads, the
    deferred bookkeeping given time to be written (the ledger flushes every 0.5 s), minus what
    the idle system sends in as long (change-stream getMores, consumers' polls). Counted twice:
    the API's own commands by name (mongodb_commands_total) and everything the database server
    did (serverStatus opcounters: also the jobs a login causes, run by the consumers)."""

    client: MongoClient[Any] = MongoClient(uri, tz_aware=True)

    def count() -> dict[str, float]:
        return {**api_commands(url), **server_commands(client)}

    def delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
        return {k: after.get(k, 0.0) - before.get(k, 0.0) for k in after}

    idle_from = count()
    time.sleep(3.0)
    idle = {k: v / 3.0 for k, v in delta(idle_from, count()).items()}
    start = count()
    started = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        statuses = list(pool.map(
            lambda i: call(f"{url}/users/login", {"email": accounts[i % len(accounts)][0],
                                                  "password": accounts[i % len(accounts)][1]})[0],
            range(logins),
        ))  # fmt: skip
    time.sleep(1.5)  # the ledger's flush (0.5 s) and the session-cap check behind it
    wall_s = time.perf_counter() - started
    spent = delta(start, count())
    client.close()
    ok = statuses.count(200)
    if ok == 0:
        raise RuntimeError(f"no login succeeded: {sorted(set(statuses))}")
    per_login = {
        name: round(max(0.0, spent_n - idle.get(name, 0.0) * wall_s) / ok, 2)
        for name, spent_n in sorted(spent.items())
    }
    api_side = {k: v for k, v in per_login.items() if not k.startswith("server:") and v > 0}
    server_side = {k: v for k, v in per_login.items() if k.startswith("server:") and v > 0}
    return {
        "db_commands_per_login": round(sum(api_side.values()), 2),
        "db_commands_per_login_by_command": api_side,
        "server_ops_per_login": round(sum(server_side.values()), 2),
        "server_ops_per_login_by_kind": server_side,
        "logins_counted": ok,
    }


def login_figures(stack: Stack, out_dir: Path, duration_s: int, bcrypt_cost: int) -> dict[str, Any]:
    """Logins flat out (8 connections) as a share of the bcrypt limit, and database commands
    per login."""
    url = stack.url
    hash_s = bcrypt_hash_s(bcrypt_cost)  # first, while the server is idle
    limit = cpu_count() / hash_s
    accounts = [new_account(url)[:2] for _ in range(LOGIN_ACCOUNTS)]
    commands = commands_per_login(url, stack.uri, accounts)
    script = login_script(out_dir, accounts)
    login = run_wrk(
        f"{url}/users/login", 8, duration_s, script=script, save_as=out_dir / "wrk-login.txt"
    )
    script.unlink()  # it holds the throwaway accounts' passwords
    return {
        "bcrypt_cost": bcrypt_cost,
        "bcrypt_limit_per_s": round(limit, 1),
        "login_per_s": login.get("req_per_s"),
        "login_vs_bcrypt_limit": round((login.get("req_per_s") or 0) / limit, 2),
        "login_non_2xx": login["non_2xx"],
        **commands,
    }

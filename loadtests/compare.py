"""Before/after, side by side in one run: the same measurements against two commits.

    python loadtests/compare.py BASE_REF [--jobs 1000] [--pickups 30] [--wrk-seconds 10]
                                         [--only pickup,drain,api,logins]

The commit BASE_REF is checked out in a git worktree under var/compare/ and both trees are
measured on this machine, in this session, alternately section by section (machines differ by
3x from one day to the next: only figures from one run compare). Both run with the project's
.venv; each tree's own code is on PYTHONPATH. Measured from outside the code, so an old commit
is measured exactly like the new one:

    pickup   one no-op job at a time into an idle queue (a supervisor, 2 x 4 slots): due → start
    drain    N no-op jobs through the supervisor; database operations per job from the local
             server's serverStatus.opcounters (it counts commands there; this script's own
             polling is subtracted), and jobs/s
    profile  GET /users/profile under wrk at 50 connections: req/s, p99
    login    POST /users/login flat out: logins/s as a share of the bcrypt limit (cost 10)
    logins   (--only logins) logins/s as a share of the bcrypt limit at bcrypt cost 10 and 12,
             and the database commands a login costs the API (its mongodb_commands_total),
             each cost on a fresh stack per side, alternating

Prints a Markdown table (before, after, after/before) and writes var/compare/results.json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import api_bench
import login_bench
from harness import (
    ROOT,
    VAR,
    consumer_children,
    percentile,
    project_env,
    start_supervisor,
    wait_until,
)
from pymongo import MongoClient
from stack import start_stack

OUT = VAR / "compare"
OPS = ("insert", "query", "update", "delete", "getmore", "command")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("base", help="the commit to compare against (e.g. HEAD~5)")
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--pickups", type=int, default=30)
    parser.add_argument("--wrk-seconds", type=int, default=10)
    parser.add_argument("--bcrypt-cost", type=int, default=10)
    parser.add_argument("--only", default="pickup,drain,api", help="sections, comma-separated")
    return parser.parse_args(argv)


def worktree(ref: str) -> Path:
    sha = subprocess.run(["git", "rev-parse", "--short", ref], cwd=ROOT, capture_output=True,
                         text=True, check=True).stdout.strip()  # fmt: skip
    path = OUT / f"tree-{sha}"
    if not path.exists():
        subprocess.run(["git", "worktree", "add", "--detach", str(path), sha], cwd=ROOT,
                       check=True, capture_output=True)  # fmt: skip
    return path


def side_env(tree: Path, env: dict[str, str]) -> dict[str, str]:
    """The environment of a process of `tree`: its code, and only its code, on the path."""
    return {**env, "PYTHONPATH": str(tree)}


def opcounters(client: MongoClient[Any]) -> int:
    counters = client.admin.command("serverStatus")["opcounters"]
    return sum(int(counters.get(name, 0)) for name in OPS)


def drain(tree: Path, uri: str, jobs: int) -> dict[str, Any]:
    """N no-op jobs drained by the tree's supervisor: operations per job, jobs/s."""
    database = f"cmp_{uuid.uuid4().hex[:8]}"
    client: MongoClient[Any] = MongoClient(uri, tz_aware=True)
    db = client[database]
    env = side_env(tree, project_env(uri, database, {"QUEUE_ENABLE_BENCH_TASKS": "1"}))
    batches = max(1, jobs // 100)
    enqueue = "\n".join([
        "import os",
        "from queue_worker import JobStore, QueueSettings",
        "from queue_worker.connection import connect, database",
        "s = QueueSettings.from_env(os.environ)",
        "st = JobStore(database(connect(s, app_name='cmp'), s), s)",
        "st.ensure_indexes()",
        f"for _ in range({batches}): st.enqueue_many([{{'task': 'bench.noop'}}] * 100)",
    ])  # fmt: skip
    subprocess.run([sys.executable, "-c", enqueue], env=env, cwd=tree, check=True)
    jobs = batches * 100
    polls = 0
    before = opcounters(client)
    started = time.perf_counter()
    supervisor = start_supervisor(env, OUT / "supervisor.log", workers=2, concurrency=4, cwd=tree)
    try:
        while True:
            polls += 1
            if db.jobs_done.count_documents({"state": "succeeded"}) >= jobs:
                break
            time.sleep(0.5)
        wall_s = time.perf_counter() - started
        after = opcounters(client) - 1  # this read itself
    finally:
        supervisor.stop(timeout_s=30)
        client.drop_database(database)
        client.close()
    return {"ops_per_job": round((after - before - polls) / jobs, 3),
            "drain_jobs_per_s": round(jobs / wall_s, 1)}  # fmt: skip


def pickup(tree: Path, uri: str, samples: int) -> dict[str, Any]:
    database = f"cmp_pick_{uuid.uuid4().hex[:8]}"
    env = side_env(tree, project_env(uri, database, {"QUEUE_ENABLE_BENCH_TASKS": "1"}))
    client: MongoClient[Any] = MongoClient(uri, tz_aware=True)
    db = client[database]
    supervisor = start_supervisor(
        env, OUT / "supervisor-pickup.log", workers=2, concurrency=4, cwd=tree
    )
    times: list[float] = []
    try:
        wait_until(lambda: len(consumer_children(supervisor.pid)) >= 2, 60, what="consumers")
        time.sleep(2.0)
        for n in range(samples):
            now = datetime.now(UTC)
            doc = {"queue": "default", "task": "bench.noop", "payload": {}, "state": "pending",
                   "priority": 0, "run_at": now, "attempts": 0, "max_attempts": 3,
                   "timeout_s": 60.0, "created_at": now, "crashes": 0, "rescues": 0}  # fmt: skip
            job_id = db.jobs_backlog.insert_one(doc).inserted_id

            seen: list[Any] = []

            def started(job_id: Any = job_id, seen: list[Any] = seen) -> bool:
                for name in ("jobs", "jobs_done"):
                    found = db[name].find_one({"_id": job_id, "started_at": {"$exists": True}})
                    if found:
                        seen.append(found)
                        return True
                return False

            wait_until(started, 30, interval_s=0.005, what="pickup")
            job = seen[0]
            times.append((job["started_at"] - job["run_at"]).total_seconds() * 1000)
            time.sleep(0.5 + (n % 4) * 0.4)  # idle gaps: pollers back off
    finally:
        supervisor.stop(timeout_s=30)
        client.drop_database(database)
        client.close()
    return {"pickup_p50_ms": round(percentile(times, 50), 1),
            "pickup_p99_ms": round(percentile(times, 99), 1)}  # fmt: skip


API_FIGURES = ("profile_req_per_s", "profile_p99_ms", "login_per_s", "login_vs_bcrypt_limit")


def measured_on_stack(tree: Path, seconds: int, cost: int, measure: Any) -> dict[str, Any]:
    """Start the tree's stack (2 API workers, 1 consumer) at bcrypt `cost`, and measure it."""
    stack = start_stack(
        OUT / f"stack-{tree.name}-{cost}", api_workers=2, consumers=1, concurrency=4,
        env_extra={"API_BCRYPT_COST": str(cost)}, code_root=tree,
    )  # fmt: skip
    try:
        figures: dict[str, Any] = measure(stack, OUT, seconds, cost)
    finally:
        stack.stop()
    return figures


def api(tree: Path, seconds: int, cost: int) -> dict[str, Any]:
    figures = measured_on_stack(tree, seconds, cost, api_bench.api_figures)
    return {key: figures[key] for key in API_FIGURES}


LOGIN_COSTS = (10, 12)


def logins(tree: Path, seconds: int, cost: int) -> dict[str, Any]:
    figures = measured_on_stack(tree, seconds, cost, login_bench.login_figures)
    return {f"{key}@{cost}": value for key, value in figures.items() if key != "bcrypt_cost"}


def save(results: dict[str, Any]) -> None:
    """Write what is measured so far: a crash in a late section keeps the early figures."""
    (OUT / "results.json").write_text(json.dumps(results, indent=2) + "\n")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    OUT.mkdir(parents=True, exist_ok=True)
    sides = {"before": worktree(args.base), "after": ROOT}
    results: dict[str, dict[str, Any]] = {"before": {}, "after": {}}
    import localdb

    sections = [name.strip() for name in args.only.split(",") if name.strip()]
    server = localdb.start(data_dir=OUT / "db", log_path=OUT / "db.log")
    try:
        for section in [name for name in ("pickup", "drain") if name in sections]:
            for name, tree in sides.items():
                print(f"[compare] {section}: {name} ({tree.name})", flush=True)
                if section == "pickup":
                    results[name].update(pickup(tree, server.uri(), args.pickups))
                else:
                    results[name].update(drain(tree, server.uri(), args.jobs))
                save(results)
    finally:
        server.stop()
    for name, tree in sides.items() if "api" in sections else ():
        print(f"[compare] api: {name} ({tree.name})", flush=True)
        results[name].update(api(tree, args.wrk_seconds, args.bcrypt_cost))
        save(results)
    for cost in LOGIN_COSTS if "logins" in sections else ():
        for name, tree in sides.items():
            print(f"[compare] logins at cost {cost}: {name} ({tree.name})", flush=True)
            results[name].update(logins(tree, args.wrk_seconds, cost))
            save(results)
    results["base"] = {"ref": args.base, "tree": str(sides["before"])}  # type: ignore[assignment]
    save(results)
    print("\n| figure | before | after | after / before |\n|---|---|---|---|")
    for key in results["after"]:
        before, after = results["before"].get(key), results["after"].get(key)
        numbers = isinstance(before, int | float) and isinstance(after, int | float)
        ratio = round(after / before, 2) if numbers and before else "n/a"
        print(f"| {key} | {before} | {after} | {ratio} |")
    print(json.dumps(results), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

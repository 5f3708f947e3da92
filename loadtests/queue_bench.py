"""Queue benchmark (not a test): drain N no-op jobs, compare with a raw claim+ack loop.

    python loadtests/queue_bench.py [--jobs N] [--processes P] [--concurrency C] [--json-out PATH]

1. Enqueue N `bench.noop` jobs (JobStore.enqueue_many, batches of 500).
2. Drain them with P consumer processes x C slots: `python -m queue_worker work` subprocesses
   with QUEUE_ENABLE_BENCH_TASKS=1, stopped with SIGTERM once every job succeeded. The drain step
   is one function (`drain_with_cli_workers`); `DRAINERS` maps names to such functions, so a
   supervisor-driven drain can be added beside it and picked with --drainer.
3. On the same server, in a fresh collection of the same size N, time a raw loop: one client,
   `find_one_and_update` claim (pending, run_at <= now; sort priority desc, run_at asc) +
   `update_one` ack by _id. Print our jobs/s as a ratio of the raw loop's.

jobs/s is N over the drain window: from the first job's started_at to the last job's finished_at
(job documents; process start-up is excluded, and reported separately as wall time). Pickup
latency is started_at - max(created_at, run_at) per job: with every job enqueued before the
consumers start, it is mostly backlog (job k waits for the k-1 before it).

Uses MONGODB_URI if set (a throwaway database on it, dropped at the end); otherwise starts its own
local server (scripts/localdb.py) on a free port and stops it at the end. The last output line is
one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
for _extra in (ROOT, ROOT / "scripts"):
    if str(_extra) not in sys.path:
        sys.path.insert(0, str(_extra))

import localdb  # noqa: E402  (scripts/ is put on the path just above)
from pymongo import ASCENDING, DESCENDING, MongoClient, ReturnDocument  # noqa: E402
from pymongo.database import Database  # noqa: E402

from queue_worker.layout import DONE  # noqa: E402
from queue_worker.settings import QueueSettings  # noqa: E402
from queue_worker.store import EnqueueRequest, JobStore  # noqa: E402

Doc = dict[str, Any]
ENQUEUE_BATCH = 500
DRAIN_TIMEOUT_S = 900.0
POLL_S = 0.5
LOG_DIR = ROOT / "var" / "bench"


@dataclass(frozen=True)
class Target:
    """Where the benchmark runs: a server URI (with directConnection) and a database name."""

    uri: str
    database: str


@dataclass(frozen=True)
class DrainResult:
    """What a drain function reports: its wall time, start-up included, and the database
    commands its processes sent, by name (when it can count them)."""

    wall_s: float
    commands: dict[str, float] | None = None


Drainer = Callable[[Target, int, int, int], DrainResult]


@dataclass
class Report:
    """Every number the run prints; `as_json` is the last output line."""

    jobs: int
    processes: int
    concurrency: int
    drainer: str
    enqueue_jobs_per_s: float
    drain_s: float
    drain_wall_s: float
    jobs_per_s: float
    raw_s: float
    raw_jobs_per_s: float
    ratio_vs_raw: float
    pickup_p50_ms: float
    pickup_p99_ms: float
    pickup_max_ms: float
    commands_per_job: float | None = None  # every command the drainers sent, start-up included
    commands: dict[str, float] | None = None


# -- the run ------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with database_server() as uri:
        target = Target(uri, f"bench_{uuid.uuid4().hex[:10]}")
        client: MongoClient[Doc] = MongoClient(uri, tz_aware=True)
        try:
            report = run(client[target.database], target, args)
        finally:
            client.drop_database(target.database)
            client.close()
    print_report(report)
    line = json.dumps(asdict(report))
    if args.json_out:
        Path(args.json_out).write_text(line + "\n")
    print(line, flush=True)
    return 0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=800, help="no-op jobs (default 800)")
    parser.add_argument("--processes", type=int, default=1, help="consumer processes (default 1)")
    parser.add_argument("--concurrency", type=int, default=4, help="slots each (default 4)")
    parser.add_argument("--drainer", choices=sorted(DRAINERS), default="cli")
    parser.add_argument("--json-out", help="also write the JSON line to this file")
    args = parser.parse_args(argv)
    if min(args.jobs, args.processes, args.concurrency) < 1:
        parser.error("--jobs, --processes and --concurrency must be >= 1")
    return args


def run(db: Database[Doc], target: Target, args: argparse.Namespace) -> Report:
    """Enqueue, drain, measure the raw loop; return the report."""
    settings = QueueSettings(mongodb_uri=target.uri, mongodb_database=target.database)
    store = JobStore(db, settings)
    store.ensure_indexes()
    progress(f"enqueueing {args.jobs} bench.noop jobs")
    enqueue_s = enqueue_noops(store, args.jobs)
    progress(f"draining with {args.processes} process(es) x {args.concurrency} slots")
    drained = DRAINERS[args.drainer](target, args.processes, args.concurrency, args.jobs)
    fields = {"created_at": 1, "run_at": 1, "started_at": 1, "finished_at": 1}
    docs = list(store.done.find({"state": "succeeded"}, fields))
    if len(docs) != args.jobs:
        raise SystemExit(f"only {len(docs)} of {args.jobs} jobs succeeded")
    drain_s = (
        max(d["finished_at"] for d in docs) - min(d["started_at"] for d in docs)
    ).total_seconds()
    pickups = sorted(pickup_ms(d) for d in docs)
    progress(f"raw claim+ack loop over {args.jobs} documents")
    raw_s = raw_loop(db, args.jobs)
    jobs_per_s = args.jobs / drain_s
    raw_jobs_per_s = args.jobs / raw_s
    return Report(
        jobs=args.jobs, processes=args.processes, concurrency=args.concurrency,
        drainer=args.drainer,
        enqueue_jobs_per_s=round(args.jobs / enqueue_s, 1),
        drain_s=round(drain_s, 2), drain_wall_s=round(drained.wall_s, 2),
        jobs_per_s=round(jobs_per_s, 2), raw_s=round(raw_s, 2),
        raw_jobs_per_s=round(raw_jobs_per_s, 2),
        ratio_vs_raw=round(jobs_per_s / raw_jobs_per_s, 3),
        pickup_p50_ms=round(percentile(pickups, 0.50), 1),
        pickup_p99_ms=round(percentile(pickups, 0.99), 1),
        pickup_max_ms=round(pickups[-1], 1),
        commands_per_job=(
            round(sum(drained.commands.values()) / args.jobs, 3) if drained.commands else None
        ),
        commands=drained.commands,
    )  # fmt: skip


def enqueue_noops(store: JobStore, jobs: int) -> float:
    """Enqueue `jobs` bench.noop jobs in batches; return the seconds it took."""
    started = time.perf_counter()
    for first in range(0, jobs, ENQUEUE_BATCH):
        batch = min(ENQUEUE_BATCH, jobs - first)
        store.enqueue_many([EnqueueRequest("bench.noop") for _ in range(batch)])
    return time.perf_counter() - started


# -- drains -------------------------------------------------------------------------------------


def drain_with_cli_workers(
    target: Target, processes: int, concurrency: int, jobs: int
) -> DrainResult:
    """Run P `python -m queue_worker work` processes until all jobs succeeded; SIGTERM them."""
    env = dict(
        os.environ,
        MONGODB_URI=target.uri,
        MONGODB_DATABASE=target.database,
        QUEUE_ENABLE_BENCH_TASKS="1",
        PYTHONPATH=str(ROOT),
    )
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    workers: list[subprocess.Popen[bytes]] = []
    logs = [open(LOG_DIR / f"worker-{i}.log", "wb") for i in range(processes)]
    try:
        for log in logs:
            workers.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "queue_worker",
                        "work",
                        "--concurrency",
                        str(concurrency),
                    ],
                    cwd=ROOT,
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                )  # fmt: skip
            )
        wait_until_succeeded(target, jobs, workers)
        return DrainResult(wall_s=time.perf_counter() - started)
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.send_signal(signal.SIGTERM)
        for worker in workers:
            localdb.stop_process(worker, timeout_s=30)
        for log in logs:
            log.close()


DRAINERS: dict[str, Drainer] = {"cli": drain_with_cli_workers}


def wait_until_succeeded(target: Target, jobs: int, workers: list[subprocess.Popen[bytes]]) -> None:
    """Poll the finished collection until `jobs` jobs succeeded; fail if a worker exits early."""
    client: MongoClient[Doc] = MongoClient(target.uri, tz_aware=True)
    done = client[target.database][DONE]
    deadline = time.monotonic() + DRAIN_TIMEOUT_S
    try:
        while done.count_documents({"state": "succeeded"}) < jobs:
            dead = [w.pid for w in workers if w.poll() is not None]
            if dead:
                raise SystemExit(f"consumer process(es) {dead} exited early; see {LOG_DIR}")
            if time.monotonic() > deadline:
                raise SystemExit(f"jobs not drained within {DRAIN_TIMEOUT_S}s")
            time.sleep(POLL_S)
    finally:
        client.close()


# -- the raw baseline ---------------------------------------------------------------------------


def raw_loop(db: Database[Doc], jobs: int) -> float:
    """Time one client claiming (find_one_and_update) and acking (update_one) `jobs` documents."""
    raw = db[f"raw_{uuid.uuid4().hex[:8]}"]
    raw.create_index(
        [
            ("queue", ASCENDING),
            ("state", ASCENDING),
            ("priority", DESCENDING),
            ("run_at", ASCENDING),
        ]
    )
    now = datetime.now(UTC)
    raw.insert_many(
        [
            {"queue": "default", "task": "bench.noop", "payload": {}, "state": "pending",
             "priority": 0, "run_at": now, "attempts": 0, "created_at": now}
            for _ in range(jobs)
        ]
    )  # fmt: skip
    started = time.perf_counter()
    claimed = 0
    while True:
        at = datetime.now(UTC)
        doc = raw.find_one_and_update(
            {"queue": "default", "state": "pending", "run_at": {"$lte": at}},
            {"$set": {"state": "running", "lease_token": uuid.uuid4().hex, "started_at": at,
                      "lease_until": at + timedelta(seconds=30)}, "$inc": {"attempts": 1}},
            sort=[("priority", DESCENDING), ("run_at", ASCENDING)],
            return_document=ReturnDocument.AFTER,
        )  # fmt: skip
        if doc is None:
            break
        raw.update_one(
            {"_id": doc["_id"], "lease_token": doc["lease_token"]},
            {"$set": {"state": "succeeded", "finished_at": datetime.now(UTC)}},
        )
        claimed += 1
    elapsed = time.perf_counter() - started
    if claimed != jobs:
        raise SystemExit(f"raw loop claimed {claimed} of {jobs}")
    raw.drop()
    return elapsed


# -- helpers ------------------------------------------------------------------------------------


@contextmanager
def database_server() -> Iterator[str]:
    """Yield MONGODB_URI, or the URI of a local server started (and stopped) for this run."""
    external = os.environ.get("MONGODB_URI")
    if external:
        yield external
        return
    port = localdb.free_port()
    data_dir = ROOT / "var" / f"bench-db-{port}"
    server = localdb.start(port=port, data_dir=data_dir)
    try:
        yield server.uri()
    finally:
        server.stop()
        subprocess.run(["rm", "-rf", str(data_dir)], check=False)


def pickup_ms(doc: Doc) -> float:
    """Return how long a job waited from due to start, in milliseconds."""
    due = max(doc["created_at"], doc["run_at"])
    return max(0.0, (doc["started_at"] - due).total_seconds() * 1000)


def percentile(values: list[float], q: float) -> float:
    """Return the q-quantile of sorted `values` (nearest rank)."""
    if not values:
        return 0.0
    rank = min(len(values) - 1, max(0, round(q * len(values) + 0.5) - 1))
    return values[rank]


def progress(message: str) -> None:
    print(f"[{datetime.now(UTC):%H:%M:%S}] {message}", file=sys.stderr, flush=True)


def print_report(r: Report) -> None:
    """Print the results as a Markdown table."""
    rows = [
        ("jobs", f"{r.jobs}"),
        ("consumers", f"{r.processes} process(es) x {r.concurrency} slots ({r.drainer})"),
        ("enqueue (enqueue_many)", f"{r.enqueue_jobs_per_s} jobs/s"),
        ("drain window (first start to last finish)", f"{r.drain_s} s"),
        ("drain wall time (incl. process start-up)", f"{r.drain_wall_s} s"),
        ("**queue throughput**", f"**{r.jobs_per_s} jobs/s**"),
        ("raw claim+ack loop (1 client)", f"{r.raw_jobs_per_s} jobs/s ({r.raw_s} s)"),
        ("**ratio vs raw**", f"**{r.ratio_vs_raw}**"),
        (
            "pickup latency p50 / p99 / max",
            f"{r.pickup_p50_ms} / {r.pickup_p99_ms} / {r.pickup_max_ms} ms",
        ),
    ]
    print("| metric | value |")
    print("|---|---|")
    for name, value in rows:
        print(f"| {name} | {value} |")


if __name__ == "__main__":
    sys.exit(main())

"""Queue figures for the benchmark suite: drain through the supervisor, peers, idle pickup.

The drain itself is queue_bench.py's (its Report, raw loop and pickup definitions are kept): this
module adds a drainer that runs `python -m supervisor` instead of bare CLI consumers, the same
drain through dramatiq-mongodb and huey-mongodb (installed in var/bench-venv, never in the
project's requirements), and pickup latency on an idle queue.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import queue_bench
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

BENCH_VENV = VAR / "bench-venv"
PEER_REQUIREMENTS = ("dramatiq-mongodb==0.8.3", "huey-mongodb==1.1.1")
PEER_DRAIN = ROOT / "loadtests" / "peers" / "drain.py"
LOG_DIR = VAR / "bench"


def drain_with_supervisor(
    target: queue_bench.Target, processes: int, concurrency: int, jobs: int
) -> queue_bench.DrainResult:
    """Drain through `python -m supervisor --workers P --concurrency C`; SIGTERM it after. The
    database commands every process of the supervisor sent (mongodb_commands_total, client-side
    command monitoring) are summed from its metrics directory once it has stopped."""
    metrics = Path(tempfile.mkdtemp(prefix="bench-drain-metrics-"))
    env = project_env(
        target.uri,
        target.database,
        {"QUEUE_ENABLE_BENCH_TASKS": "1", "PROMETHEUS_MULTIPROC_DIR": str(metrics)},
    )
    started = time.perf_counter()
    supervisor = start_supervisor(
        env, LOG_DIR / "supervisor-drain.log", workers=processes, concurrency=concurrency
    )
    try:
        queue_bench.wait_until_succeeded(target, jobs, [supervisor.process])
        wall_s = time.perf_counter() - started
    finally:
        supervisor.stop(timeout_s=30)
    commands = commands_sent(metrics)
    shutil.rmtree(metrics, ignore_errors=True)
    return queue_bench.DrainResult(wall_s=wall_s, commands=commands)


def commands_sent(metrics_dir: Path) -> dict[str, float]:
    """Sum mongodb_commands_total by command over a stopped role's metrics directory."""
    from runtime.metrics_files import LockedMultiProcessCollector

    totals: dict[str, float] = {}
    for family in LockedMultiProcessCollector(str(metrics_dir)).collect():
        for sample in family.samples:
            if sample.name == "mongodb_commands_total":
                name = sample.labels["command"]
                totals[name] = totals.get(name, 0.0) + sample.value
    return totals


queue_bench.DRAINERS.setdefault("supervisor", drain_with_supervisor)


def our_drain(uri: str, jobs: int, workers: int, concurrency: int) -> dict[str, Any]:
    """Run queue_bench's measurement with the supervisor drainer; return its report fields."""
    from dataclasses import asdict

    target = queue_bench.Target(uri, f"bench_{uuid.uuid4().hex[:10]}")
    args = argparse.Namespace(
        jobs=jobs, processes=workers, concurrency=concurrency, drainer="supervisor"
    )
    client: MongoClient[dict[str, Any]] = MongoClient(uri, tz_aware=True)
    try:
        report = queue_bench.run(client[target.database], target, args)
    finally:
        client.drop_database(target.database)
        client.close()
    return asdict(report)


def ensure_bench_venv() -> Path:
    """Create var/bench-venv with the peer queues (once); return its python."""
    python = BENCH_VENV / "bin" / "python"
    stamp = BENCH_VENV / ".installed"
    wanted = "\n".join(PEER_REQUIREMENTS)
    if python.exists() and stamp.exists() and stamp.read_text() == wanted:
        return python
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(BENCH_VENV)], check=True)
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
         *PEER_REQUIREMENTS],
        check=True,
    )  # fmt: skip
    stamp.write_text(wanted)
    return python


def peer_versions() -> dict[str, str]:
    """Return the installed versions of the peer queues and their cores (for the report)."""
    python = ensure_bench_venv()
    listing = subprocess.run(
        [str(python), "-m", "pip", "list", "--format", "json", "--disable-pip-version-check"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    wanted = {"dramatiq", "dramatiq-mongodb", "huey", "huey-mongodb", "pymongo"}
    return {p["name"]: p["version"] for p in json.loads(listing.stdout) if p["name"] in wanted}


def peer_drain(system: str, uri: str, jobs: int, processes: int) -> dict[str, Any]:
    """Drain `jobs` no-op jobs through a peer queue on the same server; return its figures."""
    python = ensure_bench_venv()
    database = f"peer_{system}_{uuid.uuid4().hex[:8]}"
    argv = [str(python), str(PEER_DRAIN), system, "--uri", uri, "--database", database,
            "--jobs", str(jobs), "--processes", str(processes),
            "--log", str(LOG_DIR / f"{system}.log")]  # fmt: skip
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=1800)
    finally:
        client: MongoClient[dict[str, Any]] = MongoClient(uri)
        client.drop_database(database)
        client.close()
    if done.returncode != 0:
        raise RuntimeError(f"{system} drain failed:\n{done.stdout}\n{done.stderr}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def idle_pickup(uri: str, samples: int, workers: int, concurrency: int) -> dict[str, Any]:
    """Enqueue one job at a time into an idle queue; measure due → started (default polling)."""
    from queue_worker.settings import QueueSettings
    from queue_worker.store import JobStore

    database = f"pickup_{uuid.uuid4().hex[:8]}"
    env = project_env(uri, database, {"QUEUE_ENABLE_BENCH_TASKS": "1"})
    settings = QueueSettings.from_env({"MONGODB_URI": uri, "MONGODB_DATABASE": database})
    client: MongoClient[dict[str, Any]] = MongoClient(uri, tz_aware=True)
    store = JobStore(client[database], settings)
    store.ensure_indexes()
    supervisor = start_supervisor(
        env, LOG_DIR / "supervisor-pickup.log", workers=workers, concurrency=concurrency
    )
    rng = random.Random(1)
    pickups: list[float] = []
    try:
        wait_until(lambda: len(consumer_children(supervisor.pid)) >= workers, 60, what="consumers")
        time.sleep(2.0)  # let every consumer reach its idle (longest) poll interval
        for _ in range(samples):
            pickups.append(_one_pickup_ms(store))
            time.sleep(rng.uniform(0.5, 2.0))  # an idle gap: consumers back off again
    finally:
        supervisor.stop(timeout_s=30)
        client.drop_database(database)
        client.close()
    return {
        "idle_pickup_samples": len(pickups),
        "idle_pickup_p50_ms": round(percentile(pickups, 50), 1),
        "idle_pickup_p99_ms": round(percentile(pickups, 99), 1),
        "idle_pickup_max_ms": round(max(pickups), 1),
        "poll_max_s": settings.poll_max_s,
    }


def _one_pickup_ms(store: Any) -> float:
    """Enqueue one no-op job, wait until it has started, return its due → start time in ms."""
    job_id = store.enqueue("bench.noop").id
    started: list[Any] = []

    def has_started() -> bool:
        job = store.get(job_id)
        if job is not None and job.started_at is not None:
            started.append(job)
        return bool(started)

    wait_until(has_started, 30, interval_s=0.05, what="pickup")
    job = started[0]
    return float((job.started_at - max(job.created_at, job.run_at)).total_seconds() * 1000)

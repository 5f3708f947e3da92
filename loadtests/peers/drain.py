"""Drain N no-op jobs through dramatiq-mongodb or huey-mongodb on a given server; print JSON.

    var/bench-venv/bin/python loadtests/peers/drain.py {dramatiq,huey} --uri URI --database DB \
        --jobs N [--processes 2] [--threads T]

Enqueues N jobs with the library's own API while no worker runs, starts the library's own worker
command, and polls every 0.1 s until every job is done: for dramatiq when N messages are in state
DONE (its ack), for huey when its queue is empty (huey has no ack: its claim deletes the message,
so a no-op job is done microseconds later). Like queue_bench.py, jobs/s is over the drain window
(first job seen done → last job done, so worker boot is left out, to within one poll) and the wall
time from launching the workers is reported beside it. Last output line: one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from pymongo import MongoClient

HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent
POLL_S = 0.1


def worker_command(system: str, processes: int, threads: int) -> list[str]:
    if system == "dramatiq":
        return [
            str(BIN / "dramatiq"),
            "dramatiq_app",
            "--processes",
            str(processes),
            "--threads",
            str(threads),
            "--path",
            str(HERE),
            "--queues",
            "bench",
        ]
    return [
        str(BIN / "huey_consumer"),
        "huey_app.huey",
        "-k",
        "process",
        "-w",
        str(processes),
        "-C",
    ]


def done_count(system: str, db: object, jobs: int) -> int:
    if system == "dramatiq":
        return db["bench"].count_documents({"state": "DONE"})  # type: ignore[index]
    return jobs - db["huey_queue"].count_documents({})  # type: ignore[index]


def enqueue(system: str, jobs: int) -> float:
    started = time.perf_counter()
    if system == "dramatiq":
        import dramatiq_app

        for _ in range(jobs):
            dramatiq_app.noop.send()
    else:
        import huey_app

        for _ in range(jobs):
            huey_app.noop()
    return jobs / (time.perf_counter() - started)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("system", choices=["dramatiq", "huey"])
    parser.add_argument("--uri", required=True)
    parser.add_argument("--database", required=True)
    parser.add_argument("--jobs", type=int, default=300)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--threads", type=int, default=8, help="dramatiq threads per process")
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument("--log", type=Path, default=None)
    args = parser.parse_args()
    os.environ["PEER_MONGODB_URI"] = args.uri
    os.environ["PEER_MONGODB_DATABASE"] = args.database
    sys.path.insert(0, str(HERE))
    client: MongoClient = MongoClient(args.uri)
    db = client[args.database]
    enqueue_per_s = enqueue(args.system, args.jobs)
    env = dict(os.environ, PYTHONPATH=str(HERE))
    log = open(args.log or os.devnull, "ab")
    started = time.perf_counter()
    workers = subprocess.Popen(
        worker_command(args.system, args.processes, args.threads),
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    done = 0
    first_done: float | None = None
    done_at_first = 0
    try:
        while time.perf_counter() - started < args.timeout:
            done = done_count(args.system, db, args.jobs)
            if done and first_done is None:
                first_done, done_at_first = time.perf_counter(), done
            if done >= args.jobs or workers.poll() is not None:
                break
            time.sleep(POLL_S)
        finished = time.perf_counter()
        elapsed = finished - started
    finally:
        if workers.poll() is None:
            os.killpg(workers.pid, signal.SIGTERM)
            try:
                workers.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(workers.pid, signal.SIGKILL)
                workers.wait()
        client.close()
    window = finished - first_done if first_done is not None else 0.0
    result = {
        "system": args.system,
        "jobs": args.jobs,
        "done": done,
        "processes": args.processes,
        "threads": args.threads if args.system == "dramatiq" else 1,
        "wall_s": round(elapsed, 2),
        "drain_s": round(window, 2),
        "jobs_per_s": round((done - done_at_first) / window, 2) if window > 0 else 0.0,
        "wall_jobs_per_s": round(done / elapsed, 2) if elapsed else 0.0,
        "enqueue_per_s": round(enqueue_per_s, 1),
    }
    print(json.dumps(result), flush=True)
    return 0 if done >= args.jobs else 1


if __name__ == "__main__":
    sys.exit(main())

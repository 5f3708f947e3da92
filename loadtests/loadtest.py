"""`make loadtest`: a headless Locust run against the whole service, failing on thresholds.

    python loadtests/loadtest.py [--users 10] [--spawn-rate 2] [--run-time 60s]
                                 [--host URL] [--classes MixedUser ...] [-- locust options]

Without --host it starts a local database, the API under gunicorn and the supervisor (bench
tasks enabled so JobProducer can submit `bench.sleep`), and stops them afterwards. Locust runs
pinned to the last CPU at lower priority (nice 10) so it cannot starve the server; the CPU both
sides actually used is printed as "cores". Reports: var/loadtest/{run_stats.csv, ...,
report.html}. The exit code is Locust's: 0, or non-zero when a threshold of the locustfile
(error ratio, p95/p99 per endpoint, job end-to-end latency) is breached.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from harness import PYTHON, ROOT, VAR
from stack import Stack, cpu_count, start_stack, tree_cpu_s

OUT_DIR = VAR / "loadtest"
LOCUSTFILE = ROOT / "loadtests" / "locustfile.py"


def parse_args(argv: list[str] | None) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=10)
    parser.add_argument("--spawn-rate", type=float, default=2.0)
    parser.add_argument("--run-time", default="60s")
    parser.add_argument("--host", default=None, help="test this API instead of starting one")
    parser.add_argument("--classes", nargs="*", default=["MixedUser"], help="user classes")
    parser.add_argument("--api-workers", type=int, default=cpu_count())
    parser.add_argument("--consumers", type=int, default=cpu_count())
    parser.add_argument("--locust-cpus", default=str(cpu_count() - 1), help="taskset CPU list")
    parser.add_argument("--out", type=Path, default=OUT_DIR)
    return parser.parse_known_args(argv)


def locust_command(args: argparse.Namespace, host: str, extra: list[str]) -> list[str]:
    """Return the pinned, niced headless Locust command line."""
    argv = [
        PYTHON, "-m", "locust", "-f", str(LOCUSTFILE), "--headless",
        "--host", host, "--users", str(args.users), "--spawn-rate", str(args.spawn_rate),
        "--run-time", args.run_time, "--stop-timeout", "10",
        "--csv", str(args.out / "run"), "--html", str(args.out / "report.html"),
        "--only-summary", *[e for e in extra if e != "--"], *args.classes,
    ]  # fmt: skip
    prefix = ["nice", "-n", "10"]
    if args.locust_cpus and shutil.which("taskset"):
        prefix += ["taskset", "-c", args.locust_cpus]
    return prefix + argv


def run(args: argparse.Namespace, extra: list[str]) -> int:
    """Start the stack unless --host, run Locust, print where the CPU went; return its code."""
    args.out.mkdir(parents=True, exist_ok=True)
    stack: Stack | None = None
    if args.host is None:
        print("starting database, API (gunicorn) and supervisor ...", flush=True)
        stack = start_stack(args.out / "stack", api_workers=args.api_workers,
                            consumers=args.consumers)  # fmt: skip
    host = args.host or (stack.url if stack else "")
    try:
        server_pids = stack.server_pids() if stack else []
        server_before = tree_cpu_s(server_pids)
        reaped_before = _reaped_cpu()
        started = time.monotonic()
        env = dict(os.environ, PYTHONPATH=str(ROOT / "loadtests"))
        locust = subprocess.Popen(locust_command(args, host, extra), cwd=ROOT, env=env)
        code = locust.wait()
        wall = time.monotonic() - started
        locust_cpu = _reaped_cpu() - reaped_before
        server_cpu = tree_cpu_s(server_pids) - server_before
    finally:
        if stack is not None:
            stack.stop()
    cores = {
        "machine_cores": cpu_count(),
        "locust_cpus": args.locust_cpus,
        "locust_cores_used": round(locust_cpu / wall, 2),
        "server_cores_used": round(server_cpu / wall, 2) if server_pids else None,
        "wall_s": round(wall, 1),
        "exit_code": code,
    }
    print(f"cores used: locust {cores['locust_cores_used']} (pinned to CPU {args.locust_cpus}), "
          f"server {cores['server_cores_used']} of {cores['machine_cores']}")  # fmt: skip
    (args.out / "cores.json").write_text(json.dumps(cores, indent=2) + "\n")
    print(json.dumps(cores), flush=True)
    return code


def _reaped_cpu() -> float:
    """Return CPU seconds of this process's reaped children (Locust, once it has exited)."""
    times = os.times()
    return times.children_user + times.children_system


def main(argv: list[str] | None = None) -> int:
    args, extra = parse_args(argv)
    return run(args, extra)


if __name__ == "__main__":
    sys.exit(main())

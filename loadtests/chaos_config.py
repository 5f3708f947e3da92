"""The chaos run's configuration: every knob has a flag, and the defaults are the documented run.

Defaults: 2000 recorded `bench.sleep` jobs of 10–200 ms, 2 consumers x 4 slots, a SIGKILL every
second, the database killed at 40 % done and back after 2 s, SIGTERM at 85 %, lease 5 s, a job
goes dead as poison after 5 crashes.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path

from harness import VAR

OUT_DIR = VAR / "chaos"
DEFAULT_PORT = 27127  # fixed, so the killed server comes back where the consumers look for it


@dataclass(frozen=True)
class ChaosConfig:
    jobs: int
    kill_interval_s: float
    workers: int
    concurrency: int
    db_restart: bool
    seed: int
    min_ms: int
    max_ms: int
    lease_s: float
    poison_crashes: int
    db_down_s: float
    restart_at: float
    term_at: float
    graceful_timeout_s: float
    stall_timeout_s: float
    port: int
    data_dir: Path
    out_dir: Path
    supervisor_args: tuple[str, ...]


def parse_args(argv: list[str] | None) -> ChaosConfig:
    parser = argparse.ArgumentParser(
        prog="chaos.py",
        description="Chaos run: drain recorded jobs through the supervisor while its consumers "
        "keep being killed, the database restarts once, and the supervisor gets SIGTERM.",
    )
    arg = parser.add_argument
    arg("--jobs", type=int, default=2000, help="recorded bench.sleep jobs (default 2000)")
    arg("--kill-interval", type=float, default=1.0, help="seconds between SIGKILLs (default 1)")
    arg("--workers", type=int, default=2, help="consumer processes (default 2)")
    arg("--concurrency", type=int, default=4, help="slots per consumer (default 4)")
    arg("--no-db-restart", action="store_true", help="do not kill and restart the database")
    arg("--seed", type=int, default=None, help="random seed (default: time based, printed)")
    arg("--min-ms", type=int, default=10, help="shortest job duration in ms (default 10)")
    arg("--max-ms", type=int, default=200, help="longest job duration in ms (default 200)")
    arg("--lease", type=float, default=5.0, help="QUEUE_LEASE_S for the consumers (default 5)")
    arg("--poison-crashes", type=int, default=5, help="QUEUE_POISON_CRASHES (default 5)")
    arg("--db-down", type=float, default=2.0, help="seconds the database stays down (default 2)")
    arg("--restart-at", type=float, default=0.4, help="fraction done at the database restart")
    arg("--term-at", type=float, default=0.85, help="fraction done when SIGTERM is sent")
    arg("--graceful-timeout", type=float, default=10.0, help="supervisor --graceful-timeout")
    arg("--stall-timeout", type=float, default=120.0, help="give up after this long w/o progress")
    arg("--port", type=int, default=DEFAULT_PORT, help=f"local database port ({DEFAULT_PORT})")
    arg("--out", type=Path, default=OUT_DIR, help="logs and last.json go here (var/chaos)")
    arg("--data-dir", type=Path, default=None, help="local database data dir (OUT/db)")
    arg("--supervisor-arg", action="append", default=[], help="extra supervisor option")
    args = parser.parse_args(argv)
    if args.jobs < 1 or args.workers < 1 or args.concurrency < 1 or args.kill_interval <= 0:
        parser.error("--jobs, --workers, --concurrency and --kill-interval must be positive")
    if not 0 < args.restart_at < args.term_at < 1:
        parser.error("need 0 < --restart-at < --term-at < 1")
    seed = args.seed if args.seed is not None else int(time.time())
    return ChaosConfig(
        args.jobs,
        args.kill_interval,
        args.workers,
        args.concurrency,
        not args.no_db_restart,
        seed,
        args.min_ms,
        max(args.min_ms, args.max_ms),
        args.lease,
        args.poison_crashes,
        args.db_down,
        args.restart_at,
        args.term_at,
        args.graceful_timeout,
        args.stall_timeout,
        args.port,
        args.data_dir or args.out / "db",
        args.out,
        tuple(args.supervisor_arg),
    )

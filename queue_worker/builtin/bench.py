"""Benchmark and chaos tasks, registered only by `register_bench_tasks` (bench flag set).

    bench.noop   returns at once
    bench.sleep  sleeps payload["ms"] milliseconds (stops early once the job should stop, unless
                 payload["ignore_stop"] is true: that simulates a hung handler)
    bench.fail   always raises a retryable error
    bench.crash  kills its own process with SIGKILL: no `finally`, no atexit, no lease release,
                 exactly what the OOM killer or a segfault leaves behind

With payload {"record": true} every execution inserts one document (job id, lease token, attempt,
pid, time) into `bench_runs`, before doing its work, so a chaos run counts executions per job.
"""

from __future__ import annotations

import os
import signal
import time
from datetime import UTC, datetime
from typing import Any

from queue_worker.errors import NonRetryableError
from queue_worker.tasks import DATABASE, Handler, TaskContext, TaskRegistry

BENCH_RUNS = "bench_runs"
SLEEP_SLICE_S = 0.05


class BenchFailure(Exception):
    """The retryable error bench.fail raises on every attempt."""


def record_run(payload: dict[str, Any], ctx: TaskContext, task_name: str) -> None:
    """Insert one execution record into `bench_runs` when the payload asks for it."""
    if not payload.get("record"):
        return
    ctx.resource(DATABASE)[BENCH_RUNS].insert_one(
        {
            "job_id": ctx.job_id,
            "task": task_name,
            "lease_token": ctx.lease_token,
            "attempt": ctx.attempt,
            "pid": os.getpid(),
            "at": datetime.now(UTC),
        }
    )


def noop(payload: dict[str, Any], ctx: TaskContext) -> None:
    """Do nothing (after recording the run if asked)."""
    record_run(payload, ctx, "bench.noop")


def sleep(payload: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
    """Sleep payload["ms"] milliseconds in short slices, stopping early when told to."""
    ms = payload.get("ms", 0)
    if isinstance(ms, bool) or not isinstance(ms, int | float) or ms < 0:
        raise NonRetryableError("payload field 'ms' must be a number >= 0")
    record_run(payload, ctx, "bench.sleep")
    ignore_stop = bool(payload.get("ignore_stop"))
    started = time.monotonic()
    deadline = started + ms / 1000
    while (left := deadline - time.monotonic()) > 0:
        if not ignore_stop and ctx.should_stop():
            return {"slept_ms": round((time.monotonic() - started) * 1000), "stopped": True}
        time.sleep(min(SLEEP_SLICE_S, left))
    return {"slept_ms": round((time.monotonic() - started) * 1000), "stopped": False}


def fail(payload: dict[str, Any], ctx: TaskContext) -> None:
    """Raise a retryable error, every time."""
    record_run(payload, ctx, "bench.fail")
    raise BenchFailure(f"bench.fail always fails (attempt {ctx.attempt})")


def crash(payload: dict[str, Any], ctx: TaskContext) -> None:
    """Kill the current process with SIGKILL, mid-job."""
    record_run(payload, ctx, "bench.crash")
    os.kill(os.getpid(), signal.SIGKILL)


BENCH_TASKS: dict[str, Handler] = {
    "bench.noop": noop,
    "bench.sleep": sleep,
    "bench.fail": fail,
    "bench.crash": crash,
}


def register_bench_tasks(registry: TaskRegistry) -> None:
    """Register every bench.* task with `registry` (idempotent)."""
    for name, handler in BENCH_TASKS.items():
        # Short timeouts and few attempts: a benchmark must not wait minutes on a stuck job.
        registry.task(
            name,
            timeout_s=60,
            max_attempts=3 if name != "bench.noop" else None,
            uses=(DATABASE,),
        )(handler)

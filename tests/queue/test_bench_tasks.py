"""The gated benchmark tasks: registered only on request, recording runs, stopping, crashing."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from bson import ObjectId
from pymongo.database import Database
from task_context import TaskCtx

from queue_worker.builtin import register_bench_tasks
from queue_worker.builtin.bench import BENCH_RUNS, BenchFailure
from queue_worker.errors import NonRetryableError
from queue_worker.tasks import DATABASE, TaskRegistry

ROOT = Path(__file__).resolve().parents[2]


def test_bench_tasks_are_registered_only_on_request() -> None:
    """register_bench_tasks registers the four bench tasks, idempotently (that importing task
    modules registers none is checked in a fresh interpreter by test_cli)."""
    own = TaskRegistry()
    register_bench_tasks(own)
    register_bench_tasks(own)  # idempotent
    assert own.names() == ["bench.crash", "bench.fail", "bench.noop", "bench.sleep"]


def test_bench_tasks_record_each_execution_when_asked(db: Database[Any]) -> None:
    """bench.noop/fail record one bench_runs document per execution with {"record": true}."""
    own = TaskRegistry()
    register_bench_tasks(own)
    ctx = TaskCtx(str(ObjectId()), {DATABASE.name: db}, lease_token="t-9", attempt=2)
    own.get("bench.noop").handler({"record": True}, ctx)
    own.get("bench.noop").handler({}, ctx)
    with pytest.raises(BenchFailure):
        own.get("bench.fail").handler({"record": True}, ctx)
    runs = list(db[BENCH_RUNS].find({}, {"_id": 0, "task": 1, "job_id": 1, "lease_token": 1}))
    assert runs == [
        {"task": "bench.noop", "job_id": ctx.job_id, "lease_token": "t-9"},
        {"task": "bench.fail", "job_id": ctx.job_id, "lease_token": "t-9"},
    ]


def test_bench_sleep_stops_early_when_the_job_should_stop() -> None:
    """bench.sleep returns as soon as should_stop() is true, unless told to ignore it."""
    own = TaskRegistry()
    register_bench_tasks(own)
    handler = own.get("bench.sleep").handler
    stopped = handler({"ms": 60_000}, TaskCtx("j", stop=True))
    assert stopped["stopped"] is True and stopped["slept_ms"] < 1000
    assert handler({"ms": 1}, TaskCtx("j"))["stopped"] is False
    with pytest.raises(NonRetryableError):
        handler({"ms": "soon"}, TaskCtx("j"))


def test_bench_crash_kills_its_own_process_with_sigkill() -> None:
    """bench.crash ends its process by SIGKILL, leaving no chance for cleanup code."""
    code = (
        "from queue_worker.tasks import TaskRegistry\n"
        "from queue_worker.builtin import register_bench_tasks\n"
        "r = TaskRegistry(); register_bench_tasks(r)\n"
        "try:\n    r.get('bench.crash').handler({}, None)\n"
        "finally:\n    print('cleanup ran')\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == -signal.SIGKILL
    assert "cleanup ran" not in proc.stdout

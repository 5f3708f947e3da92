"""`python -m queue_worker schedules`: list, pause, resume, trigger and validate, as real
subprocesses over the schedules a task module defines."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import schedule_defs  # noqa: F401 - defines the schedules this process syncs
from bson import ObjectId
from pymongo.database import Database

from queue_worker.schedules import registry
from queue_worker.schedules.scheduler import Scheduler
from queue_worker.settings import QueueSettings
from queue_worker.store import JobStore

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def env(mongo_env: dict[str, str]) -> dict[str, str]:
    return {
        **mongo_env,
        "QUEUE_TASK_MODULES": "schedule_defs",
        "QUEUE_ENABLE_BENCH_TASKS": "1",
        "PYTHONPATH": f"{ROOT}:{ROOT / 'tests' / 'helpers'}",
    }


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "queue_worker", "schedules", *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def listed(env: dict[str, str]) -> dict[str, Any]:
    result = run(env, "list", "--json")
    assert result.returncode == 0, result.stderr
    return {row["name"]: row for row in json.loads(result.stdout)}


def test_list_shows_the_next_runs_in_local_time_and_utc(env: dict[str, str]) -> None:
    rows = listed(env)
    nightly = rows["test.nightly"]
    assert nightly["state"].startswith("not started")
    assert len(nightly["next"]) == 5
    first = nightly["next"][0]
    assert first["local"].endswith(("02:30:00 CET", "02:30:00 CEST", "03:00:00 CEST"))
    assert first["utc"].endswith(("01:30:00Z", "00:30:00Z", "01:00:00Z"))
    text = run(env).stdout  # `schedules` alone lists
    assert "test.nightly" in text and "cron '30 2 * * *' in Europe/Berlin" in text


def test_pause_resume_and_trigger(env: dict[str, str], db: Database[Any]) -> None:
    settings = QueueSettings.from_env(env)
    store = JobStore(db, settings)
    store.ensure_indexes()
    Scheduler(store, registry.all()).sync(datetime.now(UTC))
    until = "2099-01-01T00:00:00+00:00"
    assert run(env, "pause", "test.latest", "--until", until).returncode == 0
    assert listed(env)["test.latest"]["state"] == "paused until 2099-01-01T00:00:00+00:00"
    assert run(env, "resume", "test.latest").returncode == 0
    assert listed(env)["test.latest"]["state"] == "active"
    triggered = run(env, "trigger", "test.nightly")
    assert triggered.returncode == 0, triggered.stderr
    job = db.jobs.find_one({"_id": ObjectId(triggered.stdout.strip())})
    assert job is not None and job["schedule"] == "test.nightly" and job["task"] == "bench.noop"
    last = listed(env)["test.nightly"]["last"]
    assert last[-1]["outcome"] == "triggered" and last[-1]["job_state"] == "pending"
    assert run(env, "pause", "nope").returncode == 1
    assert run(env, "trigger", "nope").returncode == 2
    assert run(env, "pause", "test.latest", "--until", "tomorrow").returncode == 2


def test_validate_accepts_good_definitions_and_names_bad_ones(env: dict[str, str]) -> None:
    good = run(env, "validate")
    assert good.returncode == 0 and "3 schedule(s), 0 problem(s)" in good.stdout
    bad = run({**env, "QUEUE_TASK_MODULES": "schedule_defs_bad"}, "validate")
    assert bad.returncode == 1
    assert "bad.unknown_task: no task named 'no.such.task'" in bad.stderr
    assert "bad.too_often: cron '* * * * *' in UTC fires every 60 s" not in bad.stderr
    stricter = run({**env, "QUEUE_TASK_MODULES": "schedule_defs_bad"}, "validate",
                   "--min-interval", "300")  # fmt: skip
    assert "bad.too_often: cron '* * * * *' in UTC fires every 60 s" in stricter.stderr

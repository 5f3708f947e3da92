"""`python -m queue_worker`: every command as a real subprocess, bad input in-process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from bson import ObjectId
from pymongo.database import Database
from waiting import wait_until

from queue_worker.__main__ import main
from queue_worker.layout import BACKLOG, DONE, IN_MOVE_ORDER, JOBS

ROOT = Path(__file__).resolve().parents[2]
DEADLINE_S = 30.0


def cli(env: Mapping[str, str], *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run the CLI as a subprocess and return its result."""
    proc = subprocess.run(
        [sys.executable, "-m", "queue_worker", *args],
        cwd=ROOT, env=dict(env), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def job(db: Database[Any], job_id: str) -> dict[str, Any]:
    for name in IN_MOVE_ORDER:
        doc = db[name].find_one({"_id": ObjectId(job_id)})
        if doc is not None:
            return doc
    raise AssertionError(f"no job {job_id}")


def make_dead(db: Database[Any], job_id: str) -> None:
    """Put a new (backlog) job straight into `jobs` as dead, as an exhausted job would be."""
    doc = db[BACKLOG].find_one_and_delete({"_id": ObjectId(job_id)})
    assert doc is not None
    dead = {"state": "dead", "dead_reason": "exhausted", "attempts": 5,
            "finished_at": doc["created_at"]}  # fmt: skip
    db[JOBS].insert_one(doc | dead)


def test_enqueue_prints_the_id_of_a_stored_job(
    mongo_env: dict[str, str], db: Database[Any]
) -> None:
    """enqueue stores a pending job with every option given and prints its id."""
    out = cli(
        mongo_env, "enqueue", "user.login", "--payload", '{"user_id": "u1"}', "--queue", "audit",
        "--priority", "7", "--delay", "60", "--max-attempts", "2", "--timeout", "9",
        "--idempotency-key", "login-1",
    ).stdout.strip()  # fmt: skip
    doc = job(db, out)
    assert (doc["task"], doc["queue"], doc["state"], doc["priority"]) == (
        "user.login", "audit", "pending", 7,
    )  # fmt: skip
    assert (doc["max_attempts"], doc["timeout_s"], doc["payload"]) == (2, 9.0, {"user_id": "u1"})
    assert (doc["run_at"] - doc["created_at"]).total_seconds() == pytest.approx(60, abs=1)
    again = cli(mongo_env, "enqueue", "user.login", "--idempotency-key", "login-1").stdout
    assert again.strip() == out


def test_stats_and_list_show_the_jobs(mongo_env: dict[str, str], db: Database[Any]) -> None:
    """stats (table and JSON) counts jobs per queue and state; list shows them."""
    ids = [cli(mongo_env, "enqueue", "user.login").stdout.strip() for _ in range(2)]
    stats = json.loads(cli(mongo_env, "stats", "--json").stdout)
    assert stats["queues"]["default"]["counts"]["pending"] == 2
    assert stats["queues"]["default"]["oldest_due_age_s"] >= 0
    table = cli(mongo_env, "stats").stdout
    assert table.splitlines()[0].split()[:3] == ["queue", "pending", "running"]
    listed = json.loads(cli(mongo_env, "list", "--state", "pending", "--json").stdout)
    assert [row["id"] for row in listed] == ids[::-1]
    assert ids[0] in cli(mongo_env, "list", "--limit", "5").stdout


def test_cancel_retry_and_purge(mongo_env: dict[str, str], db: Database[Any]) -> None:
    """cancel a pending job, retry a dead one (and all dead), purge finished ones."""
    first, second, third = (cli(mongo_env, "enqueue", "user.login").stdout.strip() for _ in "abc")
    assert cli(mongo_env, "cancel", first).stdout.strip() == f"{first} cancelled"
    assert job(db, first)["state"] == "cancelled"
    make_dead(db, second)
    make_dead(db, third)
    assert cli(mongo_env, "retry", second).stdout.strip() == f"{second} pending"
    assert job(db, second)["attempts"] == 0
    assert "revived 1 dead jobs" in cli(mongo_env, "retry", "--all-dead").stdout
    assert job(db, third)["state"] == "pending"
    dry = cli(mongo_env, "purge", "--state", "cancelled").stdout
    assert "would delete 1 cancelled jobs" in dry and db[DONE].count_documents({}) == 1
    assert "deleted 1" in cli(mongo_env, "purge", "--state", "cancelled", "--yes").stdout
    assert db[DONE].count_documents({}) == 0


def test_work_runs_jobs_and_drains_on_sigterm(
    mongo_env: dict[str, str], db: Database[Any], tmp_path: Path
) -> None:
    """work runs jobs; SIGTERM drains it, releasing an unfinished job without counting it."""
    metrics_dir = tmp_path / "prom"  # created by the entry point, not by the caller
    env = dict(mongo_env, QUEUE_ENABLE_BENCH_TASKS="1", QUEUE_POLL_MAX_S="0.1")
    env["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
    quick = cli(env, "enqueue", "bench.noop").stdout.strip()
    slow = cli(env, "enqueue", "bench.sleep", "--payload", '{"ms": 60000}').stdout.strip()
    worker = subprocess.Popen(
        [sys.executable, "-m", "queue_worker", "work", "--concurrency", "2",
         "--drain-timeout", "0.2"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        wait_until(lambda: job(db, quick)["state"] == "succeeded", what="the quick job to succeed")
        wait_until(lambda: job(db, slow)["state"] == "running", what="the slow job to start")
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=DEADLINE_S) == 0
    finally:
        if worker.poll() is None:
            worker.kill()
        _, stderr = worker.communicate()
    released = job(db, slow)
    assert released["state"] == "pending", stderr
    assert released["attempts"] == 0  # a release does not count the attempt
    assert "stopped after" in stderr
    assert list(metrics_dir.glob("counter_*.db")), "no metrics written in multiprocess mode"


def test_bench_tasks_exist_only_with_the_flag(mongo_env: dict[str, str]) -> None:
    """enqueue refuses bench.* unless QUEUE_ENABLE_BENCH_TASKS=1; imports register none."""
    refused = cli(mongo_env, "enqueue", "bench.noop", check=False)
    assert refused.returncode == 2 and "no task named 'bench.noop'" in refused.stderr
    cli(dict(mongo_env, QUEUE_ENABLE_BENCH_TASKS="1"), "enqueue", "bench.noop")
    code = (
        "import api.tasks, queue_worker.builtin, queue_worker.tasks as t; print(t.registry.names())"
    )
    names = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=mongo_env, capture_output=True, text=True
    ).stdout
    assert "user.created" in names and "bench." not in names


# -- bad input, in-process (fast): exit code and message, nothing written -------------------


@pytest.mark.parametrize(
    ("argv", "code", "message"),
    [
        (["enqueue", "user.login", "--payload", "{not json"], 2, "not valid JSON"),
        (["enqueue", "user.login", "--payload", "[1, 2]"], 2, "must be a JSON object"),
        (["enqueue", "no.such.task"], 2, "no task named 'no.such.task'"),
        (["enqueue", "user.login", "--delay", "-1"], 2, "must be >= 0"),
        (["enqueue", "user.login", "--max-attempts", "0"], 2, "must be >= 1"),
        (["enqueue", "user.login", "--priority", "high"], 2, "invalid int value"),
        (["cancel", "not-an-id"], 2, "is not a job id"),
        (["retry", "1234"], 2, "is not a job id"),
        (["retry"], 2, "one of the arguments"),
        (["retry", "--queue", "q", "--all-dead", "000000000000000000000000"], 2, "not allowed"),
        (["list", "--state", "zombie"], 2, "unknown state"),
        (["purge", "--state", "pending", "--yes"], 2, "refusing to purge pending"),
        (["purge", "--state", "running"], 2, "refusing to purge running"),
        (["purge"], 2, "required"),
        (["frobnicate"], 2, "invalid choice"),
    ],
)
def test_bad_arguments_exit_2_and_write_nothing(
    argv: list[str], code: int, message: str, mongo_env: dict[str, str], db: Database[Any],
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    """Malformed arguments exit with code 2, a clear message on stderr, and no write."""
    try:
        result = main(argv, mongo_env)
    except SystemExit as exc:  # argparse's own errors
        result = int(exc.code or 0)
    assert result == code
    assert message in capsys.readouterr().err
    assert db[BACKLOG].count_documents({}) + db[JOBS].count_documents({}) == 0


@pytest.mark.parametrize("command", ["cancel", "retry"])
def test_unknown_job_id_exits_1(
    command: str, mongo_env: dict[str, str], db: Database[Any], capsys: pytest.CaptureFixture[str]
) -> None:
    """cancel/retry of a well-formed id that no job has exits 1 and says so."""
    assert main([command, str(ObjectId())], mongo_env) == 1
    assert "no job with id" in capsys.readouterr().err


def test_wrong_state_exits_1_and_changes_nothing(
    mongo_env: dict[str, str], db: Database[Any], capsys: pytest.CaptureFixture[str]
) -> None:
    """retry of a pending job and cancel of a cancelled job exit 1 without changing the job."""
    assert main(["enqueue", "user.login"], mongo_env) == 0
    job_id = capsys.readouterr().out.strip()
    assert main(["retry", job_id], mongo_env) == 1
    assert "only dead jobs retry" in capsys.readouterr().err
    assert main(["cancel", job_id], mongo_env) == 0
    assert main(["cancel", job_id], mongo_env) == 1
    assert "only pending jobs can be cancelled" in capsys.readouterr().err


def test_bad_configuration_exits_2(
    mongo_env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    """A bad setting in the environment is reported with its name and exit code 2."""
    assert main(["stats"], dict(mongo_env, QUEUE_LEASE_S="soon")) == 2
    assert "QUEUE_LEASE_S" in capsys.readouterr().err


def test_unreachable_database_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    """With no database answering, a command fails with exit code 1 and a database message."""
    import localdb

    env = dict(
        os.environ, MONGODB_URI=f"mongodb://127.0.0.1:{localdb.free_port()}/x?directConnection=true"
    )
    env["QUEUE_ENABLE_BENCH_TASKS"] = "0"
    assert main(["stats"], env) == 1
    assert "database:" in capsys.readouterr().err


def test_run_now_delete_pause_and_resume(mongo_env: dict[str, str], db: Database[Any]) -> None:
    """The dashboard's actions from a shell: the same operations, the same refusals."""
    later = cli(mongo_env, "enqueue", "user.login", "--delay", "3600").stdout.strip()
    assert cli(mongo_env, "run-now", later).stdout.strip() == f"{later} due now"
    again = cli(mongo_env, "run-now", later, check=False)
    assert again.returncode == 1 and "not pending for later" in again.stderr
    refused = cli(mongo_env, "delete", later, check=False)
    assert refused.returncode == 1 and job(db, later)["state"] == "pending"
    dead = cli(mongo_env, "enqueue", "user.login").stdout.strip()
    make_dead(db, dead)
    assert cli(mongo_env, "delete", dead).stdout.strip() == f"{dead} deleted"
    assert cli(mongo_env, "pause", "mail").stdout.strip() == "mail paused"
    assert cli(mongo_env, "pause", "mail").stdout.strip() == "mail was already paused"
    assert db.queue_controls.find_one({"_id": "mail"})["paused_by"].startswith("cli:")
    assert cli(mongo_env, "resume", "mail").stdout.strip() == "mail resumed"
    assert db.queue_controls.count_documents({}) == 0

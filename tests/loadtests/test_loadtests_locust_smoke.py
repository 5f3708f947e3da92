"""The locustfile against a real API under gunicorn with real consumers: no failures at all."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from stack import Stack, start_stack

ROOT = Path(__file__).resolve().parents[2]
LOCUSTFILE = ROOT / "loadtests" / "locustfile.py"


@pytest.fixture
def stack(tmp_path: Path, mongo_uri: str, db_name: str, db: object) -> Iterator[Stack]:
    """API (1 gunicorn worker) and supervisor (1 consumer) on this test's database."""
    running = start_stack(
        tmp_path / "stack",
        api_workers=1,
        consumers=1,
        concurrency=4,
        env_extra={"API_BCRYPT_COST": "4"},  # the smoke test checks behaviour, not hashing cost
        server_uri=mongo_uri,
        database=db_name,
    )
    yield running
    running.stop()


def test_locust_scenarios_run_headless_without_a_single_failure(
    stack: Stack, tmp_path: Path
) -> None:
    """Every user class runs for a few seconds; every response passes its checks; JOB recorded."""
    csv_prefix = tmp_path / "smoke"
    argv = [
        sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless",
        "--host", stack.url, "--users", "6", "--spawn-rate", "6", "--run-time", "6s",
        "--stop-timeout", "10", "--csv", str(csv_prefix), "--only-summary",
        "--max-error-ratio", "0", "--p95-ms", "3000", "--p99-ms", "5000",
        "AccountUser", "JobProducer", "MixedUser",
    ]  # fmt: skip
    env = dict(os.environ, PYTHONPATH=str(ROOT / "loadtests"), LOCUST_JOB_MS="10")
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=90, cwd=ROOT)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    with open(f"{csv_prefix}_stats.csv", newline="") as handle:
        rows = {(row["Type"], row["Name"]): row for row in csv.DictReader(handle)}
    aggregated = rows[("", "Aggregated")]
    assert int(aggregated["Request Count"]) > 0
    assert int(aggregated["Failure Count"]) == 0
    assert int(rows[("JOB", "bench.sleep")]["Request Count"]) > 0
    assert int(rows[("GET", "/users/profile")]["Request Count"]) > 0

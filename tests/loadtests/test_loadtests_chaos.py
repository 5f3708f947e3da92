"""The chaos run, shortened: real supervisor, real SIGKILLs, a real database kill and restart."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import localdb

ROOT = Path(__file__).resolve().parents[2]
CHAOS = ROOT / "loadtests" / "chaos.py"


def test_chaos_run_loses_nothing_under_kills_db_restart_and_sigterm(tmp_path: Path) -> None:
    """Under SIGKILLs, a database restart and a SIGTERM, every job ends succeeded, poison dead."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    argv = [
        sys.executable, str(CHAOS), "--jobs", "200", "--max-ms", "100", "--seed", "7",
        "--kill-interval", "1", "--workers", "2", "--concurrency", "4",
        "--port", str(localdb.free_port()), "--out", str(tmp_path),
    ]  # fmt: skip
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=150)
    tail = done.stdout[-4000:] + done.stderr[-2000:]
    assert done.returncode == 0, tail
    report = json.loads(done.stdout.strip().splitlines()[-1])
    expected = {
        "lost": 0,
        "completed": 200,
        "unexpected": [],
        "problems": [],
        "poison_state": "dead:poison",
        "term_exit_code": 0,
        "running_after_term": 0,
    }
    if not os.environ.get("MONGODB_URI"):
        expected["db_restarted"] = True
    assert {key: report[key] for key in expected} == expected, tail
    assert report["kills"] >= 3, tail
    ticks = report["schedule_ticks"]  # the 1-second schedule kept through all of it
    assert ticks["expected"] >= 5 and ticks["duplicated"] == 0 and ticks["missed"] == 0, ticks
    assert ticks["enqueued"] == ticks["expected"], ticks
    # A kill can re-run at most the jobs its consumer held: one per slot.
    assert report["duplicates_after_kill"] <= report["kills"] * 4, tail

"""The command line: help, bad options, boot errors and an unreachable database."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import localdb
import psutil  # type: ignore[import-untyped]
from supervisor_harness import ROOT, Supervisor
from waiting import wait_until

from supervisor.settings import OPTIONS, load_settings


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "supervisor", *args],
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_help_documents_every_option_and_its_variable() -> None:
    """--help names each flag and its environment variable."""
    result = run_cli("--help")
    assert result.returncode == 0
    text = " ".join(result.stdout.split())
    for option in OPTIONS:
        assert option.flag in text and option.env in text


def test_bad_option_value_exits_2_naming_it() -> None:
    """--workers 0 is refused with exit 2 and a message naming the option."""
    result = run_cli("--workers", "0")
    assert result.returncode == 2
    assert "--workers='0'" in result.stderr and "at least 1" in result.stderr


def test_unknown_option_exits_2() -> None:
    """An unknown flag is a usage error (exit 2)."""
    assert run_cli("--wrokers", "2").returncode == 2


def test_flags_win_over_environment_over_defaults() -> None:
    """Precedence: flag, then variable, then default."""
    env = {"SUPERVISOR_WORKERS": "3", "SUPERVISOR_MAX_MEMORY_MB": "512"}
    settings = load_settings(["--workers", "5"], env, cpu_count=2)
    assert (settings.workers, settings.max_memory_mb, settings.graceful_timeout_s) == (5, 512, 30)
    assert load_settings([], {}, cpu_count=7).workers == 7


def test_bad_queue_setting_exits_2_before_any_consumer_starts(
    start_supervisor: Callable[..., Supervisor],
) -> None:
    """A bad QUEUE_* value is found by the preflight child: exit 2, message names it."""
    sup = start_supervisor("--workers", "1", env={"QUEUE_LEASE_S": "soon"})
    assert sup.wait(30) == 2
    assert "QUEUE_LEASE_S='soon'" in sup.output()


def test_task_module_import_error_stops_with_a_clear_message(
    start_supervisor: Callable[..., Supervisor],
) -> None:
    """A task module that cannot be imported: exit 3 and the module named, no fork loop."""
    sup = start_supervisor("--workers", "2", env={"QUEUE_TASK_MODULES": "no_such_tasks_mod"})
    assert sup.wait(30) == 3
    assert "consumers cannot boot" in sup.output() and "no_such_tasks_mod" in sup.output()


def test_consumer_boot_failure_after_reload_stops_the_master(
    start_supervisor: Callable[..., Supervisor], tmp_path: Path
) -> None:
    """New code that fails to import in a new consumer (after HUP) stops the master with
    exit 3 and the child's error, instead of fork-looping."""
    module = tmp_path / "flaky_tasks.py"
    module.write_text("")
    sup = start_supervisor(
        "--workers",
        "2",
        env={"QUEUE_TASK_MODULES": "flaky_tasks", "PYTHONPATH_EXTRA": str(tmp_path)},
    )
    sup.wait_children(2)
    module.write_text("raise RuntimeError('deploy broke the tasks')\n")
    sup.signal(signal.SIGHUP)
    assert sup.wait(30) == 3, sup.output()
    assert "failed to boot" in sup.output() and "deploy broke the tasks" in sup.output()


def test_unreachable_database_gives_up_after_the_bounded_wait(
    start_supervisor: Callable[..., Supervisor],
) -> None:
    """No server at MONGODB_URI: exit 4 after about --db-wait seconds, with a clear message."""
    port = localdb.free_port()
    started = time.monotonic()
    sup = start_supervisor(
        "--workers",
        "1",
        "--db-wait",
        "1",
        env={"MONGODB_URI": f"mongodb://127.0.0.1:{port}/app?directConnection=true"},
    )
    assert sup.wait(30) == 4
    assert time.monotonic() - started < 15
    assert "database unreachable" in sup.output()
    assert sup.children() == []


def test_sigterm_while_waiting_for_the_database_stops_at_once(
    start_supervisor: Callable[..., Supervisor],
) -> None:
    """TERM during the start-up database wait ends the wait: exit 0 well before --db-wait."""
    port = localdb.free_port()
    sup = start_supervisor(
        "--workers",
        "1",
        "--db-wait",
        "60",
        env={"MONGODB_URI": f"mongodb://127.0.0.1:{port}/app?directConnection=true"},
    )
    wait_until(lambda: psutil.Process(sup.pid).children(), 10, "the preflight child")
    sent = time.monotonic()
    sup.signal(signal.SIGTERM)
    assert sup.wait(10) == 0, sup.output()
    assert time.monotonic() - sent < 5
    assert "stopped by SIGTERM during start-up" in sup.output()

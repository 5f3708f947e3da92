"""Start `python -m supervisor` against the test's database and watch its children."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path

import psutil  # type: ignore[import-untyped]
from waiting import wait_until

from queue_worker.job import JobState
from queue_worker.store import JobStore

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent

FAST_ENV = {
    "QUEUE_LEASE_S": "10",
    "QUEUE_POLL_MAX_S": "0.2",
    "QUEUE_BACKOFF_BASE_S": "0.1",
    "QUEUE_BACKOFF_CAP_S": "0.5",
    "QUEUE_ENABLE_BENCH_TASKS": "1",
    "QUEUE_TASK_MODULES": "queue_worker.builtin,supervisor_test_tasks",
    "SUPERVISOR_HANG_TIMEOUT_S": "2",
    "SUPERVISOR_KILL_GRACE_S": "0.5",
    "SUPERVISOR_BACKOFF_BASE_S": "0.1",
    "SUPERVISOR_BACKOFF_CAP_S": "0.5",
    "SUPERVISOR_GRACEFUL_TIMEOUT_S": "3",
    "SUPERVISOR_DB_WAIT_S": "5",
}


class Supervisor:
    """One `python -m supervisor` process with its output captured to a file."""

    def __init__(
        self,
        env: Mapping[str, str],
        args: Sequence[str],
        log_path: Path,
        overrides: Mapping[str, str] | None = None,
    ) -> None:
        full_env = {**env, **FAST_ENV, **(overrides or {})}
        extra = full_env.pop("PYTHONPATH_EXTRA", "")
        full_env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), str(HERE), extra) if p)
        full_env.setdefault("PROMETHEUS_MULTIPROC_DIR", "")
        full_env.pop("PROMETHEUS_MULTIPROC_DIR")
        self.log_path = log_path
        self._log = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "supervisor", *args],
            env=full_env,
            cwd=ROOT,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def children(self, role: str = "consumer") -> list[int]:
        """Return pids of live children whose title names `role` (consumer, exporter, reaper)."""
        found = []
        try:
            kids = psutil.Process(self.pid).children()
        except psutil.NoSuchProcess:
            return []
        for kid in kids:
            try:
                if kid.status() == psutil.STATUS_ZOMBIE:
                    continue
                title = " ".join(kid.cmdline())
            except (psutil.NoSuchProcess, psutil.ZombieProcess):
                continue
            if title.startswith(f"supervisor: {role}") and "booting" not in title:
                found.append(kid.pid)
        return sorted(found)

    def wait_children(self, n: int, timeout_s: float = 15.0) -> list[int]:
        """Wait until exactly `n` booted consumers run; return their pids."""
        return list(
            wait_until(
                lambda: (lambda c: c if len(c) == n else None)(self.children()),
                timeout_s,
                f"{n} consumers\n{self.output()}",
            )
        )

    def signal(self, sig: int) -> None:
        self.process.send_signal(sig)

    def wait(self, timeout_s: float) -> int:
        try:
            return self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"supervisor still running after {timeout_s}s\n{self.output()}"
            ) from None

    def stop(self) -> None:
        """Make sure nothing is left behind: QUIT, then SIGKILL the whole family."""
        if self.process.poll() is None:
            family = psutil.Process(self.pid).children(recursive=True)
            self.process.send_signal(signal.SIGQUIT)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                for proc in [*family, psutil.Process(self.pid)]:
                    try:
                        proc.kill()
                    except psutil.NoSuchProcess:
                        pass
                self.process.wait()
        self._log.close()


def scrape(port: int) -> dict[str, float]:
    """Fetch the metrics page; return {'name{labels}': value} for every sample."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    samples: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            samples[key] = float(value)
    return samples


def pid_of_owner(owner: str | None) -> int | None:
    """Return the pid part of a lease owner 'host:pid'."""
    return int(owner.rsplit(":", 1)[1]) if owner else None


def state_of(store: JobStore, job_id: str) -> JobState | None:
    """Return the job's current state (None if unknown)."""
    job = store.get(job_id)
    return job.state if job is not None else None

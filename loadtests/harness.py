"""Process plumbing shared by the load, chaos and benchmark scripts.

A run needs a database it may kill and restart (a local server on a fixed port and data
directory, or the server MONGODB_URI names, which it never touches), and real processes it
starts, signals and reaps: the supervisor and the API under gunicorn. Nothing here imports the
project's packages, so the scripts can start before the code they drive exists.
"""

from __future__ import annotations

import base64
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
for _extra in (ROOT, ROOT / "scripts"):
    if str(_extra) not in sys.path:
        sys.path.insert(0, str(_extra))

import localdb  # noqa: E402  (scripts/ is put on the path just above)

PYTHON = sys.executable
VAR = ROOT / "var"
# Process titles (setproctitle) tell the master's children apart: only consumers are targets.
CONSUMER_MARKER = "consumer"
NON_CONSUMER_MARKERS = ("exporter", "reaper", "preflight")


def free_port() -> int:
    """Return a loopback TCP port nothing listens on right now."""
    return int(localdb.free_port())


@dataclass
class DatabaseServer:
    """The server a run uses; `restart()` is only possible when the run started it itself."""

    base_uri: str
    local: localdb.LocalDB | None = None
    port: int | None = None
    data_dir: Path | None = None
    log_path: Path | None = None

    @classmethod
    def open(
        cls, data_dir: Path, port: int | None = None, env: Mapping[str, str] | None = None
    ) -> DatabaseServer:
        """Use MONGODB_URI if set, else start a fresh local server in `data_dir`."""
        env = os.environ if env is None else env
        external = env.get("MONGODB_URI")
        if external:
            return cls(base_uri=external)
        shutil.rmtree(data_dir, ignore_errors=True)
        data_dir.mkdir(parents=True)
        port = port or localdb.free_port()
        log_path = data_dir.parent / f"{data_dir.name}.log"
        server = localdb.start(port=port, data_dir=data_dir, log_path=log_path)
        return cls(server.uri(), server, port, data_dir, log_path)

    @property
    def restartable(self) -> bool:
        return self.local is not None

    def uri(self, database: str) -> str:
        """Return a URI for `database` on this server (directConnection kept)."""
        head, sep, query = self.base_uri.partition("?")
        scheme, _, rest = head.partition("://")
        hosts = rest.split("/", 1)[0]
        return f"{scheme}://{hosts}/{database}{sep}{query}"

    def kill(self) -> None:
        """SIGKILL the local server, as a crash would."""
        if self.local is not None:
            self.local.kill()

    def restart(self) -> None:
        """Start the local server again on the same port and data directory."""
        if self.local is None or self.data_dir is None:
            raise RuntimeError("cannot restart a database server this run did not start")
        self.local.kill()
        self.local = localdb.start(port=self.port, data_dir=self.data_dir, log_path=self.log_path)

    def stop(self) -> None:
        """Stop the local server if this run started it."""
        if self.local is not None:
            self.local.stop()


def project_env(uri: str, database: str, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """Return an environment for a project process using `database` on `uri`."""
    env = dict(os.environ)
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    env["MONGODB_URI"] = uri
    env["MONGODB_DATABASE"] = database
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    # The consumers load the product's tasks (as deployed), whose account links need a key: a
    # throwaway one.
    env.setdefault("QUEUE_TASK_MODULES", "api.tasks")
    env.setdefault("API_ACCOUNT_TOKEN_KEYS", f"run:{base64.b64encode(os.urandom(32)).decode()}")
    env.update(extra or {})
    return env


@dataclass
class ManagedProcess:
    """A process a run started (in its own session), with its output going to a log file."""

    name: str
    process: subprocess.Popen[bytes]
    log_path: Path
    started_at: float = field(default_factory=time.monotonic)

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def signal(self, signum: int) -> None:
        """Send `signum` to the process itself (not its group: it manages its children)."""
        if self.alive():
            os.kill(self.process.pid, signum)

    def wait(self, timeout_s: float) -> int | None:
        """Wait up to `timeout_s` for the exit code; None if it is still running."""
        try:
            return self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, timeout_s: float = 30.0) -> int:
        """SIGTERM, wait, then SIGKILL the whole process group; return the exit code."""
        if self.alive():
            self.signal(signal.SIGTERM)
            code = self.wait(timeout_s)
            if code is not None:
                kill_group(self.process.pid)
                return code
        kill_group(self.process.pid)
        return self.process.wait()

    def log_tail(self, lines: int = 30) -> str:
        """Return the last lines of the process's output."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


def kill_group(pgid: int) -> None:
    """SIGKILL every process left in the group `pgid` (the run's own session)."""
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def spawn(
    name: str,
    argv: Sequence[str],
    env: Mapping[str, str],
    log_path: Path,
    cpus: Sequence[int] | None = None,
    cwd: Path = ROOT,
) -> ManagedProcess:
    """Start `argv` in its own session (in `cwd`: the code tree it runs), output appended to
    `log_path`, pinned to `cpus`."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    argv = list(argv)
    if cpus is not None and shutil.which("taskset"):
        argv = ["taskset", "-c", ",".join(str(c) for c in cpus), *argv]
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            argv,
            env=dict(env),
            cwd=cwd,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    return ManagedProcess(name, process, log_path)


def start_supervisor(
    env: Mapping[str, str],
    log_path: Path,
    *,
    workers: int,
    concurrency: int,
    extra_args: Sequence[str] = (),
    cpus: Sequence[int] | None = None,
    cwd: Path = ROOT,
) -> ManagedProcess:
    """Start `python -m supervisor` with `workers` consumers of `concurrency` slots each."""
    argv = [
        PYTHON,
        "-m",
        "supervisor",
        "--workers",
        str(workers),
        "--concurrency",
        str(concurrency),
        *extra_args,
    ]
    return spawn("supervisor", argv, env, log_path, cpus, cwd)


def consumer_children(master_pid: int) -> list[psutil.Process]:
    """Return the master's consumer children, by their process title.

    Only children titled as consumers count: the exporter and the short-lived reapers (which
    release a dead consumer's jobs) are not targets, and neither is a child forked so recently
    that it still carries the master's title.
    """
    try:
        children = psutil.Process(master_pid).children(recursive=False)
    except psutil.NoSuchProcess:
        return []
    consumers = []
    for child in children:
        try:
            title = " ".join(child.cmdline()).lower()
            if child.status() == psutil.STATUS_ZOMBIE:
                continue
        except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
            continue
        if CONSUMER_MARKER in title and not any(m in title for m in NON_CONSUMER_MARKERS):
            consumers.append(child)
    return consumers


def rss_mb(pid: int) -> float:
    """Return the resident set size of `pid` in MiB (0 if it is gone)."""
    try:
        return float(psutil.Process(pid).memory_info().rss) / 2**20
    except psutil.NoSuchProcess:
        return 0.0


def wait_until(
    predicate: Callable[[], bool], timeout_s: float, interval_s: float = 0.1, what: str = ""
) -> None:
    """Poll `predicate` until it holds; raise TimeoutError after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout_s}s waiting for {what or predicate}")
        time.sleep(interval_s)


def percentile(values: Sequence[float], q: float) -> float:
    """Return the q-th percentile (0–100) of `values` by nearest rank; 0.0 when empty."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = min(len(ordered), max(1, math.ceil(q / 100 * len(ordered))))
    return ordered[rank - 1]

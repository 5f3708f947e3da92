"""`python -m supervisor`: parse options, prepare the metrics directory, preflight, run the master.

Exit codes: 0 stopped cleanly; 2 bad option or queue setting; 3 a child failed to boot (task
import error, metrics port taken); 4 database unreachable at start; 5 every slot crash-looped.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from supervisor.errors import ChildExit, ExitCode, UsageError
from supervisor.liveness import Liveness, LivenessLink
from supervisor.settings import SupervisorSettings, load_settings

if TYPE_CHECKING:
    from supervisor.process_ops import OsProcessOps

log = logging.getLogger("supervisor")

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT)
PREFLIGHT_POLL_S = 0.05
PREFLIGHT_MESSAGES = {
    ExitCode.USAGE: "configuration error",
    ExitCode.BOOT_FAILURE: "consumers cannot boot",
    ExitCode.DATABASE_UNREACHABLE: "database unreachable",
}


class ForkedTargets:
    """What each child runs; modules are imported after the fork, in the child only."""

    def __init__(self, settings: SupervisorSettings) -> None:
        self.settings = settings

    def consumer(self, slot: int, liveness: LivenessLink) -> int:
        from supervisor.child import run_consumer

        return run_consumer(self.settings, slot, liveness)

    def exporter(self, liveness: LivenessLink) -> int:
        from supervisor.exporter import run_exporter

        return run_exporter(self.settings, liveness)

    def reaper(self, dead: ChildExit) -> int:
        from supervisor.reaper import release_dead_child

        return release_dead_child(dead)


def prepare_metrics_dir(env: dict[str, str] | os._Environ[str]) -> Path | None:
    """Point PROMETHEUS_MULTIPROC_DIR at an empty directory; return it if we created it."""
    given = env.get("PROMETHEUS_MULTIPROC_DIR")
    if given:
        # Imported here: prometheus-client picks its value class from this variable at import.
        from queue_worker.metrics_files import reset_directory

        reset_directory(given)  # a previous run's counters would be summed into ours
        return None
    created = Path(tempfile.mkdtemp(prefix="supervisor-metrics-"))
    env["PROMETHEUS_MULTIPROC_DIR"] = str(created)
    return created


def preflight(settings: SupervisorSettings, ops: OsProcessOps) -> tuple[int, str]:
    """Run the preflight check in a child; return its exit code and message."""
    note = Liveness()

    def target() -> int:
        from supervisor.preflight import check

        return check(note, settings)

    stop: list[int] = []
    previous = {s: signal.signal(s, lambda n, f: stop.append(n)) for s in STOP_SIGNALS}
    try:
        pid = ops.fork(target)
        # Poll, so TERM/INT during a long database wait stops the check instead of waiting it out.
        while (status := _exited(pid)) is None:
            if stop:
                ops.kill(pid, signal.SIGKILL)
                _, status = os.waitpid(pid, 0)
                break
            time.sleep(PREFLIGHT_POLL_S)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    message = note.note()
    note.close()
    if stop:
        return ExitCode.OK, f"stopped by {signal.Signals(stop[0]).name} during start-up"
    code = os.waitstatus_to_exitcode(status)
    return (code if code >= 0 else ExitCode.FAILURE), message


def _exited(pid: int) -> int | None:
    done, status = os.waitpid(pid, os.WNOHANG)
    return status if done else None


def main(argv: Sequence[str] | None = None) -> int:
    """Run the supervisor until it is stopped; return the process exit code."""
    logging.basicConfig(
        level=os.environ.get("SUPERVISOR_LOG_LEVEL", "INFO").upper(),
        format="%(asctime)s %(process)d %(name)s %(levelname)s %(message)s",
        stream=sys.stderr,
    )
    try:
        settings = load_settings(argv, os.environ)
    except UsageError as exc:
        print(f"python -m supervisor: error: {exc}", file=sys.stderr)
        return ExitCode.USAGE
    created = prepare_metrics_dir(os.environ)
    try:
        # Imported only now: prometheus-client picks its multiprocess mode at import time.
        from supervisor.master import Master
        from supervisor.process_ops import OsProcessOps

        ops = OsProcessOps()
        code, message = preflight(settings, ops)
        if code == ExitCode.OK and message:
            log.info("%s", message)  # stopped while starting: nothing to drain
            return code
        if code != ExitCode.OK:
            what = PREFLIGHT_MESSAGES.get(
                ExitCode(code) if code in ExitCode._value2member_map_ else ExitCode.FAILURE,
                "preflight failed",
            )
            print(
                f"python -m supervisor: {what}: {message or 'see the error above'}", file=sys.stderr
            )
            return code
        log.info(
            "starting %d consumer(s), concurrency %s, queues %s, metrics port %s",
            settings.workers,
            settings.concurrency or "default",
            ",".join(settings.queues) if settings.queues else "default",
            settings.metrics_port or "off",
        )
        master = Master(settings, ops, ForkedTargets(settings), Liveness)
        code = master.run()
        if master.failure:
            print(f"python -m supervisor: {master.failure}", file=sys.stderr)
        log.info("master exiting with code %d", code)
        return code
    finally:
        if created is not None:
            shutil.rmtree(created, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())

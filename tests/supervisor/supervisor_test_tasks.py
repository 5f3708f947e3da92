"""Tasks that misbehave on purpose, for the supervisor's process tests (QUEUE_TASK_MODULES)."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

from queue_worker.tasks import TaskContext, task


@task("sup.spin")
def spin(payload: dict[str, Any], ctx: TaskContext) -> None:
    """Burn CPU in pure Python for payload['s'] seconds, ignoring should_stop (a runaway job)."""
    deadline = time.monotonic() + float(payload.get("s", 60))
    while time.monotonic() < deadline:
        pass


@task("sup.freeze_once")
def freeze_once(payload: dict[str, Any], ctx: TaskContext) -> str:
    """The first run stops its whole process (SIGSTOP: no thread runs); later runs succeed."""
    marker = Path(payload["marker"])
    if not marker.exists():
        marker.write_text(str(os.getpid()))
        os.kill(os.getpid(), signal.SIGSTOP)
    return "thawed"

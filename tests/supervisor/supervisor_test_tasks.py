"""Tasks that misbehave on purpose, for the supervisor's process tests (QUEUE_TASK_MODULES)."""

from __future__ import annotations

import ctypes
import os
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


@task("sup.gil_hog_once")
def gil_hog_once(payload: dict[str, Any], ctx: TaskContext) -> str:
    """The first run blocks in C while holding the GIL (no thread of its process runs Python);
    later runs succeed."""
    marker = Path(payload["marker"])
    if not marker.exists():
        marker.write_text(str(os.getpid()))
        ctypes.PyDLL(None).sleep(3600)  # PyDLL: the call keeps the GIL
    return "done"

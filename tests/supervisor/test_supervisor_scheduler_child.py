"""The scheduler child's signal handling: handlers only record (supervisor/scheduler.py)."""

from __future__ import annotations

import signal
import threading
from typing import Any

import pytest

from supervisor import scheduler as scheduler_child
from supervisor.errors import ExitCode
from supervisor.settings import SupervisorSettings


class NoteOnly:
    """A liveness link that keeps the boot note."""

    def __init__(self) -> None:
        self.notes: list[str] = []

    def notify(self) -> None: ...

    def mark_ready(self) -> None: ...

    def leave_note(self, message: str) -> None:
        self.notes.append(message)


def test_a_stop_signal_sets_no_event_in_signal_context(monkeypatch: pytest.MonkeyPatch) -> None:
    """TERM arriving while the scheduler boots runs a handler that only records it: no
    threading.Event.set() in signal context (the interrupted main thread may hold that Event's
    lock inside wait(), which deadlocks; supervisor/child.py's StopFlags says the same)."""
    in_handler = False
    sets_in_handler: list[str] = []
    real_set = threading.Event.set

    def watched_set(event: threading.Event) -> None:
        if in_handler:
            sets_in_handler.append("Event.set")
        real_set(event)

    def signal_during_boot() -> Any:
        nonlocal in_handler
        handler = signal.getsignal(signal.SIGTERM)
        assert callable(handler)
        in_handler = True
        try:
            handler(signal.SIGTERM, None)
        finally:
            in_handler = False
        raise RuntimeError("boot stops here")

    monkeypatch.setattr(threading.Event, "set", watched_set)
    monkeypatch.setattr(scheduler_child, "watch_for_outages", lambda liveness: None)
    monkeypatch.setattr(scheduler_child, "queue_settings", signal_during_boot)
    previous = signal.getsignal(signal.SIGTERM)
    liveness = NoteOnly()
    settings = SupervisorSettings(workers=1, concurrency=1, queues=())
    code = scheduler_child.run_scheduler(settings, liveness)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    assert code == ExitCode.BOOT_FAILURE and liveness.notes == ["RuntimeError: boot stops here"]
    assert sets_in_handler == []
    assert signal.getsignal(signal.SIGTERM) is previous  # the handlers are put back

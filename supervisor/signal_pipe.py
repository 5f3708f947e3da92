"""Signals for a single-threaded loop: handlers only record, the loop acts (gunicorn's arbiter).

`SignalPipe` installs a handler for each signal that appends it to the loop's queue and writes a
byte to a non-blocking self-pipe; the loop sleeps in `wait`, a `select` on that pipe, so a signal
wakes it at once and nothing but the queue append and the write happens in signal context. On
exit the previous handlers come back and the pipe is closed.
"""

from __future__ import annotations

import os
import select
import signal
from collections.abc import Callable, Iterable
from types import FrameType
from typing import Any


class SignalPipe:
    """Record `signals` through `record(signum)` and wake `wait` when one arrives."""

    def __init__(self, signals: Iterable[int], record: Callable[[int], None]) -> None:
        self._signals = tuple(signals)
        self._record = record
        self._read, self._write = -1, -1
        self._previous: dict[int, Any] = {}

    @property
    def fds(self) -> list[int]:
        """The pipe's descriptors (a forked child closes them)."""
        return [self._read, self._write]

    def __enter__(self) -> SignalPipe:
        self._read, self._write = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._previous = {s: signal.signal(s, self._on_signal) for s in self._signals}
        return self

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        os.close(self._read)
        os.close(self._write)
        self._read, self._write = -1, -1

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self._record(signum)
        try:
            os.write(self._write, b"\0")
        except BlockingIOError:
            pass  # the pipe is full: the loop is awake anyway

    def wait(self, timeout_s: float) -> None:
        """Sleep until a signal arrives or `timeout_s` passes; empty the pipe."""
        ready, _, _ = select.select([self._read], [], [], timeout_s)
        if not ready:
            return
        try:
            while os.read(self._read, 4096):
                pass
        except BlockingIOError:
            pass

"""A slow SMTP server on loopback: every message takes `delay_s` to accept, like a real relay.

The sign-up storm benchmark points the consumers' SMTP_HOST/SMTP_PORT here so that each
welcome-email job really spends ~500 ms in network I/O, and reads back when each message arrived.
"""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from aiosmtpd.controller import Controller
from harness import free_port


@dataclass
class SlowHandler:
    """aiosmtpd handler: wait `delay_s`, then accept; remember each arrival (wall clock)."""

    delay_s: float
    arrivals: list[float] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        await asyncio.sleep(self.delay_s)  # the simulated network I/O of a real relay
        with self.lock:
            self.arrivals.append(time.time())
        return "250 Message accepted"

    def count(self) -> int:
        with self.lock:
            return len(self.arrivals)


class SlowSmtpSink:
    """A running sink: `host`, `port`, and the handler that counts what arrived."""

    def __init__(self, delay_s: float = 0.5) -> None:
        self.handler = SlowHandler(delay_s)
        self.host = "127.0.0.1"
        self.port = free_port()
        self.controller = Controller(self.handler, hostname=self.host, port=self.port)

    def __enter__(self) -> SlowSmtpSink:
        self.controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.controller.stop()

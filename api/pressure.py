"""Whether this worker is short of connections: the gunicorn worker (server.py) says so, and
the body deadline (middleware.py) and the keep-alive wait listen.

While a worker holds more than half of its worker_connections, a connection's body must arrive
within BUSY_BODY_S instead of API_BODY_TIMEOUT_S: a flood of slow bodies from many addresses
(past the per-client cap) then holds each place for a second, not ten, and requests from
everyone else get places again. A real body is at most API_MAX_BODY_BYTES (64 KiB): a second is
a 64 KB/s link. One worker is one event loop: no locks.
"""

from __future__ import annotations

BUSY_BODY_S = 1.0


class Pressure:
    """This worker's connection pressure, as its gunicorn worker last counted it."""

    busy: bool = False

    @classmethod
    def body_timeout_s(cls, normal_s: float) -> float:
        """The body deadline now: `normal_s`, or BUSY_BODY_S while the worker is busy."""
        return min(normal_s, BUSY_BODY_S) if cls.busy else normal_s

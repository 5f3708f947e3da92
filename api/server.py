"""The API's gunicorn worker: gevent's, with two limits that keep a flood of slow or idle
connections from taking the API down (deploy/gunicorn.conf.py selects it).

- Connections per client address. A worker takes at most `max_per_client` connections from one
  address at a time (API_MAX_CONNECTIONS_PER_CLIENT); more are answered 503 at once and closed,
  before any request is read. Off (0) behind a proxy, whose address every connection has: the
  proxy limits per client itself (deploy/nginx/).
- Idle keep-alive under pressure. While a worker holds more than half of its
  worker_connections, a kept-alive connection may wait only BUSY_KEEPALIVE_S for its next
  request (and a new one for its headers), instead of API_KEEPALIVE_S: idle clients give their
  places back to working ones.
- Slow bodies under pressure. The body of a request has its own deadline, in the app
  (api/middleware.py, API_BODY_TIMEOUT_S); in the same state the worker tells the app so
  (api/pressure.py) and the deadline is a second, so slow bodies from many addresses cannot
  hold the worker's places.

All are counted in this worker's event loop: no locks.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any, ClassVar

import gevent  # type: ignore[import-untyped]
from gunicorn.workers.ggevent import GeventWorker  # type: ignore[import-untyped]

from api.pressure import BUSY_ENVIRON_KEY
from api.settings import ServerSettings

BUSY_KEEPALIVE_S = 1.0
REFUSE_SEND_S = 1.0
_REFUSAL_BODY = json.dumps(
    {
        "error": {
            "code": "too_many_connections",
            "message": "Too many connections from this address.",
            "request_id": "",
        }
    }
).encode()
REFUSAL = (
    b"HTTP/1.1 503 Service Unavailable\r\n"
    b"Content-Type: application/json\r\n"
    b"Connection: close\r\n"
    b"Retry-After: 1\r\n"
    b"Content-Length: " + str(len(_REFUSAL_BODY)).encode() + b"\r\n\r\n" + _REFUSAL_BODY
)


class ApiWorker(GeventWorker):  # type: ignore[misc]
    """gevent worker with a per-client connection limit and a shorter keep-alive when busy."""

    max_per_client: ClassVar[int] = 0
    busy_above: ClassVar[int] = 0

    @classmethod
    def configure(cls, settings: ServerSettings) -> None:
        """Set the limits (the gunicorn config calls this in the master, before any fork)."""
        cls.max_per_client = settings.max_connections_per_client
        cls.busy_above = settings.worker_connections // 2

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._per_client: Counter[str] = Counter()
        self._open = 0

    def handle(self, listener: Any, client: Any, addr: Any) -> None:
        peer = str(addr[0]) if isinstance(addr, tuple) and addr else ""
        if self.max_per_client and self._per_client[peer] >= self.max_per_client:
            self._refuse(client)
            return
        self._per_client[peer] += 1
        self._open += 1
        try:
            super().handle(listener, client, addr)
        finally:
            self._open -= 1
            self._per_client[peer] -= 1
            if not self._per_client[peer]:
                del self._per_client[peer]

    @property
    def busy(self) -> bool:
        """True while this worker holds more than half of its connections."""
        return bool(self.busy_above) and self._open > self.busy_above

    def load_wsgi(self) -> None:
        """Load the app, wrapped to tell each request whether the worker is busy."""
        super().load_wsgi()
        app: Any = self.wsgi  # type: ignore[has-type]  # set by gunicorn (untyped)

        def told_of_pressure(environ: dict[str, Any], start_response: Any) -> Any:
            environ[BUSY_ENVIRON_KEY] = self.busy
            return app(environ, start_response)

        self.wsgi = told_of_pressure

    def timeout_ctx(self) -> Any:
        """The wait for the next request's head on a connection (keep-alive)."""
        if self.busy:
            return gevent.Timeout(BUSY_KEEPALIVE_S, False)
        return super().timeout_ctx()

    @staticmethod
    def _refuse(client: Any) -> None:
        try:
            with gevent.Timeout(REFUSE_SEND_S, False):
                client.sendall(REFUSAL)
        except OSError:
            pass  # the client is gone: nothing to tell it
        finally:
            client.close()

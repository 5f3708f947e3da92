"""Every index the API's stores rely on, created at start and retried until all exist.

A database that is down at start must not stop the app from serving /healthz or fast 503s, so
creating the indexes does not block the start: `IndexKeeper.ensure` tries each store's in turn,
remembers which are done, and the next call (every /readyz probe, and the first use of a store
that needs its index, like sign-up's unique email) tries the rest again, from where it failed.
Until every one exists /readyz answers 503: a load balancer sends no traffic to a worker whose
session, rate-limit and token TTLs, security-log order or unique emails are not yet in force.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from typing import Protocol

import pymongo
from pymongo.errors import PyMongoError

log = logging.getLogger("api.database")


class Indexed(Protocol):
    def ensure_indexes(self) -> None: ...


class IndexKeeper:
    """Create every store's indexes, retrying the missing ones on each `ensure`."""

    def __init__(self, stores: Iterable[Indexed], timeout_s: float) -> None:
        self._missing = list(stores)
        self._timeout_s = timeout_s
        self._lock = threading.Lock()

    @property
    def ready(self) -> bool:
        """True once every store's indexes exist."""
        return not self._missing

    def ensure(self) -> bool:
        """Try the stores whose indexes are not known to exist yet; return `ready`."""
        if not self._missing:
            return True
        with self._lock:
            try:
                with pymongo.timeout(self._timeout_s):
                    while self._missing:
                        self._missing[0].ensure_indexes()
                        self._missing.pop(0)
            except PyMongoError as exc:
                log.warning(
                    "indexes of %d stores not created yet (%s); retrying",
                    len(self._missing), type(exc).__name__,
                )  # fmt: skip
        return not self._missing

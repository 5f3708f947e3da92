"""The API's boundary with the database driver: driver failures become a counted, fast 503.

Data access in `api` (users, sessions, rate limits) and calls into `queue_worker` run inside
`guard(operation)`: a PyMongoError (timeout, lost connection, server error) is counted in
db_operation_errors_total{operation} and re-raised as ServiceUnavailable, never as a 500.
Expected driver outcomes (DuplicateKeyError) are handled inside, before they reach the guard.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from pymongo.errors import PyMongoError

from api.errors import ServiceUnavailable
from api.metrics import ApiMetrics

log = logging.getLogger("api.database")


class DatabaseGuard:
    """Turn driver errors raised inside `operation` blocks into counted ServiceUnavailable."""

    def __init__(self, metrics: ApiMetrics) -> None:
        self._errors = metrics.db_operation_errors

    @contextmanager
    def operation(self, name: str) -> Iterator[None]:
        """Run the block as database operation `name`; map driver failures to 503."""
        try:
            yield
        except PyMongoError as exc:
            self._errors.labels(name).inc()
            # The class name is enough to diagnose; driver messages may echo query values.
            log.warning("database operation %s failed: %s", name, type(exc).__name__)
            raise ServiceUnavailable(operation=name) from exc

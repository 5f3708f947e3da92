"""Liveness, readiness and the metrics exposition."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import falcon
import pymongo
from pymongo.database import Database
from pymongo.errors import PyMongoError

from api.errors import ServiceUnavailable
from api.indexes import IndexKeeper
from api.metrics import ApiMetrics
from api.openapi import Operation
from api.schemas import StatusResponse, send

PROBE_COLLECTION = "api_health"


class HealthResource:
    docs = {"get": Operation("The process is alive (no dependency is checked)", "health",
                             response=StatusResponse)}  # fmt: skip

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        send(resp, StatusResponse("ok"))


class ReadyResource:
    """Ready means every index the API relies on exists (api/indexes.py: tried again here until
    they do) and the database takes a write within the readiness deadline: a ping alone
    answers from a server whose disk is full and refuses every write. The write is one small
    upsert of one document, about what the ping cost."""

    docs = {
        "get": Operation(
            "The database took a small write within the readiness deadline",
            "health",
            response=StatusResponse,
            errors=(503,),
        )
    }

    def __init__(
        self, db: Database[Any], timeout_s: float, metrics: ApiMetrics, indexes: IndexKeeper
    ) -> None:
        self._indexes = indexes
        self._probe = db[PROBE_COLLECTION]
        self._timeout_s = timeout_s
        self._errors = metrics.db_operation_errors

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        if not self._indexes.ensure():
            self._errors.labels("ready").inc()
            raise ServiceUnavailable("The database's indexes are not all there yet.",
                                     operation="ready")  # fmt: skip
        try:
            # pymongo.timeout bounds server selection, connection checkout and the write.
            with pymongo.timeout(self._timeout_s):
                self._probe.update_one(
                    {"_id": "readyz"}, {"$set": {"at": datetime.now(UTC)}}, upsert=True
                )
        except PyMongoError:
            self._errors.labels("ready").inc()
            raise ServiceUnavailable("The database is not writable.", operation="ready") from None
        send(resp, StatusResponse("ready"))


class MetricsResource:
    docs = {"get": Operation("Prometheus metrics of all API workers", "health",
                             content_type="text/plain")}  # fmt: skip

    def __init__(self, metrics: ApiMetrics, multiproc_dir: str | None) -> None:
        self._metrics = metrics
        self._multiproc_dir = multiproc_dir

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.data, resp.content_type = self._metrics.exposition(self._multiproc_dir)

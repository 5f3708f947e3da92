"""Liveness, readiness and the metrics exposition."""

from __future__ import annotations

from typing import Any

import falcon
import pymongo
from pymongo.database import Database
from pymongo.errors import PyMongoError

from api.errors import ServiceUnavailable
from api.metrics import ApiMetrics
from api.openapi import Operation
from api.schemas import StatusResponse, send


class HealthResource:
    docs = {"get": Operation("The process is alive (no dependency is checked)", "health",
                             response=StatusResponse)}  # fmt: skip

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        send(resp, StatusResponse("ok"))


class ReadyResource:
    docs = {
        "get": Operation(
            "The database answered a ping within the readiness deadline",
            "health",
            response=StatusResponse,
            errors=(503,),
        )
    }

    def __init__(self, db: Database[Any], timeout_s: float, metrics: ApiMetrics) -> None:
        self._db = db
        self._timeout_s = timeout_s
        self._errors = metrics.db_operation_errors

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        try:
            # pymongo.timeout bounds server selection, connection checkout and the command.
            with pymongo.timeout(self._timeout_s):
                self._db.command("ping")
        except PyMongoError:
            self._errors.labels("ping").inc()
            raise ServiceUnavailable("The database is not reachable.", operation="ping") from None
        send(resp, StatusResponse("ready"))


class MetricsResource:
    docs = {"get": Operation("Prometheus metrics of all API workers", "health",
                             content_type="text/plain")}  # fmt: skip

    def __init__(self, metrics: ApiMetrics, multiproc_dir: str | None) -> None:
        self._metrics = metrics
        self._multiproc_dir = multiproc_dir

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.data, resp.content_type = self._metrics.exposition(self._multiproc_dir)

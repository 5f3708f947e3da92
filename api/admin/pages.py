"""The dashboard's pages (GET): overview, queues, jobs, one job, processes, schedules, audit,
users, and the overview's JSON for polling. Every read is bounded (browse.py, the snapshot)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

import falcon

from api.admin.base import AdminResource, page_values
from api.admin.redaction import redact
from api.admin.roles import Role
from api.admin.snapshot import REFRESH_S
from api.admin.views import render
from queue_worker import admin as queue_admin
from queue_worker import browse
from queue_worker.job import JobState
from queue_worker.schedules import registry as schedules
from queue_worker.schedules.store import ScheduleStore

VIEWS = {  # the job list's presets
    "dead": {"state": "dead"},
    "delayed": {"state": "pending", "delayed": "1"},
    "running": {"state": "running"},
}


class OverviewPage(AdminResource):
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        def respond(user: Any) -> None:
            snap = self.admin.snapshot.get()
            render(resp, "overview.html", **page_values(
                user, snap=snap, spark=sparkline(snap), refresh_s=REFRESH_S))  # fmt: skip

        self.serve(req, resp, Role.VIEWER, respond)


class OverviewJson(AdminResource):
    """The overview's figures for the page's polling script; 304 when unchanged."""

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        def respond(user: Any) -> None:
            snap = self.admin.snapshot.get()
            etag = self.admin.snapshot.etag
            resp.set_header("ETag", etag)
            if req.get_header("If-None-Match") == etag:
                resp.status = falcon.HTTP_304
                return
            resp.content_type = falcon.MEDIA_JSON
            resp.text = json.dumps({**snap, "spark": sparkline(snap)}, default=str)

        self.serve(req, resp, Role.VIEWER, respond)


class QueuesPage(AdminResource):
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        def respond(user: Any) -> None:
            snap = self.admin.snapshot.get()
            render(resp, "queues.html", **page_values(user, snap=snap))

        self.serve(req, resp, Role.VIEWER, respond)


class JobsPage(AdminResource):
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        def respond(user: Any) -> None:
            params = {**VIEWS.get(req.get_param("view") or "", {}), **_params(req)}
            flt = job_filter(params, self.admin.now())
            jobs = browse.find_jobs(self.admin.store, flt)
            count, capped = browse.count_jobs(self.admin.store, flt)
            render(resp, "jobs.html", **page_values(
                user, jobs=jobs, count=count, capped=capped, params=params,
                view=req.get_param("view") or "", states=[s.value for s in JobState],
                now=self.admin.now(),
            ))  # fmt: skip

        self.serve(req, resp, Role.VIEWER, respond)


class JobPage(AdminResource):
    def on_get(self, req: falcon.Request, resp: falcon.Response, job_id: str) -> None:
        def respond(user: Any) -> None:
            job = queue_admin.require_job(self.admin.store, job_id)
            keys = self.admin.redact_keys
            payload = json.dumps(redact(job.payload, keys), indent=2, default=str)
            result = None
            if job.result is not None:
                result = json.dumps(redact(job.result, keys), indent=2, default=str)
            lease_age = None
            if job.lease_until is not None:
                beat = job.lease_until - timedelta(seconds=self.admin.store.settings.lease_s)
                lease_age = round((self.admin.now() - beat).total_seconds(), 1)
            render(resp, "job.html", **page_values(
                user, job=job, payload=payload, result=result, heartbeat_age_s=lease_age,
                now=self.admin.now(),
            ))  # fmt: skip

        self.serve(req, resp, Role.VIEWER, respond)


class ProcessesPage(AdminResource):
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        def respond(user: Any) -> None:
            snap = self.admin.snapshot.get()
            groups: dict[str, list[dict[str, Any]]] = {}
            for worker in snap["workers"]:
                groups.setdefault(f"{worker['host']} (supervisor pid {worker['ppid']})", []).append(
                    worker
                )
            render(resp, "processes.html", **page_values(user, groups=groups, snap=snap))

        self.serve(req, resp, Role.VIEWER, respond)


class SchedulesPage(AdminResource):
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        def respond(user: Any) -> None:
            now = self.admin.now()
            rows = []
            for doc in ScheduleStore(self.admin.store.db).all():
                definition = schedules.schedules.get(doc["_id"])
                upcoming: list[datetime] = []
                if definition is not None:
                    tick = definition.timing().next_after(now)
                    while tick is not None and len(upcoming) < 3:
                        upcoming.append(tick)
                        tick = definition.timing().next_after(tick)
                rows.append({"doc": doc, "definition": definition, "next": upcoming})
            render(resp, "schedules.html", **page_values(user, rows=rows))

        self.serve(req, resp, Role.VIEWER, respond)


class AuditPage(AdminResource):
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        def respond(user: Any) -> None:
            render(resp, "audit.html", **page_values(user, entries=self.admin.audit.newest()))

        self.serve(req, resp, Role.VIEWER, respond)


class UsersPage(AdminResource):
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        def respond(user: Any) -> None:
            accounts = self.admin.auth.users.with_roles()
            render(resp, "users.html", **page_values(user, accounts=accounts))

        self.serve(req, resp, Role.ADMIN, respond)


# -- helpers -----------------------------------------------------------------------------------


def job_filter(params: dict[str, str], now: datetime) -> browse.JobFilter:
    """A job filter from query or form parameters (unknown values are ignored, not errors)."""
    state = params.get("state") or None
    since = None
    if params.get("since_h", "").isdigit():
        since = now - timedelta(hours=int(params["since_h"]))
    return browse.JobFilter(
        state=JobState(state) if state in {s.value for s in JobState} else None,
        queue=params.get("queue") or None,
        task=params.get("task") or None,
        since=since,
        search=(params.get("q") or "")[:200] or None,
        due_after=now if params.get("delayed") == "1" else None,
    )


def _params(req: falcon.Request) -> dict[str, str]:
    names = ("state", "queue", "task", "since_h", "q", "delayed")
    return {name: value for name in names if (value := req.get_param(name))}


def _safe_next(raw: str | None) -> str:
    """Only a path of the dashboard (no open redirect to another site)."""
    if raw and raw.startswith("/admin") and not raw.startswith("//"):
        return raw
    return "/admin"


def sparkline(snap: dict[str, Any], width: int = 240, height: int = 40) -> dict[str, str]:
    """SVG polyline points for the last hour's succeeded and dead jobs per minute."""
    series = snap["throughput"]
    top = max([1, *series["succeeded"], *series["dead"]])
    step = width / max(1, len(series["succeeded"]) - 1)

    def points(values: list[int]) -> str:
        return " ".join(
            f"{i * step:.1f},{height - v / top * (height - 2) - 1:.1f}"
            for i, v in enumerate(values)
        )

    return {"succeeded": points(series["succeeded"]), "dead": points(series["dead"]),
            "peak": str(top)}  # fmt: skip

"""The dashboard: the queue and its operators' actions in the browser, under /admin.

Server-rendered pages (Jinja2, api/pages/templates/admin) with one small script for polling
and confirmations (api/pages/static/admin.js); no single-page app, no build step, nothing from
another origin. Off unless API_ADMIN_ENABLED=1 (`make run` turns it on and prints its URL).

    roles.py      viewer < operator < admin, on user accounts; granted by `python -m api.admin`
    gate.py       sign-in with the accounts' login, the session cookie, origin and CSRF checks
    snapshot.py   one stats snapshot per worker, shared by every open tab (REFRESH_S)
    pages.py      the pages (GET); actions.py the actions (POST), each through the queue's own
                  operations (the same as the CLI's) and written to the audit log (audit.py)
    redaction.py  what a job's payload shows
"""

from __future__ import annotations

from typing import Any

import falcon

from api.admin import actions, pages
from api.admin.audit import AuditLog
from api.admin.base import Admin
from api.admin.gate import Gate
from api.admin.snapshot import Snapshot
from api.auth.context import AuthContext
from queue_worker import JobStore


def mount(app: falcon.App[Any, Any], auth: AuthContext, store: JobStore) -> Admin:
    """Add the dashboard's routes to `app`; return its context."""
    audit = AuditLog(auth.db)
    admin = Admin(
        auth=auth,
        gate=Gate(auth, audit),
        store=store,
        audit=audit,
        snapshot=Snapshot(store, auth.clock),
        redact_keys=auth.settings.admin_redact_keys,
    )
    routes: list[tuple[str, object]] = [
        ("/admin/login", actions.LoginPage(admin)),
        ("/admin/logout", actions.LogoutAction(admin)),
        ("/admin", pages.OverviewPage(admin)),
        ("/admin/api/overview", pages.OverviewJson(admin)),
        ("/admin/queues", pages.QueuesPage(admin)),
        ("/admin/queues/{queue}/{verb}", actions.QueueAction(admin)),
        ("/admin/jobs", pages.JobsPage(admin)),
        ("/admin/jobs/{job_id}", pages.JobPage(admin)),
        ("/admin/jobs/{job_id}/{verb}", actions.JobAction(admin)),
        ("/admin/bulk", actions.BulkAction(admin)),
        ("/admin/processes", pages.ProcessesPage(admin)),
        ("/admin/schedules", pages.SchedulesPage(admin)),
        ("/admin/schedules/{name}/{verb}", actions.ScheduleAction(admin)),
        ("/admin/audit", pages.AuditPage(admin)),
        ("/admin/users", pages.UsersPage(admin)),
        ("/admin/users/role", actions.RoleAction(admin)),
        ("/admin/users/sessions", actions.UserSessionsAction(admin)),
    ]
    for path, resource in routes:
        app.add_route(path, resource)
    return admin

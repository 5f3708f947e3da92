"""The dashboard's actions (POST): each through the same queue operations as the CLI
(queue_worker.admin, the store's compare-and-set transitions, the schedules' store), each
checked for role, origin and CSRF token, and each written to the audit log."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import falcon
from bson import ObjectId
from bson.errors import InvalidId

from api.admin.base import Admin, AdminResource, form, form_lists, page_values
from api.admin.gate import NotAllowed
from api.admin.pages import _safe_next, job_filter
from api.admin.roles import Role
from api.admin.views import redirect, render
from api.auth.addresses import lookup_key
from api.errors import ApiError
from queue_worker import admin as queue_admin
from queue_worker.controls import Controls
from queue_worker.schedules import registry as schedules
from queue_worker.schedules.scheduler import Scheduler
from queue_worker.schedules.store import ScheduleStore
from queue_worker.schedules.timing import TimingError
from runtime import names

JOB_VERBS = {"retry": Role.OPERATOR, "cancel": Role.OPERATOR, "run-now": Role.OPERATOR,
             "delete": Role.ADMIN}  # fmt: skip


class LoginPage(AdminResource):
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        render(resp, "login.html", user=None, next=_safe_next(req.get_param("next")), error="")

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        sign_in(self.admin, req, resp)


def sign_in(admin: Admin, req: falcon.Request, resp: falcon.Response) -> None:
    """POST /admin/login: the account's email and password; a role is required."""
    fields = form(req)
    target = _safe_next(fields.get("next"))
    if not admin.gate.same_origin(req):
        render(resp, "login.html", 403, user=None, next=target,
               error="This sign-in did not come from the dashboard's own page.")  # fmt: skip
        return
    try:
        admin.gate.sign_in(req, resp, fields.get("email", ""), fields.get("password", ""))
    except NotAllowed as exc:
        render(resp, "login.html", 403, user=None, next=target, error=exc.message)
        return
    except ApiError as exc:
        render(resp, "login.html", getattr(exc, "status", 401), user=None, next=target,
               error=str(exc))  # fmt: skip
        return
    redirect(resp, target)


class LogoutAction(AdminResource):
    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        def respond(user: Any) -> None:
            self.admin.gate.sign_out(resp, user)
            redirect(resp, "/admin/login")

        self.serve(req, resp, Role.VIEWER, respond, change=True)


class JobAction(AdminResource):
    def on_post(self, req: falcon.Request, resp: falcon.Response, job_id: str, verb: str) -> None:
        needed = JOB_VERBS.get(verb)
        if needed is None:
            raise falcon.HTTPNotFound()

        def respond(user: Any) -> None:
            store, now = self.admin.store, self.admin.now()
            if verb == "retry":
                queue_admin.retry(store, job_id)
            elif verb == "cancel":
                queue_admin.cancel(store, job_id)
            elif verb == "run-now":
                queue_admin.run_now(store, job_id, now=now)
            else:
                queue_admin.delete_dead(store, job_id)
            self.admin.audit.record(at=now, email=user.email, action=f"job.{verb}", target=job_id)
            redirect(
                resp, "/admin/jobs?state=dead" if verb == "delete" else f"/admin/jobs/{job_id}"
            )

        self.serve(req, resp, needed, respond, change=True)


class BulkAction(AdminResource):
    """Retry or delete dead jobs: the ones ticked, or all that match a filter (a preview with
    the count first; at most queue_admin.BULK_CAP, run in batches)."""

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        def respond(user: Any) -> None:
            fields, lists = form(req), form_lists(req)
            if "op" in fields:  # a button of the list: "<action>-<scope>"
                fields["action"], _, fields["scope"] = fields["op"].partition("-")
            action = fields.get("action", "")
            if action not in ("retry", "delete"):
                raise NotAllowed(f"Unknown bulk action {action!r}.")
            now = self.admin.now()
            if fields.get("scope") == "selected":
                ids = [_oid(raw) for raw in lists.get("ids", [])][: queue_admin.BULK_CAP]
                query: dict[str, Any] = {"_id": {"$in": [oid for oid in ids if oid]}}
                described = {"ids": str(len(ids))}
            else:
                params = {k: v for k, v in fields.items() if k in
                          ("queue", "task", "since_h", "q")}  # fmt: skip
                flt = job_filter({**params, "state": "dead"}, now)
                query, described = flt.query(), flt.as_params()
                if fields.get("confirm") != "1":
                    count = len(queue_admin.dead_ids(self.admin.store, query))
                    render(resp, "bulk_preview.html", **page_values(
                        user, action=action, count=count, params=params,
                        capped=count >= queue_admin.BULK_CAP, cap=queue_admin.BULK_CAP,
                    ))  # fmt: skip
                    return
            done = queue_admin.bulk_dead(self.admin.store, action, query)
            self.admin.audit.record(at=now, email=user.email, action=f"bulk.{action}",
                                    target="dead jobs", count=done, filter=described)  # fmt: skip
            redirect(resp, "/admin/jobs?" + urlencode({"view": "dead", "done": f"{action}:{done}"}))

        self.serve(req, resp, Role.ADMIN, respond, change=True)


class QueueAction(AdminResource):
    def on_post(self, req: falcon.Request, resp: falcon.Response, queue: str, verb: str) -> None:
        if verb not in ("pause", "resume") or not names.is_valid(queue):
            raise falcon.HTTPNotFound()

        def respond(user: Any) -> None:
            controls, now = Controls(self.admin.store.db), self.admin.now()
            name = queue
            if verb == "pause":
                controls.pause(name, by=user.email, now=now)
            else:
                controls.resume(name)
            self.admin.audit.record(at=now, email=user.email, action=f"queue.{verb}", target=name)
            redirect(resp, "/admin/queues")

        self.serve(req, resp, Role.OPERATOR, respond, change=True)


class ScheduleAction(AdminResource):
    def on_post(self, req: falcon.Request, resp: falcon.Response, name: str, verb: str) -> None:
        if verb not in ("pause", "resume", "trigger"):
            raise falcon.HTTPNotFound()

        def respond(user: Any) -> None:
            now, docs = self.admin.now(), ScheduleStore(self.admin.store.db)
            definition = schedules.schedules.get(name)
            if verb == "pause":
                found = docs.pause(name, None)
            elif definition is None:
                raise NotAllowed(f"No schedule named {name!r} in this code.")
            elif verb == "resume":
                try:
                    found = docs.resume(name, definition.timing().next_after(now), now=now)
                except TimingError as exc:
                    raise NotAllowed(str(exc)) from None
            else:
                Scheduler(self.admin.store, [definition]).trigger(name, now)
                found = True
            if not found:
                raise NotAllowed(f"No schedule named {name!r}.")
            self.admin.audit.record(at=now, email=user.email, action=f"schedule.{verb}",
                                    target=name)  # fmt: skip
            redirect(resp, "/admin/schedules")

        self.serve(req, resp, Role.OPERATOR, respond, change=True)


class RoleAction(AdminResource):
    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        def respond(user: Any) -> None:
            fields = form(req)
            email, role = lookup_key(fields.get("email", "")), fields.get("role", "")
            try:
                wanted = None if role == "none" else Role.parse(role).label
            except ValueError as exc:
                raise NotAllowed(str(exc)) from None
            if email == user.email and wanted != "admin":
                raise NotAllowed("You cannot take your own admin role away here; use the CLI.")
            if not self.admin.auth.users.set_role(email, wanted):
                raise NotAllowed(f"No account with the address {email!r}.")
            target = f"{email} → {wanted or 'none'}"
            now = self.admin.now()
            self.admin.audit.record(at=now, email=user.email, action="user.role", target=target)
            redirect(resp, "/admin/users")

        self.serve(req, resp, Role.ADMIN, respond, change=True)


def _oid(raw: str) -> ObjectId | None:
    try:
        return ObjectId(raw)
    except (InvalidId, TypeError):
        return None

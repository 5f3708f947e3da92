"""The dashboard's actions (POST): each through the same queue operations as the CLI
(queue_worker.admin, the store's compare-and-set transitions, the schedules' store), each
checked for role, origin and CSRF token, and each written to the audit log."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import falcon
import msgspec
from bson import ObjectId
from bson.errors import InvalidId

from api.admin.base import Admin, AdminResource, form, form_lists, page_values
from api.admin.gate import NotAllowed
from api.admin.pages import _safe_next, job_filter
from api.admin.roles import Role
from api.admin.views import redirect, render
from api.auth.addresses import lookup_key
from api.auth.steps.notices import record_event
from api.auth.steps.revocation import end_all_sessions
from api.auth.stores.security_log import EventType
from api.auth.stores.users import RoleChange
from api.errors import ApiError, ValidationFailed
from api.schemas import MfaLoginRequest
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
        render(resp, "login.html", user=None, next=_safe_next(req.get_param("next")), error="",
               mfa_token="")  # fmt: skip

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        sign_in(self.admin, req, resp)


def sign_in(admin: Admin, req: falcon.Request, resp: falcon.Response) -> None:
    """POST /admin/login, in two steps: the email and password, then (with the step's
    mfa_token) a code or a recovery code; a role and a second factor are required."""
    fields = form(req)
    target = _safe_next(fields.get("next"))
    token = fields.get("mfa_token", "")
    if not admin.gate.same_origin(req):
        render(resp, "login.html", 403, user=None, next=target, mfa_token="",
               error="This sign-in did not come from the dashboard's own page.")  # fmt: skip
        return
    try:
        if token:
            admin.gate.complete(req, resp, _code_step(fields))
        else:
            step = admin.gate.sign_in(
                req, resp, fields.get("email", ""), fields.get("password", "")
            )
            render(resp, "login.html", user=None, next=target, error="", mfa_token=step.mfa_token)
            return
    except NotAllowed as exc:
        render(resp, "login.html", 403, user=None, next=target, error=exc.message, mfa_token="")
        return
    except ApiError as exc:
        status = getattr(exc, "status", 401)
        # A wrong code keeps the step open (until its limit); an expired step starts over.
        keep = token if getattr(exc, "code", "") == "invalid_code" else ""
        render(resp, "login.html", status, user=None, next=target, error=str(exc),
               mfa_token=keep)  # fmt: skip
        return
    redirect(resp, target)


def _code_step(fields: dict[str, str]) -> MfaLoginRequest:
    """The code step's form as the JSON API's request (the same checks: 422 on nonsense)."""
    values = {"mfa_token": fields.get("mfa_token", "")}
    for name in ("code", "recovery_code"):
        if fields.get(name, "").strip():
            values[name] = fields[name].strip()
    try:
        return msgspec.convert(values, MfaLoginRequest)
    except msgspec.ValidationError:
        raise ValidationFailed("Type the 6-digit code, or one recovery code.") from None


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
            if action == "delete":
                self.admin.gate.require_recent(user)
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
            self.admin.gate.require_recent(user)
            outcome = self.admin.auth.users.set_role(email, wanted)
            if outcome is not RoleChange.DONE:
                raise NotAllowed(outcome.message(email))
            target = f"{email} → {wanted or 'none'}"
            now = self.admin.now()
            self.admin.audit.record(at=now, email=user.email, action="user.role", target=target)
            redirect(resp, "/admin/users")

        self.serve(req, resp, Role.ADMIN, respond, change=True)


class UserSessionsAction(AdminResource):
    """End every session of one account (an admin's answer to a stolen laptop)."""

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        def respond(user: Any) -> None:
            self.admin.gate.require_recent(user)
            email = lookup_key(form(req).get("email", ""))
            target = self.admin.auth.users.find_for_login(email)
            if target is None:
                raise NotAllowed(f"No account with the address {email!r}.")
            now = self.admin.now()
            end_all_sessions(self.admin.auth, target["_id"], reason="ended_by_admin", now=now)
            record_event(self.admin.auth, target["_id"], EventType.SESSIONS_ENDED_BY_ADMIN, now=now)
            self.admin.audit.record(at=now, email=user.email, action="user.sessions_ended",
                                    target=email)  # fmt: skip
            redirect(resp, "/admin/users")

        self.serve(req, resp, Role.ADMIN, respond, change=True)


def _oid(raw: str) -> ObjectId | None:
    try:
        return ObjectId(raw)
    except (InvalidId, TypeError):
        return None

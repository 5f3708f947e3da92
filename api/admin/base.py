"""What every dashboard resource shares: the context, and one way to answer failures as pages."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs, quote

import falcon
from pymongo.errors import PyMongoError

from api.admin.audit import AuditLog
from api.admin.gate import AdminUser, Gate, NotAllowed, SignInRequired
from api.admin.roles import Role
from api.admin.snapshot import Snapshot
from api.admin.views import redirect, render
from api.auth.context import AuthContext
from api.errors import ApiError
from queue_worker import JobStore
from queue_worker.errors import InvalidTransitionError, JobNotFoundError, QueueError

log = logging.getLogger("api.admin")


@dataclass(frozen=True)
class Admin:
    """The dashboard's collaborators."""

    auth: AuthContext
    gate: Gate
    store: JobStore
    audit: AuditLog
    snapshot: Snapshot
    redact_keys: tuple[str, ...]

    def now(self) -> datetime:
        return self.auth.clock()


def form(req: falcon.Request) -> dict[str, str]:
    """The posted form's fields (first value of each)."""
    body: bytes = req.context.body or b""
    parsed = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
    return {key: values[0] for key, values in parsed.items()}


def form_lists(req: falcon.Request) -> dict[str, list[str]]:
    body: bytes = req.context.body or b""
    return parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)


class AdminResource:
    """A dashboard resource: `serve` runs a responder with its user, failures become pages."""

    def __init__(self, admin: Admin) -> None:
        self.admin = admin

    def serve(
        self,
        req: falcon.Request,
        resp: falcon.Response,
        needed: Role,
        respond: Callable[[AdminUser], None],
        *,
        change: bool = False,
    ) -> None:
        try:
            user = self.admin.gate.user(req, resp, needed)
            if change:
                token = req.get_header("X-CSRF-Token") or form(req).get("csrf")
                self.admin.gate.check_change(req, user, token)
            respond(user)
            if change:
                self.admin.snapshot.invalidate()  # show what the action did at once
        except SignInRequired:
            if req.method == "GET":
                redirect(resp, f"/admin/login?next={quote(req.relative_uri, safe='/')}")
            else:
                message = "Your dashboard session has ended. Sign in again."
                render(resp, "error.html", 401, title="Signed out", message=message, user=None)
        except NotAllowed as exc:
            render(resp, "error.html", 403, title="Not allowed", message=exc.message, user=None)
        except JobNotFoundError as exc:
            render(resp, "error.html", 404, title="Not found", message=str(exc), user=None)
        except (InvalidTransitionError, QueueError) as exc:
            render(resp, "error.html", 409, title="Refused", message=str(exc), user=None)
        except ApiError as exc:
            status = getattr(exc, "status", 400)
            render(resp, "error.html", status, title="Refused", message=str(exc), user=None)
        except PyMongoError as exc:
            # A slow or absent database: say so (the overview's script simply polls again).
            log.warning("dashboard request failed on the database: %s", type(exc).__name__)
            message = "The database did not answer in time. Try again in a moment."
            render(resp, "error.html", 503, title="Unavailable", message=message, user=None)
            resp.set_header("Retry-After", "5")


def page_values(user: AdminUser, **values: Any) -> dict[str, Any]:
    return {"user": user, "can_operate": user.can(Role.OPERATOR),
            "is_admin": user.can(Role.ADMIN), **values}  # fmt: skip

"""Recording a security event, and mailing the user about the ones they must hear of.

The flow's own change is already made when this runs; a security log that cannot be written
(the database just went away) must not turn a done password change into an error, so a failed
write is logged and counted (db_operation_errors_total{operation="security_events.record"}), and
the mail still goes out: its job needs the event's id and type, not the document.
"""

from __future__ import annotations

import logging
from datetime import datetime

from bson import ObjectId

from api.auth.context import AuthContext, Client
from api.auth.stores.security_log import MAILED, EventType
from api.errors import ServiceUnavailable

log = logging.getLogger("api.auth")


def record_event(
    ctx: AuthContext,
    user_id: ObjectId,
    event: EventType,
    *,
    now: datetime,
    client: Client | None = None,
    mail: bool = True,
) -> ObjectId:
    """Append `event` to the user's security log; mail it if it is one of MAILED (and `mail`)."""
    event_id = ObjectId()
    try:
        with ctx.admission.operation("security_events.record"):
            ctx.security.record(
                user_id,
                event,
                at=now,
                ip=client.ip if client else None,
                user_agent=client.user_agent if client else None,
                event_id=event_id,
            )
    except ServiceUnavailable:
        log.warning("security event %s of user %s not recorded", event.value, user_id)
    ctx.metrics.security_events.labels(event.value).inc()
    if mail and event in MAILED:
        ctx.events.security_notice(
            user_id, event_id, event.value, where=client.ip if client else None
        )
    return event_id

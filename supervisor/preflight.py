"""The preflight check: a short-lived child that proves the consumers could start at all.

It validates the queue settings, imports the task modules and waits (bounded) for the database,
then exits with a code the master turns into one clear message, instead of N consumers failing
the same way. It runs in a child so the master never holds a database client.
"""

from __future__ import annotations

import logging
import os

from pymongo.errors import PyMongoError

from queue_worker.builtin import load_tasks
from queue_worker.errors import ConfigError
from queue_worker.schedules import registry as schedules
from queue_worker.schedules.scheduler import Scheduler
from queue_worker.settings import QueueSettings
from queue_worker.tasks import ResourceSetup, open_resources
from supervisor.bootstrap import open_store, queue_settings, wait_for_database
from supervisor.errors import ExitCode
from supervisor.liveness import Liveness
from supervisor.settings import SupervisorSettings

log = logging.getLogger("supervisor.preflight")


def check(liveness: Liveness, supervisor: SupervisorSettings) -> int:
    """Return OK, or an exit code with the reason left in `liveness` for the master."""
    try:
        settings = queue_settings()
    except ConfigError as exc:
        liveness.leave_note(f"bad queue setting: {exc}")
        return ExitCode.USAGE
    warn_if_leases_expire_first(settings, supervisor)
    try:
        registry = load_tasks(settings)
    except Exception as exc:  # noqa: BLE001 - any import-time error is a boot failure to report
        liveness.leave_note(f"cannot load task modules: {type(exc).__name__}: {exc}")
        return ExitCode.BOOT_FAILURE
    if not registry.names():
        log.warning("no tasks are registered: set QUEUE_TASK_MODULES (e.g. api.tasks)")
    client, store = open_store(settings, "supervisor-preflight", timeout_ms=2000, pool=1)
    try:
        # The tasks' resources (a mailer from SMTP_*, ...): a bad setting stops the start here.
        open_resources(registry, ResourceSetup(env=os.environ, db=store.db))
    except ConfigError as exc:
        client.close()
        liveness.leave_note(f"task resources: {exc}")
        return ExitCode.USAGE
    try:
        # A schedule naming an unknown task, or remembering ticks longer than their keys.
        Scheduler(store, schedules.all()).check()
    except ConfigError as exc:
        client.close()
        liveness.leave_note(f"schedules: {exc}")
        return ExitCode.USAGE
    try:
        wait_for_database(client, supervisor.db_wait_s)
        store.ensure_indexes()
    except ConfigError as exc:
        liveness.leave_note(f"unusable database: {exc}")
        return ExitCode.USAGE
    except PyMongoError as exc:
        where = _redact(settings.mongodb_uri)
        waited = supervisor.db_wait_s
        liveness.leave_note(f"no answer from {where} within {waited:g}s: {type(exc).__name__}")
        return ExitCode.DATABASE_UNREACHABLE
    finally:
        client.close()
    return ExitCode.OK


def warn_if_leases_expire_first(settings: QueueSettings, supervisor: SupervisorSettings) -> None:
    """Warn when a hung consumer's leases can expire before the master kills it."""
    kill_after = supervisor.hang_timeout_s + supervisor.kill_grace_s
    window = settings.lease_s - settings.heartbeat_s
    if kill_after >= window:
        log.warning(
            "hang timeout + kill grace (%gs) >= lease - heartbeat (%gs): a hung consumer's jobs "
            "may be rescued by others before it is killed, without the crash recorded",
            kill_after,
            window,
        )


def _redact(uri: str) -> str:
    """Drop credentials from a URI before it reaches a log line."""
    scheme, sep, rest = uri.partition("://")
    if "@" in rest.split("/", 1)[0]:
        rest = rest.split("@", 1)[1]
    return f"{scheme}{sep}{rest}"

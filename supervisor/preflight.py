"""The preflight check: a short-lived child that proves the consumers could start at all.

It validates the queue settings, imports the task modules and waits (bounded) for the database,
then exits with a code the master turns into one clear message, instead of N consumers failing
the same way. It runs in a child so the master never holds a database client.
"""

from __future__ import annotations

from pymongo.errors import PyMongoError

from queue_worker.errors import ConfigError
from supervisor.bootstrap import open_store, queue_settings, task_registry, wait_for_database
from supervisor.errors import ExitCode
from supervisor.liveness import Liveness


def check(liveness: Liveness, db_wait_s: float) -> int:
    """Return OK, or an exit code with the reason left in `liveness` for the master."""
    try:
        settings = queue_settings()
    except ConfigError as exc:
        liveness.leave_note(f"bad queue setting: {exc}")
        return ExitCode.USAGE
    try:
        task_registry(settings)
    except Exception as exc:  # noqa: BLE001 - any import-time error is a boot failure to report
        liveness.leave_note(f"cannot load task modules: {type(exc).__name__}: {exc}")
        return ExitCode.BOOT_FAILURE
    client, store = open_store(settings, "supervisor-preflight", timeout_ms=2000, pool=1)
    try:
        wait_for_database(client, db_wait_s)
        store.ensure_indexes()
    except PyMongoError as exc:
        liveness.leave_note(
            f"database unreachable after {db_wait_s:g}s ({_redact(settings.mongodb_uri)}): "
            f"{type(exc).__name__}"
        )
        return ExitCode.DATABASE_UNREACHABLE
    finally:
        client.close()
    return ExitCode.OK


def _redact(uri: str) -> str:
    """Drop credentials from a URI before it reaches a log line."""
    scheme, sep, rest = uri.partition("://")
    if "@" in rest.split("/", 1)[0]:
        rest = rest.split("@", 1)[1]
    return f"{scheme}{sep}{rest}"

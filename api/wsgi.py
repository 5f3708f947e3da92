"""The WSGI entry point (`gunicorn -c deploy/gunicorn.conf.py api.wsgi:app`): the only module
that reads the environment.

Settings are parsed at import, so a worker with a missing, short or placeholder secret fails to
boot and gunicorn stops ("Worker failed to boot") instead of serving. The database client and
the Falcon app are built on the first request, inside the worker process: after gunicorn's fork
and after gevent's monkey-patching, even with `--preload`. The client's pool is bounded and every
operation has a deadline (timeoutMS), so a slow database yields fast 503s, not piled-up greenlets.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections.abc import Callable, Mapping
from typing import Any

import falcon

from api.app import create_app, utcnow
from api.gevent_compat import quiet_condition_ownership_checks
from api.metrics import ApiMetrics
from api.settings import ApiSettings
from api.tasks import with_product_tasks
from queue_worker import JobStore, QueueSettings
from queue_worker.builtin import load_tasks
from queue_worker.connection import connect, database
from runtime.env import SettingsError

App = falcon.App[falcon.Request, falcon.Response]


class LazyApp:
    """A WSGI callable that builds the real app on its first request, once per process."""

    def __init__(self, factory: Callable[[], App]) -> None:
        self._factory = factory
        self._app: App | None = None
        self._lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        app = self._app
        if app is None:
            with self._lock:
                if self._app is None:
                    self._app = self._factory()
                app = self._app
        return app(environ, start_response)


def build(env: Mapping[str, str]) -> LazyApp:
    """Validate the configuration now and return the app, whose clients are created lazily."""
    settings = ApiSettings.from_env(env)
    queue_settings = with_product_tasks(QueueSettings.from_env(env))
    # The tasks' declared defaults (queue, timeout, attempts) apply to the jobs the API enqueues.
    registry = load_tasks(queue_settings)
    unknown = sorted(settings.submittable_tasks - set(registry.names()))
    if unknown:
        raise SettingsError(
            f"API_SUBMITTABLE_TASKS names tasks no loaded task module registers: {unknown} "
            "(check QUEUE_TASK_MODULES, and QUEUE_ENABLE_BENCH_TASKS for bench.*)"
        )

    def factory() -> App:
        # In the worker, after gevent's patching: pymongo's pool must not yield inside its lock.
        quiet_condition_ownership_checks()
        client = connect(
            queue_settings,
            app_name="api",
            max_pool_size=settings.db_pool_size,
            timeout_ms=settings.db_timeout_ms,
            operation_timeout_ms=settings.db_timeout_ms,
        )
        db = database(client, queue_settings)
        store = JobStore(db, queue_settings, registry=registry)
        return create_app(settings, db, store, clock=utcnow, metrics=ApiMetrics())

    return LazyApp(factory)


def _configure_logging() -> None:
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(
            level=logging.INFO,
            stream=sys.stderr,
            format="%(asctime)s %(levelname)s [%(process)d] %(name)s: %(message)s",
        )


_configure_logging()
app = build(os.environ)

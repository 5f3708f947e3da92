"""api.wsgi reads the environment once and defers every client to the first request."""

from __future__ import annotations

import subprocess
import sys

from apihelpers import secret_env


def test_importing_the_wsgi_module_opens_no_database_connection() -> None:
    """At import (in gunicorn's master with --preload, or before gevent patches) no client
    exists yet: the app is built on the first request, in the worker."""
    code = "import api.wsgi as w\nassert w.app._app is None\nprint('lazy-ok')\n"
    env = {
        **secret_env(),
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": ".",
        "MONGODB_URI": "mongodb://127.0.0.1:1/x?directConnection=true",
    }
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert "lazy-ok" in result.stdout

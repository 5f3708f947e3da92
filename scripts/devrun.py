"""`make run`: the whole system on one machine, in the foreground, until Ctrl-C.

Starts, in order: the local database (unless MONGODB_URI is set), the API under gunicorn with
gevent workers, and the supervisor with its consumers. Ctrl-C (or SIGTERM) stops them in reverse
order — the supervisor drains its consumers first — and leaves no process behind. If any of them
exits on its own, the rest are stopped too and the exit code is non-zero.

Secrets: the API refuses placeholder secrets, so on first run this script generates per-machine
development secrets into `var/dev.env` (ignored by git) and reuses them afterwards.
"""

from __future__ import annotations

import base64
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import localdb

ROOT = Path(__file__).resolve().parent.parent
VAR = ROOT / "var"
DEV_ENV = VAR / "dev.env"
BIN = Path(sys.executable).parent
DEV_LIMITS = {
    "API_SIGNUP_MAX_PER_IP": "1000",
    "API_LOGIN_MAX_FAILURES_PER_IP": "1000",
    "API_MAX_CONNECTIONS_PER_CLIENT": "0",
}


def main() -> int:
    os.chdir(ROOT)
    VAR.mkdir(exist_ok=True)
    env = dict(os.environ)
    for key, value in load_dev_env().items():
        env.setdefault(key, value)
    env.setdefault("PYTHONPATH", str(ROOT))
    env.setdefault("API_BIND", "127.0.0.1:8000")
    env.setdefault("SUPERVISOR_METRICS_PORT", "9100")
    env.setdefault("QUEUE_TASK_MODULES", "api.tasks")  # the product's tasks, as deployed
    # A development system: clients may submit the bench tasks, and local consumers run them.
    env.setdefault("QUEUE_ENABLE_BENCH_TASKS", "1")
    env.setdefault("API_SUBMITTABLE_TASKS", "bench.noop,bench.sleep")
    env.setdefault("API_ADMIN_ENABLED", "1")  # the dashboard; off by default in production
    # Development limits: one developer (and the seed's load script, 50 sign-ups at once) sends
    # everything from one address. Production defaults stay strict.
    for key, value in DEV_LIMITS.items():
        env.setdefault(key, value)

    stop_requested = localdb.catch_stop_signals()

    database: localdb.LocalDB | None = None
    started: list[tuple[str, subprocess.Popen[bytes]]] = []
    code = 0
    try:
        if not env.get("MONGODB_URI"):
            port = int(env.get("LOCAL_DB_PORT", "27017"))
            database = localdb.start(port=port, data_dir=VAR / "db", log_path=VAR / "db.log")
            env["MONGODB_URI"] = database.uri()
            print(f"database   {env['MONGODB_URI']} (local SecantusDB, data in var/db)", flush=True)
        started.append(("api", spawn(api_command(), env, "api")))
        started.append(("supervisor", spawn(supervisor_command(), env, "supervisor")))
        base = f"http://{env['API_BIND']}"
        print(f"api        {base}   docs: {base}/docs   metrics: {base}/metrics", flush=True)
        print(
            f"supervisor metrics: http://127.0.0.1:{env['SUPERVISOR_METRICS_PORT']}/metrics",
            flush=True,
        )
        if env["API_ADMIN_ENABLED"] == "1":
            print(
                f"dashboard  {base}/admin   (an account needs a verified address, a second "
                f"factor from {base}/account/security, and a role: "
                ".venv/bin/python -m api.admin grant EMAIL admin)",
                flush=True,
            )
        limits = ", ".join(f"{key}={env[key]}" for key in DEV_LIMITS)
        print(f"limits     development: {limits}", flush=True)
        print("Ctrl-C stops everything.", flush=True)
        while not stop_requested() and code == 0:
            for name, process in started:
                if process.poll() is not None:
                    print(f"{name} exited with code {process.returncode}; stopping", flush=True)
                    code = 1
            time.sleep(0.2)
    finally:
        for _name, process in reversed(started):
            localdb.stop_process(process, timeout_s=60)
        if database is not None:
            database.stop()
        print("stopped.", flush=True)
    return code


def api_command() -> list[str]:
    return [str(BIN / "gunicorn"), "-c", "deploy/gunicorn.conf.py", "api.wsgi:app"]


def supervisor_command() -> list[str]:
    return [str(BIN / "python"), "-m", "supervisor"]


def spawn(command: list[str], env: dict[str, str], role: str) -> subprocess.Popen[bytes]:
    """Start one role in its own session with its own multiprocess-metrics directory."""
    # The role empties (and if needed creates) the directory itself at start.
    role_env = dict(env, PROMETHEUS_MULTIPROC_DIR=str(VAR / "run" / f"{role}-metrics"))
    # Own session: Ctrl-C reaches only this script, which then stops the roles in order.
    return subprocess.Popen(command, env=role_env, start_new_session=True)


def load_dev_env() -> dict[str, str]:
    """Read var/dev.env, creating it with fresh random development secrets on first use, and
    adding any secret a newer version needs to an older file."""
    if not DEV_ENV.exists():
        DEV_ENV.write_text("# Development secrets for `make run`, generated here. Never commit.\n")
        DEV_ENV.chmod(0o600)
    values = read_env_file(DEV_ENV)
    missing = {k: make() for k, make in DEV_SECRETS.items() if k not in values}
    if missing:
        with DEV_ENV.open("a") as out:
            out.writelines(f"{key}={value}\n" for key, value in missing.items())
    return {**values, **missing}


def read_env_file(path: Path) -> dict[str, str]:
    values: dict[str, str] = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    return values


def _secret() -> str:
    return base64.urlsafe_b64encode(secrets.token_bytes(48)).decode().rstrip("=")


def _signing_key() -> str:
    """A new ES256 key entry, made by the project's own generator (api.auth.tokens.keys)."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))  # run as `python scripts/devrun.py`: the project's root
    from api.auth.tokens.signing_keys import new_entry

    return new_entry(datetime.now(UTC))


DEV_SECRETS: dict[str, Callable[[], str]] = {
    "API_JWT_KEYS": lambda: f"dev1:{_secret()}",
    "API_JWT_ACTIVE_KID": lambda: "dev1",
    "API_PASSWORD_PEPPER": _secret,
    "API_ACCOUNT_TOKEN_KEYS": lambda: f"dev1:{_secret()}",
    "API_MFA_KEYS": lambda: f"dev1:{_secret()}",
    # ES256 access tokens, verifiable from /.well-known/jwks.json (api/auth/tokens/signing_keys.py).
    "API_JWT_SIGNING_KEYS": _signing_key,
}


if __name__ == "__main__":
    sys.exit(main())

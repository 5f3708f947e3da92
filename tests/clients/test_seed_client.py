"""The seed service's own client calls, made by axios (the library its scripts use) in Node,
against a real gunicorn API with `make run`'s development limits.

Node and the pinned axios come from Debian and npm (`make test` installs both: see
scripts/install_test_tools.sh and tests/clients/package-lock.json)."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from apiserver import ApiServer, start_api
from devrun import DEV_LIMITS

HERE = Path(__file__).parent


@pytest.fixture
def api(mongo_env: dict[str, str]) -> Iterator[ApiServer]:
    """The API as `make run` starts it: two workers, the development limits."""
    server = start_api(mongo_env, workers=2, **DEV_LIMITS)
    yield server
    server.stop()


def test_the_seed_clients_flow_and_heavy_load_pass_unchanged(api: ApiServer) -> None:
    node = shutil.which("node")
    assert node, "node is missing: scripts/install_test_tools.sh installs it"
    assert (HERE / "node_modules" / "axios").is_dir(), "run `npm ci` in tests/clients (make test)"
    run = subprocess.run(
        [node, str(HERE / "seed_flow.mjs"), f"http://127.0.0.1:{api.port}"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout)
    flow = result["flow"]
    assert (flow["signup"], flow["login"], flow["profile"]) == (201, 200, 200)
    assert (flow["refresh"], flow["logout"]) == (200, 204)
    assert flow["refreshAfterLogout"] in (401, 403)
    assert result["load"] == {"201": 50}

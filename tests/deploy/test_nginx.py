"""The shipped nginx config, run for real in front of the real API: it is valid, it hands the
API only complete requests (slow clients never reach it), it limits connections per client
address, and the API sees the client's address through X-Forwarded-For."""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import localdb
import pytest
from apiserver import ApiServer, start_api
from prom_harness import DEPLOY, INSTALL_HINT
from pymongo.database import Database

SITE = DEPLOY / "nginx" / "jobauth.conf"


def nginx_binary() -> str:
    found = shutil.which("nginx") or (
        "/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None
    )
    if found is None:
        pytest.fail(f"nginx is not installed: {INSTALL_HINT}")
    return found


def main_config(prefix: Path, site: str) -> str:
    """A minimal main config around the shipped site config (as a distribution's would be)."""
    return f"""
daemon off;
master_process off;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    {site}
}}
"""


@pytest.fixture
def proxied(mongo_env: dict[str, str], tmp_path: Path) -> Iterator[tuple[ApiServer, int]]:
    """The API (behind one proxy hop) and the shipped nginx config in front of it."""
    api = start_api(mongo_env, workers=1, API_TRUSTED_PROXY_HOPS="1", API_WORKER_CONNECTIONS="40")
    port = localdb.free_port()
    site = SITE.read_text()
    site = site.replace("server 127.0.0.1:8000;", f"server 127.0.0.1:{api.port};")
    site = re.sub(r"listen 8080;", f"listen 127.0.0.1:{port};", site)
    config = tmp_path / "nginx.conf"
    config.write_text(main_config(tmp_path, site))
    process = subprocess.Popen(
        [nginx_binary(), "-p", str(tmp_path), "-c", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 30
        while not localdb_listening(port):
            assert process.poll() is None, (tmp_path / "error.log").read_text()
            assert time.monotonic() < deadline, "nginx did not start"
            time.sleep(0.05)  # polling with a deadline
        yield api, port
    finally:
        process.terminate()
        process.wait(timeout=15)
        api.stop()


def localdb_listening(port: int) -> bool:
    return not localdb.port_is_free(port)


def request(port: int, raw: bytes, source: str = "127.0.0.1") -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=30, source_address=(source, 0)) as s:
        s.sendall(raw)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
        return data


def test_the_config_is_valid_for_nginx(tmp_path: Path) -> None:
    """`nginx -t` accepts the shipped site config inside a minimal main config."""
    config = tmp_path / "nginx.conf"
    config.write_text(main_config(tmp_path, SITE.read_text()))
    result = subprocess.run(
        [nginx_binary(), "-t", "-p", str(tmp_path), "-c", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr


def test_slow_clients_never_reach_the_api_and_others_are_served(
    proxied: tuple[ApiServer, int],
) -> None:
    """60 clients of one address trickling their bodies to nginx: it holds 50 and refuses 10
    (503); the API sees none of them (nginx buffers bodies), while a request from another
    address is proxied and answered at once."""
    api, port = proxied
    head = (
        b"POST /users/login HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
        b"Content-Length: 100\r\n\r\n{"
    )
    slow = []
    for _ in range(60):
        sock = socket.create_connection(
            ("127.0.0.1", port), timeout=30, source_address=("127.0.0.2", 0)
        )
        sock.sendall(head)
        slow.append(sock)
    answer = request(port, b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
    refused = 0
    for sock in slow:
        sock.settimeout(0.5)
        try:
            refused += sock.recv(12).startswith(b"HTTP/1.1 503")
        except OSError:
            pass  # held by nginx, waiting for its body
    assert refused == 10
    metrics = api.request("GET", "/metrics").body.decode()
    assert 'route="/users/login"' not in metrics  # not one slow body got through
    for sock in slow:
        sock.close()


def test_the_api_sees_the_client_address_through_the_proxy(
    proxied: tuple[ApiServer, int], db: Database[dict[str, object]]
) -> None:
    """With API_TRUSTED_PROXY_HOPS=1 the API limits sign-ups by the client's address, taken
    from nginx's X-Forwarded-For, not by the proxy's: two clients each have their own budget."""
    api, port = proxied
    body = b'{"name":"A","email":"a%d@example.com","password":"correct horse battery staple"}'
    for n, source in enumerate(("127.0.0.3", "127.0.0.4")):
        payload = body % n
        raw = (
            b"POST /users/signup HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
            b"Connection: close\r\nContent-Length: "
            + str(len(payload)).encode()
            + b"\r\n\r\n"
            + payload
        )
        assert request(port, raw, source).startswith(b"HTTP/1.1 201")
    counters = {str(doc["_id"]).split(":")[1] for doc in db["rate_limits"].find()}
    assert counters == {"127.0.0.3", "127.0.0.4"}


def test_the_metrics_are_refused_to_clients_on_other_hosts(proxied: tuple[ApiServer, int]) -> None:
    """Through the public proxy /metrics answers only an agent on the proxy's own host: any
    other client gets 403 (Prometheus scrapes each API host's own port instead)."""
    _, port = proxied
    raw = b"GET /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
    assert request(port, raw, "127.0.0.7").startswith(b"HTTP/1.1 403")
    local = request(port, raw, "127.0.0.1")
    assert local.startswith(b"HTTP/1.1 200") and b"http_requests_total" in local

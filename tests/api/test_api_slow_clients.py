"""Hostile connections against the real gunicorn worker: slow bodies, connection floods from
one address, idle keep-alives, malformed chunked bodies. Bounded in count and time, on loopback
(the flood comes from 127.0.0.2, the probes from 127.0.0.1: Linux routes all of 127/8 locally)."""

from __future__ import annotations

import select
import socket
import threading
import time
from collections.abc import Iterator

import pytest
from apiserver import ApiServer, start_api

FLOOD_FROM = "127.0.0.2"


def connect(api: ApiServer, source: str = FLOOD_FROM, timeout_s: float = 30.0) -> socket.socket:
    sock = socket.create_connection(
        ("127.0.0.1", api.port), timeout=timeout_s, source_address=(source, 0)
    )
    return sock


def slow_post_head(length: int = 100) -> bytes:
    return (
        b"POST /users/login HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
        b"Content-Length: " + str(length).encode() + b"\r\n\r\n{"
    )


def read_response(sock: socket.socket) -> bytes:
    """Read until the server closes or sends a complete response head and body."""
    data = b""
    try:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
            head, sep, body = data.partition(b"\r\n\r\n")
            if sep:
                length = [
                    int(line.split(b":", 1)[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                ]
                if length and len(body) >= length[0]:
                    break
    except OSError:
        pass
    return data


@pytest.fixture
def small_api(mongo_env: dict[str, str]) -> Iterator[ApiServer]:
    """One worker with 40 connections, 5 per client address, a 2 s body deadline, and a 30 s
    keep-alive (long, so that a short one under pressure is visible)."""
    server = start_api(
        mongo_env,
        workers=1,
        API_WORKER_CONNECTIONS="40",
        API_MAX_CONNECTIONS_PER_CLIENT="5",
        API_BODY_TIMEOUT_S="2",
        API_KEEPALIVE_S="30",
    )
    yield server
    server.stop()


def test_a_body_trickling_in_is_cut_off_with_408_at_its_deadline(small_api: ApiServer) -> None:
    """A client sending one byte of its body now and then is answered 408 and disconnected once
    the whole-body deadline (2 s) has passed; it cannot hold its connection for ever."""
    sock = connect(small_api)
    sock.sendall(slow_post_head())
    started = time.monotonic()
    stop = threading.Event()

    def trickle() -> None:
        while not stop.wait(0.5):
            try:
                sock.sendall(b" ")
            except OSError:
                return

    threading.Thread(target=trickle, daemon=True).start()
    response = read_response(sock)
    stop.set()
    sock.close()
    assert response.startswith(b"HTTP/1.1 408"), response[:200]
    assert b"request_timeout" in response
    assert time.monotonic() - started < 30  # cut at the deadline, not at the trickle's end


def test_a_flood_from_one_address_is_refused_and_others_are_served(small_api: ApiServer) -> None:
    """60 slow-body connections from one address: the 5 it may hold wait for their deadline,
    the rest are refused at once (503), and /healthz from another address answers meanwhile.
    Without the limit they would take all 40 of the worker's places."""
    flood = []
    refused = 0
    for _ in range(60):
        sock = connect(small_api)
        sock.sendall(slow_post_head())
        flood.append(sock)
    for sock in flood:
        sock.settimeout(0.5)
        try:
            if sock.recv(12).startswith(b"HTTP/1.1 503"):
                refused += 1
        except OSError:
            pass  # still waiting for its body: one of the 5 held
    assert refused == 55
    probe = small_api.request("GET", "/healthz", timeout_s=10)
    assert probe.status == 200
    for sock in flood:
        sock.close()


def test_without_a_per_client_limit_slow_bodies_still_free_their_places(
    mongo_env: dict[str, str],
) -> None:
    """Behind a proxy (no per-client limit), 40 slow bodies fill a worker's 40 places; each is
    cut at its 2 s deadline, so /healthz is answered soon after instead of never."""
    api = start_api(
        mongo_env,
        workers=1,
        API_WORKER_CONNECTIONS="40",
        API_TRUSTED_PROXY_HOPS="1",
        API_BODY_TIMEOUT_S="2",
    )
    try:
        flood = [connect(api) for _ in range(40)]
        for sock in flood:
            sock.sendall(slow_post_head())
        probe = api.request("GET", "/healthz", timeout_s=60)
        assert probe.status == 200
        for sock in flood:
            sock.close()
    finally:
        api.stop()


def test_slow_bodies_from_many_addresses_get_a_short_deadline_when_the_worker_is_busy(
    mongo_env: dict[str, str],
) -> None:
    """A flood of slow bodies from 30 addresses (5 each allowed, so the per-client cap does not
    stop it) fills over half of a worker's 40 places: from then on a body must arrive within
    1 s, not the 30 s deadline, so each flooding connection is cut (408) at once, the worker's
    places come back, and /healthz from another address is answered. Before: every one of them
    held its place for 30 s."""
    api = start_api(
        mongo_env,
        workers=1,
        API_WORKER_CONNECTIONS="40",
        API_MAX_CONNECTIONS_PER_CLIENT="5",
        API_BODY_TIMEOUT_S="30",
    )
    flood: list[socket.socket] = []
    try:
        for n in range(30):
            sock = connect(api, source=f"127.0.2.{n + 1}")
            sock.sendall(slow_post_head())
            flood.append(sock)
        started = time.monotonic()
        # Those beyond half of 40 were read under pressure: cut long before the 30 s deadline.
        cut = [read_response(sock) for sock in flood[-5:]]
        assert time.monotonic() - started < 15, "the flood held its places for the full deadline"
        assert all(answer.startswith(b"HTTP/1.1 408") for answer in cut), cut
        probe = api.request("GET", "/healthz", timeout_s=10)
        assert probe.status == 200
    finally:
        for sock in flood:
            sock.close()
        api.stop()


def test_idle_keep_alives_give_their_places_back_when_the_worker_is_busy(
    small_api: ApiServer,
) -> None:
    """With more than half its places taken, a worker gives idle kept-alive connections 1 s
    instead of the 30 s keep-alive: they are closed, and new clients get in."""
    idle = []
    for n in range(24):  # from 24 addresses: the per-client limit is not what closes them
        sock = connect(small_api, source=f"127.0.1.{n + 1}")
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
        assert read_response(sock).startswith(b"HTTP/1.1 200")
        idle.append(sock)
    closed_by_server: set[socket.socket] = set()
    deadline = time.monotonic() + 15  # half the 30 s keep-alive: a bound, not an expectation
    while len(closed_by_server) < 4 and time.monotonic() < deadline:
        open_ones = [sock for sock in idle if sock not in closed_by_server]
        readable, _, _ = select.select(open_ones, [], [], 0.5)
        for sock in readable:
            try:
                data = sock.recv(1)
            except OSError:
                data = b""
            if data == b"":
                closed_by_server.add(sock)
    for sock in idle:
        sock.close()
    assert len(closed_by_server) >= 4  # those above half of 40 at least, before the keep-alive


@pytest.mark.parametrize(
    "body",
    [
        b"-f\r\n{}\r\n0\r\n\r\n",  # a negative chunk size
        b"2\r\n{}\r\n0\r\nContent-Length: 5\r\n\r\n",  # a Content-Length trailer
        b"zz\r\n{}\r\n0\r\n\r\n",  # not hexadecimal
    ],
)
def test_a_malformed_chunked_body_is_a_400_without_a_traceback(
    small_api: ApiServer, body: bytes
) -> None:
    """gunicorn's chunk parser errors are the client's: 400 with the API's error body, and no
    traceback in the log."""
    sock = connect(small_api, source="127.0.0.1")
    sock.sendall(
        b"POST /users/login HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n" + body
    )
    response = read_response(sock)
    sock.close()
    assert response.startswith(b"HTTP/1.1 400"), response[:300]
    assert b"malformed_body" in response or b"bad_request" in response
    assert "Traceback" not in small_api.log()


def test_a_client_gone_mid_body_leaves_no_traceback(small_api: ApiServer) -> None:
    """A client that closes its connection half-way through its body is answered 400 (into the
    void) and logged quietly."""
    sock = connect(small_api, source="127.0.0.1")
    sock.sendall(slow_post_head(1000) + b'"email"')
    sock.close()
    counted = 'http_requests_total{method="POST",route="/users/login",status_class="4xx"}'
    deadline = time.monotonic() + 30
    while counted not in small_api.request("GET", "/metrics").body.decode():
        assert time.monotonic() < deadline, "the dropped request was never answered"
        time.sleep(0.05)  # polling with a deadline
    assert "Traceback" not in small_api.log()


def test_a_body_over_the_limit_is_answered_413_while_the_client_is_still_writing(
    small_api: ApiServer,
) -> None:
    """A 2 MiB body (the limit is 64 KiB) written in 64 KiB pieces on a connection the client
    asked to close (as HTTP/1.0 clients and Node's default agent do) gets the 413 JSON answer,
    not a reset: the server reads and drops the rest before it answers. Before: it answered at
    once and closed with the body unread, the kernel sent a reset, and the client saw
    "connection reset by peer" while still writing."""
    body = b'{"email": "' + b"a" * (2 << 20) + b'"}'
    head = (
        "POST /users/login HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
        f"Connection: close\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    for _ in range(3):  # not luck: each of several tries reads the answer
        with connect(small_api, source="127.0.0.1") as sock:
            sock.sendall(head)
            for start in range(0, len(body), 64 << 10):
                sock.sendall(body[start : start + (64 << 10)])
                time.sleep(0.001)  # a client on a real link (~64 MB/s), not loopback's burst
            answer = read_response(sock)
        assert answer.startswith(b"HTTP/1.1 413 "), answer[:80]
        assert b'"payload_too_large"' in answer

"""Falcon middleware: request ids, metrics, security headers, bounded bodies, authentication.

Order matters and is fixed in `create_app`: the request id exists before anything can fail,
metrics see every response (errors included), the body is read (and limited) before any
resource runs, and authentication happens before the responder, never inside it.
"""

from __future__ import annotations

import re
import time
import uuid
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import falcon
from gunicorn.http.errors import ParseException  # type: ignore[import-untyped]

from api.auth.context import AuthContext
from api.auth.flows.authenticate import authenticate
from api.errors import (
    BadRequest,
    PayloadTooLarge,
    RequestTimeout,
    Unauthorized,
    UnsupportedMediaType,
)
from api.metrics import ApiMetrics
from api.pressure import BUSY_BODY_S, BUSY_ENVIRON_KEY

_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._-]{8,64}$")
_BODYLESS_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "DELETE", "TRACE"})
_READ_CHUNK = 16 * 1024
MAX_TOKEN_CHARS = 4096
FORM_TYPE = "application/x-www-form-urlencoded"
FORM_PREFIX = "/admin/"

API_HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Strict-Transport-Security": "max-age=63072000; includeSubDomains",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
}
# The docs page loads its scripts and styles from this app only (no CDN); Swagger UI sets
# inline styles and shows data: images.
DOCS_HEADERS = {
    **API_HEADERS,
    "Cache-Control": "public, max-age=3600",
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
        "frame-ancestors 'none'"
    ),
}


class TurnTakingMiddleware:
    """Let every other ready request run before this one (first in the chain).

    Under gevent a greenlet runs until it blocks. A request served from memory (the user cache
    made authenticated reads database-free) never blocks, and on a keep-alive connection the
    next request is often already in the socket buffer, so one connection could be served again
    and again while the others wait: measured at 50 connections on 2 workers, p50 0.6 ms but p99
    1,020 ms. `time.sleep(0)` (gevent's, once monkey-patched; a plain yield otherwise) puts this
    request at the back of the line: p99 35 ms, for ~20 % fewer requests per second at
    saturation (docs/benchmarks.md).
    """

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        time.sleep(0)


class RequestIdMiddleware:
    """Give every request an id (a sane incoming X-Request-ID, else a new one) and echo it."""

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        incoming = req.get_header("X-Request-ID")
        if incoming and _REQUEST_ID_RE.match(incoming):
            req.context.request_id = incoming
        else:
            req.context.request_id = uuid.uuid4().hex
        resp.set_header("X-Request-ID", req.context.request_id)


class MetricsMiddleware:
    """Count requests and time them by route template (never by raw path)."""

    def __init__(self, metrics: ApiMetrics) -> None:
        self._metrics = metrics

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        req.context.started = time.perf_counter()
        self._metrics.http_in_flight.inc()

    def process_response(
        self, req: falcon.Request, resp: falcon.Response, resource: object, ok: bool
    ) -> None:
        started = getattr(req.context, "started", None)
        if started is None:
            return
        self._metrics.http_in_flight.dec()
        route = req.uri_template or "unmatched"
        method = req.method if req.method in falcon.COMBINED_METHODS else "OTHER"
        status_class = f"{resp.status_code // 100}xx"
        self._metrics.http_requests.labels(route, method, status_class).inc()
        self._metrics.http_request_duration.labels(route, method).observe(
            time.perf_counter() - started
        )


class SecurityHeadersMiddleware:
    """Set the security headers on every response, errors included: the API's, the docs', or
    those a page's responder chose (`resp.context.headers`, see api/pages) when it succeeded."""

    def process_response(
        self, req: falcon.Request, resp: falcon.Response, resource: object, ok: bool
    ) -> None:
        chosen = getattr(resp.context, "headers", None)
        page_error = getattr(resp.context, "page_status", None) == resp.status_code
        if chosen is not None and (resp.status_code < 400 or page_error):
            resp.set_headers(chosen)
            return
        is_docs_asset = req.path.startswith("/docs") and resp.status_code == 200
        resp.set_headers(DOCS_HEADERS if is_docs_asset else API_HEADERS)


DRAIN_MAX_BYTES = 16 << 20  # a refused body this large is still read, to answer it cleanly


class BodyMiddleware:
    """Read the request body up front, at most `max_bytes` (413), and only as JSON (415).

    A chunked body has no Content-Length, so it is read in pieces and refused as soon as it
    passes the limit; the rest is never buffered. A refused body of up to DRAIN_MAX_BYTES is
    still read (and thrown away) within the body deadline before the 413 goes out: a server that
    answers and closes while the client is still writing makes the client's kernel see a reset,
    and the client a broken pipe instead of the 413 (nginx's lingering close, in short). The
    whole body must arrive within `timeout_s` (one deadline per request, not per byte: a client
    trickling a byte every few seconds is cut off with 408 and the connection closed), or within
    BUSY_BODY_S while the worker is short of connections (api/pressure.py). A body
    the server cannot parse (a malformed chunk size, a client gone mid-body) is the client's
    error: 400, no traceback.
    """

    def __init__(self, max_bytes: int, timeout_s: float = 10.0) -> None:
        self._max_bytes = max_bytes
        self._timeout_s = timeout_s

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        req.context.body = b""
        if req.method in _BODYLESS_METHODS:
            return
        length = req.content_length
        chunked = "chunked" in (req.get_header("Transfer-Encoding") or "").lower()
        if length is not None and length > self._max_bytes:
            self._drain(req.stream, length, self._deadline_s(req))
            raise PayloadTooLarge()
        if not length and not chunked:
            return
        if length:
            self._require_type(req)
        try:
            deadline_s = self._deadline_s(req)
            with body_deadline(deadline_s):
                body = self._read(req.stream, length, deadline_s)
        except BodyTimeout:
            raise RequestTimeout() from None
        except (ParseException, OSError):
            # gunicorn's body parser (a bad chunk, a missing terminator) or a vanished client.
            raise BadRequest("The request body could not be read.", code="malformed_body") from None
        if body:
            self._require_type(req)
        req.context.body = body

    def _read(self, stream: Any, length: int | None, deadline_s: float) -> bytes:
        remaining = length if length is not None else self._max_bytes + 1
        parts: list[bytes] = []
        total = 0
        while remaining > 0:
            chunk = stream.read(min(_READ_CHUNK, remaining))
            if not chunk:
                break
            parts.append(chunk)
            total += len(chunk)
            remaining -= len(chunk)
            if total > self._max_bytes:
                self._drain(stream, None if length is None else length - total, deadline_s)
                raise PayloadTooLarge()
        return b"".join(parts)

    def _deadline_s(self, req: falcon.Request) -> float:
        """The whole body's deadline: shorter while the worker is busy."""
        if req.env.get(BUSY_ENVIRON_KEY):
            return min(self._timeout_s, BUSY_BODY_S)
        return self._timeout_s

    def _drain(self, stream: Any, left: int | None, deadline_s: float) -> None:
        """Read and drop the rest of a refused body (at most DRAIN_MAX_BYTES, within the body
        deadline), so the client reads our 413 instead of a reset; give up quietly."""
        budget = DRAIN_MAX_BYTES if left is None else min(left, DRAIN_MAX_BYTES)
        try:
            with body_deadline(deadline_s):
                while budget > 0:
                    chunk = stream.read(min(_READ_CHUNK, budget))
                    if not chunk:
                        return
                    budget -= len(chunk)
        except (BodyTimeout, ParseException, OSError):
            return

    @staticmethod
    def _require_type(req: falcon.Request) -> None:
        """JSON everywhere; the dashboard's pages (FORM_PREFIX) also post HTML forms."""
        media_type = (req.content_type or "").split(";", 1)[0].strip().lower()
        if media_type == falcon.MEDIA_JSON:
            return
        if media_type == FORM_TYPE and req.path.startswith(FORM_PREFIX):
            return
        raise UnsupportedMediaType()


class BodyTimeout(Exception):
    """The request body did not arrive within its deadline."""


def body_deadline(timeout_s: float) -> AbstractContextManager[object]:
    """Return a deadline for reading a body: a gevent Timeout in a gevent worker (where a slow
    client would otherwise hold its greenlet for as long as it likes), nothing elsewhere."""
    from gevent import monkey  # type: ignore[import-untyped]

    if monkey.is_module_patched("socket"):
        from gevent import Timeout

        timeout: AbstractContextManager[object] = Timeout(timeout_s, BodyTimeout)
        return timeout
    return nullcontext()


class AuthMiddleware:
    """Authenticate requests to resources that set `auth_required = True`."""

    def __init__(self, auth: AuthContext) -> None:
        self._auth = auth

    def process_resource(
        self, req: falcon.Request, resp: falcon.Response, resource: object, params: dict[str, Any]
    ) -> None:
        if not getattr(resource, "auth_required", False) or req.method == "OPTIONS":
            return
        token = bearer_token(req)
        if token is None:
            raise Unauthorized("An access token is required.", code="missing_token")
        req.context.principal = authenticate(self._auth, token)


def bearer_token(req: falcon.Request) -> str | None:
    """Return the token of an `Authorization: Bearer <token>` header, or None."""
    header = req.get_header("Authorization")
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or len(token) > MAX_TOKEN_CHARS:
        return None
    return token

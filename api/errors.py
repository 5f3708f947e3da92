"""Errors the API raises on purpose, and the one place that maps every exception to HTTP.

    ApiError (status, code, message)
    ├── BadRequest            400 malformed JSON, unreadable body
    ├── Unauthorized          401 missing/invalid/expired/revoked token, bad credentials
    ├── NotFound              404 unknown route, malformed or unknown id, someone else's job
    ├── MethodNotAllowed      405
    ├── Conflict              409 the email is taken
    ├── RequestTimeout        408 the body did not arrive within its deadline
    ├── PayloadTooLarge       413 body over the limit (Content-Length or chunked)
    ├── UnsupportedMediaType  415 a body that is not application/json
    ├── ValidationFailed      422 well-formed JSON with wrong types, unknown or missing fields
    ├── RateLimited           429 too many failed logins; carries Retry-After
    └── ServiceUnavailable    503 the database did not answer in time

Every response body is `{"error": {"code", "message", "request_id"}}`. Unexpected exceptions
become a generic 500 with no detail; their traceback goes to the log, never to the client.
"""

from __future__ import annotations

import json
import logging
import math
from typing import Any

import falcon

log = logging.getLogger("api.errors")


class ApiError(Exception):
    """Base of every error the API raises on purpose; carries its HTTP status and code."""

    status = 500
    code = "internal_error"
    message = "Internal server error."

    def __init__(self, message: str | None = None, *, code: str | None = None) -> None:
        super().__init__(message or self.message)
        if message is not None:
            self.message = message
        if code is not None:
            self.code = code


class BadRequest(ApiError):
    status, code, message = 400, "bad_request", "The request could not be parsed."


class Unauthorized(ApiError):
    status, code, message = 401, "unauthorized", "Authentication failed."


class NotFound(ApiError):
    status, code, message = 404, "not_found", "Not found."


class MethodNotAllowed(ApiError):
    status, code, message = 405, "method_not_allowed", "Method not allowed."


class Conflict(ApiError):
    status, code, message = 409, "conflict", "The request conflicts with existing data."


class RequestTimeout(ApiError):
    status, code, message = 408, "request_timeout", "The request body did not arrive in time."


class PayloadTooLarge(ApiError):
    status, code, message = 413, "payload_too_large", "The request body is too large."


class UnsupportedMediaType(ApiError):
    status, code, message = 415, "unsupported_media_type", "The body must be application/json."


class ValidationFailed(ApiError):
    status, code, message = 422, "validation_error", "The request body is invalid."


class RateLimited(ApiError):
    status, code, message = 429, "rate_limited", "Too many attempts; try again later."

    def __init__(self, retry_after_s: float, *, scope: str) -> None:
        super().__init__()
        self.retry_after_s = max(1, math.ceil(retry_after_s))
        self.scope = scope


class ServiceUnavailable(ApiError):
    status, code, message = 503, "service_unavailable", "A dependency is unavailable."

    def __init__(self, message: str | None = None, *, operation: str = "unknown") -> None:
        super().__init__(message)
        self.operation = operation


_FALCON_STATUS_TO_ERROR: dict[int, type[ApiError]] = {
    400: BadRequest,
    408: RequestTimeout,
    404: NotFound,
    405: MethodNotAllowed,
    413: PayloadTooLarge,
    415: UnsupportedMediaType,
}


def to_api_error(exc: BaseException) -> ApiError:
    """Return the ApiError a raised exception stands for (falcon's own errors included)."""
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, falcon.HTTPError):
        mapped = _FALCON_STATUS_TO_ERROR.get(exc.status_code)
        if mapped is not None:
            return mapped()
        generic = ApiError()
        generic.status = exc.status_code if 400 <= exc.status_code < 500 else 500
        generic.code = "bad_request" if generic.status < 500 else "internal_error"
        generic.message = "The request was rejected." if generic.status < 500 else generic.message
        return generic
    return ApiError()


def render_error(resp: falcon.Response, error: ApiError, request_id: str) -> None:
    """Write `error` to `resp` as the API's JSON error body."""
    body: dict[str, Any] = {
        "error": {"code": error.code, "message": error.message, "request_id": request_id}
    }
    resp.status = falcon.code_to_http_status(error.status)
    resp.content_type = falcon.MEDIA_JSON
    resp.text = json.dumps(body)
    resp.media = None
    if isinstance(error, RateLimited):
        resp.set_header("Retry-After", str(error.retry_after_s))
    if isinstance(error, Unauthorized):
        resp.set_header("WWW-Authenticate", 'Bearer realm="api"')
    if isinstance(error, MethodNotAllowed):
        resp.set_header("Allow", "")
    if error.code in ("request_timeout", "malformed_body"):
        # The body was not read to its end: the connection cannot carry another request.
        resp.set_header("Connection", "close")


def handle_error(req: falcon.Request, resp: falcon.Response, exc: BaseException, _: Any) -> None:
    """Map any exception to a JSON error response: the only place errors become HTTP."""
    error = to_api_error(exc)
    if error.status >= 500 and not isinstance(error, ServiceUnavailable):
        # The traceback stays in the server log; the client sees only the request id.
        log.error(
            "unhandled error on %s %s request_id=%s",
            req.method,
            req.uri_template or req.path,
            _request_id(req),
            exc_info=exc,
        )
    if isinstance(exc, falcon.HTTPMethodNotAllowed):
        allowed = dict(exc.headers or {}).get("Allow", "")
        render_error(resp, error, _request_id(req))
        resp.set_header("Allow", allowed)
        return
    render_error(resp, error, _request_id(req))


def _request_id(req: falcon.Request) -> str:
    return str(getattr(req.context, "request_id", "") or "")

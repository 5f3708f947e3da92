"""The OpenAPI 3.1 document, generated from the routes and the msgspec types they decode.

Each resource class declares `docs = {"get": Operation(...), ...}`; `build_spec` walks the
routes `create_app` registered and refuses to build when a responder is undocumented (or a
documented method has no responder), so /openapi.json cannot drift from the code. Schemas come
from `msgspec.json.schema_components` over the very types that validate requests.

Why not spectree: spectree 3.0 needs pydantic or msgspec models too, but its Falcon plugin wraps
every responder, reads bodies itself (outside our size limit), answers validation errors with
its own 422 body instead of our error contract, and wants a module-level SpecTree instance for
its decorators; generating the document ourselves from the same types is ~100 lines.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec

from api.schemas import ErrorResponse

_PATH_PARAM_RE = re.compile(r"{(\w+)}")
_METHODS = ("get", "post", "put", "patch", "delete")
_ERROR_DESCRIPTIONS = {
    400: "Malformed request",
    401: "Missing, invalid, expired or revoked token (or a password that is not correct)",
    404: "Not found",
    408: "The body did not arrive in time",
    409: "Conflict",
    413: "Body too large",
    415: "Body is not application/json",
    422: "Body does not match the schema",
    429: "Rate limited (see Retry-After)",
    503: "Database unavailable",
}


@dataclass(frozen=True)
class Operation:
    """The documentation of one responder."""

    summary: str
    tag: str
    ok_status: int = 200
    response: Any = None  # a type, or a tuple of types (one of them)
    request: type | None = None
    request_required: bool = True
    bearer: bool = False
    errors: tuple[int, ...] = ()
    content_type: str = "application/json"
    description: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict)


def build_spec(routes: Sequence[tuple[str, object]], *, title: str, version: str) -> dict[str, Any]:
    """Return the OpenAPI document for the documented routes; raise if any responder is not."""
    operations: list[tuple[str, str, Operation]] = []
    for path, resource in routes:
        docs: Mapping[str, Operation] = getattr(resource, "docs", {})
        responders = {m for m in _METHODS if callable(getattr(resource, f"on_{m}", None))}
        if set(docs) != responders:
            raise ValueError(
                f"{path}: documented {sorted(docs)} but responds to {sorted(responders)}"
            )
        operations.extend((path, method, op) for method, op in docs.items())
    models = _models(op for _, _, op in operations)
    refs, components = msgspec.json.schema_components(
        models, ref_template="#/components/schemas/{name}"
    )
    schema_of = dict(zip(models, refs, strict=True))
    paths: dict[str, dict[str, Any]] = {}
    for path, method, op in operations:
        paths.setdefault(path, {})[method] = _operation(path, method, op, schema_of)
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version},
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {
                "bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
            },
        },
    }


def _models(ops: Any) -> list[type]:
    models: list[type] = [ErrorResponse]
    for op in ops:
        responses = op.response if isinstance(op.response, tuple) else (op.response,)
        for model in (op.request, *responses):
            if model is not None and model not in models:
                models.append(model)
    return models


def _operation(
    path: str, method: str, op: Operation, schema_of: Mapping[type, Any]
) -> dict[str, Any]:
    ok: dict[str, Any] = {"description": op.summary}
    if isinstance(op.response, tuple):
        one_of = [schema_of[model] for model in op.response]
        ok["content"] = {op.content_type: {"schema": {"oneOf": one_of}}}
    elif op.response is not None:
        ok["content"] = {op.content_type: {"schema": schema_of[op.response]}}
    elif op.content_type != "application/json":
        ok["content"] = {op.content_type: {"schema": {"type": "string"}}}
    responses: dict[str, Any] = {str(op.ok_status): ok}
    error_body = {"application/json": {"schema": schema_of[ErrorResponse]}}
    for status in sorted(set(op.errors)):
        responses[str(status)] = {"description": _ERROR_DESCRIPTIONS[status], "content": error_body}
    doc: dict[str, Any] = {
        "summary": op.summary,
        "operationId": _operation_id(method, path),
        "tags": [op.tag],
        "responses": responses,
        **op.extra,
    }
    if op.description:
        doc["description"] = op.description
    params = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in _PATH_PARAM_RE.findall(path)
    ]
    if params:
        doc["parameters"] = params
    if op.request is not None:
        doc["requestBody"] = {
            "required": op.request_required,
            "content": {"application/json": {"schema": schema_of[op.request]}},
        }
    if op.bearer:
        doc["security"] = [{"bearerAuth": []}]
    return doc


def _operation_id(method: str, path: str) -> str:
    words = re.sub(r"[^A-Za-z0-9]+", "_", path).strip("_")
    return f"{method}_{words}"

"""/openapi.json and /docs: Swagger UI served entirely by this app (no CDN).

The Swagger UI files come from the `swagger-ui-bundle-v2` wheel (Swagger UI 5.31, Apache-2.0),
installed by pip like any dependency and read from the package directory, so machines without
internet render the docs. Only an allowlist of asset names is served. The page and its starter
script are our own, so the Content-Security-Policy needs no inline script.
"""

from __future__ import annotations

import json
from functools import cache
from typing import Any

import falcon
from swagger_ui_bundle import swagger_ui_path  # type: ignore[import-untyped]

from api.errors import NotFound

_ASSETS = {
    "swagger-ui.css": "text/css; charset=utf-8",
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "favicon-32x32.png": "image/png",
}
_PAGE = b"""<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>API docs</title>
  <link rel="stylesheet" href="/docs/swagger-ui.css">
  <link rel="icon" type="image/png" href="/docs/favicon-32x32.png">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="/docs/swagger-ui-bundle.js"></script>
  <script src="/docs/init.js"></script>
</body>
</html>
"""
_INIT = b"""window.onload = function () {
  // validatorUrl null: no badge fetched from validator.swagger.io (no outside requests).
  window.ui = SwaggerUIBundle({ url: "/openapi.json", dom_id: "#swagger-ui", validatorUrl: null });
};
"""


@cache
def _asset(name: str) -> bytes:
    data: bytes = (swagger_ui_path / name).read_bytes()
    return data


class OpenApiResource:
    """Serve the generated OpenAPI document (built once, at app creation)."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self._body = json.dumps(spec).encode("utf-8")

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.content_type = falcon.MEDIA_JSON
        resp.data = self._body


class DocsPageResource:
    """Serve the Swagger UI page."""

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.content_type = falcon.MEDIA_HTML
        resp.data = _PAGE


class DocsAssetResource:
    """Serve one allowlisted Swagger UI asset (or our starter script)."""

    def on_get(self, req: falcon.Request, resp: falcon.Response, name: str) -> None:
        if name == "init.js":
            resp.content_type, resp.data = _ASSETS["swagger-ui-bundle.js"], _INIT
            return
        content_type = _ASSETS.get(name)
        if content_type is None:
            raise NotFound()
        resp.content_type = content_type
        resp.data = _asset(name)

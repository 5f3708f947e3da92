"""Server-rendered pages: the account pages and the dashboard (api/admin).

Templates are Jinja2 (autoescaped) under templates/; scripts and styles are files under
static/, served by this app at /static/<name> (an allowlist, no directory walking), so the pages
need no inline script or style, nothing from another origin, and a strict Content-Security-Policy
(PAGE_HEADERS) holds: script, style and fetch from this origin only, forms post here only, no
framing, no Referer ever sent (the account links carry their token in the fragment, which is
never sent to a server anyway).
"""

from __future__ import annotations

from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

import falcon
import jinja2

from api.errors import NotFound
from api.middleware import API_HEADERS

HERE = Path(__file__).parent
PAGE_HEADERS = {
    **API_HEADERS,
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        "img-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    ),
}
STATIC_HEADERS = {**PAGE_HEADERS, "Cache-Control": "public, max-age=3600"}
STATIC_TYPES = {
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".svg": "image/svg+xml",
}


@cache
def environment() -> jinja2.Environment:
    """Return the templates' environment (autoescaping, undefined names are errors)."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    env.filters["when"] = when
    return env


def when(value: datetime | str | None) -> str:
    """A time as people read it: UTC to the second ("–" for none)."""
    if value is None or value == "":
        return "–"
    if isinstance(value, str):
        try:
            at = datetime.fromisoformat(value)
        except ValueError:
            return value
    else:
        at = value
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def render(resp: falcon.Response, template: str, **values: Any) -> None:
    """Render a template as the HTML body of `resp`, with the pages' security headers."""
    resp.content_type = falcon.MEDIA_HTML
    resp.text = environment().get_template(template).render(**values)
    resp.context.headers = PAGE_HEADERS


@cache
def _static(name: str) -> bytes | None:
    path = HERE / "static" / name
    if path.suffix not in STATIC_TYPES or path.parent != HERE / "static" or not path.is_file():
        return None
    return path.read_bytes()


class StaticResource:
    """GET /static/{name}: the pages' scripts and styles (files directly in static/ only)."""

    def on_get(self, req: falcon.Request, resp: falcon.Response, name: str) -> None:
        data = _static(name) if "/" not in name else None
        if data is None:
            raise NotFound()
        resp.content_type = STATIC_TYPES[Path(name).suffix]
        resp.data = data
        resp.context.headers = STATIC_HEADERS

"""Rendering the dashboard's pages: Jinja2 templates under api/pages/templates/admin, with the
strict Content-Security-Policy of a nonce per response.

    script-src 'nonce-<n>'   only our one script tag runs (it carries the nonce); any other
                             script, in the markup or added later, inline or not, is refused
                             (no 'strict-dynamic': our script never loads others)
    style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self';
    frame-ancestors 'none'; base-uri 'none'; object-src 'none'; default-src 'none'
"""

from __future__ import annotations

import secrets
from typing import Any

import falcon

from api.middleware import API_HEADERS
from api.pages import environment


def headers(nonce: str) -> dict[str, str]:
    return {
        **API_HEADERS,
        "Content-Security-Policy": (
            f"default-src 'none'; script-src 'nonce-{nonce}'; "
            "style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; "
            "frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
        ),
    }


def render(resp: falcon.Response, template: str, status: int = 200, **values: Any) -> None:
    """Render an admin template as HTML with a fresh nonce and the strict headers."""
    nonce = secrets.token_urlsafe(18)
    resp.status = falcon.code_to_http_status(status)
    resp.content_type = falcon.MEDIA_HTML
    resp.text = environment().get_template(f"admin/{template}").render(nonce=nonce, **values)
    resp.context.headers = headers(nonce)
    resp.context.page_status = status


def redirect(resp: falcon.Response, location: str) -> None:
    """Send the browser to `location` with a GET (after a form post, or to sign in)."""
    resp.status = falcon.HTTP_303
    resp.location = location
    resp.context.headers = headers(secrets.token_urlsafe(18))

"""A real headless browser for page tests: Debian's Chromium driven by Playwright.

Playwright's own browser download is never used (these machines cannot fetch it): the tests
launch /usr/bin/chromium, which `scripts/install_test_tools.sh` installs from Debian. Every
page records its console errors and failed requests (a Content-Security-Policy violation shows
up as one), so a test can assert that a page ran clean.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from playwright.sync_api import Browser, ConsoleMessage, Page, Response, sync_playwright

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
FLAGS = ["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"]


@contextmanager
def chromium() -> Iterator[Browser]:
    """Launch headless Chromium for the duration of the block."""
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        try:
            yield browser
        finally:
            browser.close()


@dataclass
class Problems:
    """What went wrong on a page: script errors and console errors (a Content-Security-Policy
    violation is one), requests that failed, and every HTTP error status as (status, path)."""

    console: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    statuses: list[tuple[int, str]] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.console or self.requests)


def watch(page: Page) -> Problems:
    """Start recording a page's problems. HTTP errors go to `statuses` only: the browser also
    logs them to the console, where they are left out so a test can expect a 4xx."""
    problems = Problems()

    def on_console(msg: ConsoleMessage) -> None:
        if msg.type == "error" and not msg.text.startswith("Failed to load resource"):
            problems.console.append(msg.text)

    def on_response(response: Response) -> None:
        if response.status >= 400:
            problems.statuses.append((response.status, urlsplit(response.url).path))

    page.on("console", on_console)
    page.on("pageerror", lambda exc: problems.console.append(str(exc)))
    page.on("requestfailed", lambda req: problems.requests.append(req.url))
    page.on("response", on_response)
    return problems

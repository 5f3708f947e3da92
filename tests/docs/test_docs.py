"""The documentation stays honest: links and anchors resolve, and the configuration reference,
deploy/env.example and the settings tables in the code list exactly the same variables."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prom_harness import CATALOGUE

from api import settings as api_settings
from api.mail import settings as mail_settings
from queue_worker import settings as queue_settings
from runtime import env as envspec
from runtime import metrics_dir
from supervisor import settings as supervisor_settings

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")
CODE_FENCE = re.compile(r"^(```|~~~)")
# Variables `make run` adds for itself (scripts/devrun.py): documented, never in a deployment.
MAKE_RUN_ONLY = {"LOCAL_DB_PORT"}
# Set per role by the systemd units and the compose file, so env.example says not to set it.
SET_BY_UNITS = {metrics_dir.VARIABLE}
# Read by docker compose itself, not by our code (env.example's compose section).
COMPOSE_ONLY = {"GRAFANA_ADMIN_PASSWORD"}
# Prefixes of our variables: any string literal like these in the code must be a documented one.
PREFIXES = ("API_", "QUEUE_", "SUPERVISOR_", "SMTP_", "MAIL_", "MONGODB_", "PROMETHEUS_")
CODE = [
    *(ROOT / "api").rglob("*.py"),
    *(ROOT / "queue_worker").rglob("*.py"),
    *(ROOT / "supervisor").rglob("*.py"),
    *(ROOT / "runtime").rglob("*.py"),
    ROOT / "deploy" / "gunicorn.conf.py",
    ROOT / "scripts" / "devrun.py",
]


def prose_lines(path: Path) -> Iterator[str]:
    """Yield the lines of a Markdown page outside fenced code blocks."""
    fenced = False
    for line in path.read_text().splitlines():
        if CODE_FENCE.match(line.strip()):
            fenced = not fenced
            continue
        if not fenced:
            yield line


def slug(heading: str) -> str:
    """Return GitHub's anchor for a heading: lower case, punctuation dropped, spaces -> '-'."""
    text = heading.strip().lower()
    text = "".join(ch for ch in text if ch in " -_" or unicodedata.category(ch)[0] in ("L", "N"))
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Return every anchor a page's headings produce (repeats get -1, -2, ... like GitHub)."""
    seen: dict[str, int] = {}
    found = set()
    for line in prose_lines(path):
        match = re.match(r"^#{1,6}\s+(.*)$", line)
        if not match:
            continue
        base = slug(match.group(1))
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return found


def links() -> Iterator[tuple[Path, str]]:
    for page in PAGES:
        for line in prose_lines(page):
            for target in LINK.findall(line):
                if not re.match(r"^[a-z]+:", target):  # http:, https:, mailto: are not ours
                    yield page, target


@pytest.mark.parametrize(
    ("page", "target"), list(links()), ids=lambda v: v.name if isinstance(v, Path) else v
)
def test_every_relative_link_and_anchor_resolves(page: Path, target: str) -> None:
    """A relative link names a file that exists; its #anchor names a heading in that file."""
    path_part, _, anchor = target.partition("#")
    resolved = (page.parent / path_part).resolve() if path_part else page
    assert resolved.exists(), f"{page.name}: {target} -> no such file"
    if anchor:
        assert resolved.suffix == ".md", f"{page.name}: {target} -> anchor into a non-page"
        assert anchor in anchors(resolved), f"{page.name}: {target} -> no such heading"


def test_the_pages_link_to_each_other() -> None:
    """Every docs page is reachable from the README's table, and the README stays short."""
    readme = (ROOT / "README.md").read_text()
    for page in (ROOT / "docs").glob("*.md"):
        assert f"docs/{page.name}" in readme, f"the README does not link docs/{page.name}"
    assert len(readme.splitlines()) <= 150


def read_by_the_code() -> set[str]:
    """Every variable the settings tables read, and the few read outside them."""
    tables: list[Any] = [
        api_settings.OPTIONS,
        api_settings.SERVER_OPTIONS,
        api_settings.ACCOUNT_OPTIONS,
        mail_settings.OPTIONS,
        queue_settings.OPTIONS,
        supervisor_settings.OPTIONS,
    ]
    names = {name for table in tables for name in envspec.variables(table)}
    return names | {metrics_dir.VARIABLE} | MAKE_RUN_ONLY


def documented() -> set[str]:
    """Every variable named in the first column of a table in docs/configuration.md, and the
    `make run` ones its last section names in prose."""
    names = set()
    for line in prose_lines(ROOT / "docs" / "configuration.md"):
        if line.startswith("| `"):
            names |= set(re.findall(r"`([A-Z][A-Z0-9_]+)`", line.split("|")[1]))
    text = (ROOT / "docs" / "configuration.md").read_text()
    return names | {name for name in MAKE_RUN_ONLY if f"`{name}`" in text}


def in_env_example() -> set[str]:
    text = (ROOT / "deploy" / "env.example").read_text()
    return set(re.findall(r"^#?([A-Z][A-Z0-9_]+)=", text, re.M))


def test_every_variable_the_code_reads_is_documented_and_every_documented_one_is_read() -> None:
    """The configuration reference and the settings tables name exactly the same variables."""
    read, docs = read_by_the_code(), documented()
    assert not read - docs, f"read but not in docs/configuration.md: {sorted(read - docs)}"
    assert not docs - read, f"documented but never read: {sorted(docs - read)}"


def test_env_example_lists_every_deployable_variable_and_nothing_else() -> None:
    """deploy/env.example holds every variable a deployment may set, and no unknown one."""
    deployable = read_by_the_code() - MAKE_RUN_ONLY - SET_BY_UNITS
    example = in_env_example() - COMPOSE_ONLY
    assert not deployable - example, f"missing from env.example: {sorted(deployable - example)}"
    assert not example - deployable, f"unknown in env.example: {sorted(example - deployable)}"


def test_no_variable_is_read_outside_the_settings_tables() -> None:
    """A string literal in the code that looks like one of our variables is in a table: a new
    os.environ.get("QUEUE_X") cannot slip past the documentation."""
    prefixes = "|".join(PREFIXES)
    literal = re.compile(rf"""["']((?:{prefixes})[A-Z0-9_]+)["']""")
    found = {name for path in CODE for name in literal.findall(path.read_text())}
    assert found, "no variables found: did the code move?"
    stray = found - read_by_the_code()
    assert not stray, f"variables read outside the settings tables: {sorted(stray)}"


def catalogued_metrics() -> set[str]:
    """Every metric named in the first column of the catalogue's tables (docs/operations.md)."""
    names: set[str] = set()
    in_catalogue = False
    for line in prose_lines(ROOT / "docs" / "operations.md"):
        if line.startswith("## "):
            in_catalogue = line == "## Metrics catalogue"
        elif in_catalogue and line.startswith("| `"):
            names |= set(re.findall(r"`([a-z_]+)`", line.split("|")[1]))
    return names


def test_the_metrics_catalogue_names_what_the_end_to_end_test_checks() -> None:
    """The catalogue in the docs and the families the end-to-end run requires are the same
    (queue_jobs_cancelled_total is recorded by the operator CLI, which nothing scrapes)."""
    required = {name for names in CATALOGUE.values() for name in names}
    assert catalogued_metrics() == required | {"queue_jobs_cancelled_total"}

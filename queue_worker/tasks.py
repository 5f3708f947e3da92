"""The task registry: `@task("name", ...)` binds a handler, its per-task defaults and the resources
it uses.

Handlers take the job's payload (a JSON-able dict) and a `TaskContext`, and return a small
JSON-able result (or None). Raising `NonRetryableError` fails the job without further attempts;
`RetryAfter` asks for a retry no sooner than its delay; any other exception is a failed attempt
retried with backoff.

Resources are what handlers need beyond their payload (the database, a mailer): each is a typed
`Resource` key whose factory builds the value once per consumer process, after the fork, from a
`ResourceSetup` (the process environment and the queue's database). A task declares the keys it
uses (`@task(..., uses=(MAILER,))`); `open_resources` builds exactly the declared ones at boot, so
a misconfigured resource stops the process before it claims anything, and
`ctx.resource(KEY)` returns the value with its type, and refuses a key the task did not declare.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

from pymongo.database import Database

from queue_worker.errors import ConfigError, UnknownTaskError
from runtime import names

T = TypeVar("T")


@dataclass(frozen=True)
class ResourceSetup:
    """What a resource factory may build from: the environment and the queue's database."""

    env: Mapping[str, str]
    db: Database[Any]


@dataclass(frozen=True, eq=False)
class Resource(Generic[T]):
    """A typed key for something handlers use, and the factory that builds it per process."""

    name: str
    build: Callable[[ResourceSetup], T]


DATABASE: Resource[Database[Any]] = Resource("database", lambda setup: setup.db)
"""The queue's database, for handlers that keep records of their own (e.g. an audit log)."""


class TaskContext(Protocol):
    """What a running handler may know about its job, and the resources its task declared."""

    job_id: str
    attempt: int
    lease_token: str

    def should_stop(self) -> bool:
        """Return True once the job's lease is lost or its timeout has passed."""
        ...

    def resource(self, key: Resource[T]) -> T:
        """Return the process's instance of a resource the task declared in `uses`."""
        ...


Handler = Callable[[dict[str, Any], TaskContext], Any]


@dataclass(frozen=True)
class TaskSpec:
    """A registered task: its handler, the defaults an enqueue may override, its resources."""

    name: str
    handler: Handler
    queue: str | None = None
    max_attempts: int | None = None
    timeout_s: float | None = None
    priority: int | None = None
    uses: tuple[Resource[Any], ...] = ()


@dataclass
class TaskRegistry:
    """Name → TaskSpec. One process usually holds one, filled by importing task modules."""

    specs: dict[str, TaskSpec] = field(default_factory=dict)

    def task(
        self,
        name: str,
        *,
        queue: str | None = None,
        max_attempts: int | None = None,
        timeout_s: float | None = None,
        priority: int | None = None,
        uses: Iterable[Resource[Any]] = (),
    ) -> Callable[[Handler], Handler]:
        """Register the decorated function as the handler of task `name`."""

        if queue is not None and not names.is_valid(queue):
            raise ConfigError(f"task {name!r}: queue name {queue!r}: use {names.RULE}")

        def register(handler: Handler) -> Handler:
            if name in self.specs and self.specs[name].handler is not handler:
                raise ConfigError(f"task {name!r} is registered twice")
            spec = TaskSpec(name, handler, queue, max_attempts, timeout_s, priority, tuple(uses))
            self.specs[name] = spec
            return handler

        return register

    def get(self, name: str) -> TaskSpec:
        """Return the spec of task `name`, or raise UnknownTaskError."""
        try:
            return self.specs[name]
        except KeyError:
            raise UnknownTaskError(f"no task named {name!r} is registered") from None

    def find(self, name: str) -> TaskSpec | None:
        return self.specs.get(name)

    def names(self) -> list[str]:
        return sorted(self.specs)

    def resources(self) -> list[Resource[Any]]:
        """Return every resource some registered task uses, each once, by name."""
        by_name: dict[str, Resource[Any]] = {}
        for spec in self.specs.values():
            for key in spec.uses:
                if by_name.setdefault(key.name, key) is not key:
                    raise ConfigError(f"two different resources are named {key.name!r}")
        return [by_name[name] for name in sorted(by_name)]


class Resources:
    """The resources of one process, built once (`open_resources`); handed to each job."""

    def __init__(self, values: Mapping[str, Any]) -> None:
        self._values = dict(values)

    def get(self, key: Resource[T], spec: TaskSpec) -> T:
        """Return `key`'s value for a job of `spec`; ConfigError if the task did not declare it."""
        if key not in spec.uses:
            raise ConfigError(f"task {spec.name!r} uses resource {key.name!r} without declaring it")
        value: T = self._values[key.name]
        return value


def open_resources(registry: TaskRegistry, setup: ResourceSetup) -> Resources:
    """Build every resource the registered tasks declared; ConfigError names one that fails."""
    values: dict[str, Any] = {}
    for key in registry.resources():
        try:
            values[key.name] = key.build(setup)
        except ConfigError:
            raise
        except Exception as exc:  # noqa: BLE001 - any factory failure is a boot failure to report
            raise ConfigError(f"resource {key.name!r}: {type(exc).__name__}: {exc}") from exc
    return Resources(values)


registry = TaskRegistry()
"""The default registry that `@task` fills."""

task = registry.task


def load_task_modules(modules: Iterable[str]) -> None:
    """Import each task module so its `@task` decorators register; fail with a clear message."""
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise ConfigError(f"cannot import task module {module!r}: {exc}") from exc

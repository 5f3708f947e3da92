"""The task registry: `@task("name", ...)` binds a handler and its per-task defaults.

Handlers take the job's payload (a JSON-able dict) and a `TaskContext`, and return a small
JSON-able result (or None). Raising `NonRetryableError` fails the job without further attempts;
any other exception is a failed attempt that is retried with backoff.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from queue_worker.errors import ConfigError, UnknownTaskError


class TaskContext(Protocol):
    """What a running handler may know about its job."""

    job_id: str
    attempt: int
    lease_token: str

    def should_stop(self) -> bool:
        """Return True once the job's lease is lost or its timeout has passed."""
        ...


Handler = Callable[[dict[str, Any], TaskContext], Any]


@dataclass(frozen=True)
class TaskSpec:
    """A registered task: its handler and the defaults an enqueue may override."""

    name: str
    handler: Handler
    queue: str | None = None
    max_attempts: int | None = None
    timeout_s: float | None = None
    priority: int | None = None


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
    ) -> Callable[[Handler], Handler]:
        """Register the decorated function as the handler of task `name`."""

        def register(handler: Handler) -> Handler:
            if name in self.specs and self.specs[name].handler is not handler:
                raise ConfigError(f"task {name!r} is registered twice")
            self.specs[name] = TaskSpec(name, handler, queue, max_attempts, timeout_s, priority)
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

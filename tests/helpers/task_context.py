"""A TaskContext as a consumer builds it, for calling task handlers directly in tests."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from queue_worker.tasks import Resource

T = TypeVar("T")


@dataclass
class TaskCtx:
    """A TaskContext as a consumer builds it: job identity plus the resources by name."""

    job_id: str
    resources: Mapping[str, Any] = field(default_factory=dict)
    attempt: int = 1
    lease_token: str = "token-1"
    stop: bool = False

    def should_stop(self) -> bool:
        return self.stop

    def resource(self, key: Resource[T]) -> T:
        value: T = self.resources[key.name]
        return value

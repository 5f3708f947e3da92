"""The product's tasks: the background half of the account flows, run by the consumers.

Importing this package registers them. The consumers run them when the deployment lists this
package in `QUEUE_TASK_MODULES` (deploy/env.example and `make run` do; the queue library names no
application's modules by default); the API, which enqueues them, always loads it
(`with_product_tasks`) and reads their declared defaults (queue, timeout, attempts) from the same
registry. They reach mail and the database only through the resources they declare
(resources.py), built once per consumer process.
"""

from __future__ import annotations

import dataclasses

from api.tasks import account_mail, accounts
from queue_worker import QueueSettings

MODULE = "api.tasks"


def with_product_tasks(settings: QueueSettings) -> QueueSettings:
    """Return queue settings whose task modules include this package (first)."""
    if MODULE in settings.task_modules:
        return settings
    return dataclasses.replace(settings, task_modules=(MODULE, *settings.task_modules))


__all__ = ["MODULE", "account_mail", "accounts", "with_product_tasks"]

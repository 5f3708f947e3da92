"""The product's tasks: the background half of the account flows, run by the consumers.

Importing this package registers them (`QUEUE_TASK_MODULES` names it by default): the consumers
run them, and the API, which enqueues them, reads their declared defaults (queue, timeout,
attempts) from the same registry. They reach mail and the database only through the resources
they declare (resources.py), built once per consumer process.
"""

from api.tasks import account_mail, accounts

__all__ = ["account_mail", "accounts"]

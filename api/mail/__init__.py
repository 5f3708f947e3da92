"""Mail the account flows send: settings (settings.py), messages (messages.py) and delivery by
SMTP or to an outbox directory (delivery.py). Used by the product's tasks (api/tasks/), which run
in the consumer processes."""

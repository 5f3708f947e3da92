"""Payload redaction for the dashboard: values under keys that look secret are never shown.

The hook is `redact(payload, names)`: any key containing one of `names` (case-insensitive,
API_ADMIN_REDACT_KEYS; default password, token, secret, authorization, api_key), at any depth,
has its value replaced. Replace the function to redact by other rules.
"""

from __future__ import annotations

from typing import Any

MASK = "[redacted]"


def redact(value: Any, names: tuple[str, ...]) -> Any:
    """Return `value` with every dict item whose key contains one of `names` masked."""
    if isinstance(value, dict):
        return {
            key: MASK if any(n in str(key).lower() for n in names) else redact(item, names)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [redact(item, names) for item in value]
    return value

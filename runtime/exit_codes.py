"""Exit codes that mean the same to more than one package: defined once, here.

A consumer process whose handler thread overran its timeout (a thread cannot be killed) asks to
be replaced by exiting with NEEDS_REPLACEMENT: the standalone `python -m queue_worker work` exits
with it, and the supervisor's child does too, and its master counts it as a planned replacement
(restart reason `timeout`), never as a crash or a boot failure.
"""

from __future__ import annotations

NEEDS_REPLACEMENT = 12
"""Replace this consumer process: a job overran its timeout and its thread is still running."""

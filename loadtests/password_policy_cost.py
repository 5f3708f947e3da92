"""What the password policy costs a worker: memory once its lists are loaded, time per check.

    python loadtests/password_policy_cost.py [TREE]     # TREE: another commit's checkout

Imports the API first (what a worker holds anyway), then checks four passwords of 8 to 22
characters once (loading every list the policy uses) and 200 times more: the RSS it added and
the median and worst time of a check. Run it for two trees in a row to compare.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import psutil

PASSWORDS = ("Tr0ub4dor&3x", "q8Vz!mK2", "correct horse battery", "Zx9#pLm2q")


def main(argv: list[str]) -> int:
    tree = Path(argv[0]).resolve() if argv else Path(__file__).resolve().parents[1]
    sys.path.insert(0, str(tree))
    import api.app  # noqa: F401 - the worker's baseline
    from api.auth.passwords.policy import check_policy
    from api.errors import ValidationFailed

    process = psutil.Process()
    before = process.memory_info().rss
    times = []
    for n in range(len(PASSWORDS) + 200):
        started = time.perf_counter()
        try:
            check_policy(PASSWORDS[n % len(PASSWORDS)], email="someone@example.com")
        except ValidationFailed:
            pass
        if n >= len(PASSWORDS):  # the first round loads the lists
            times.append(time.perf_counter() - started)
    added_mib = (process.memory_info().rss - before) / 2**20
    median_ms, worst_ms = statistics.median(times) * 1000, max(times) * 1000
    print(f"{tree.name}: +{added_mib:.1f} MiB RSS, check median {median_ms:.2f} ms, "
          f"worst {worst_ms:.2f} ms")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""`python -m queue_worker COMMAND`: the queue's command line (queue_worker/cli)."""

import sys

from queue_worker.cli import main

if __name__ == "__main__":
    sys.exit(main())

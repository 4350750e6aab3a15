"""`python -m local` (what `make run` calls): runs the local stack until SIGTERM or Ctrl-C."""

import logging
import os
import sys

from local.stack import main

if __name__ == "__main__":
    code = main()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    # Handler code may leave non-daemon threads (executors, keep-alive pools) behind; the stack has already
    # stopped everything it started, and its data is in memory by design, so exit without waiting for them.
    os._exit(code)

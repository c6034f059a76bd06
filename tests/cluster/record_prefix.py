"""A prefix wrapper for tests: ``python record_prefix.py EVENTS_DIR CMD ARGS...``.

Runs ``CMD ARGS...`` (e.g. ``srun ... python -m taskproc.run.worker SPEC``), records the span of
the whole call in EVENTS_DIR (see cluster_tasks.write_span), and exits with CMD's status. Signals
are passed on to CMD so that an interrupted run still cancels its job.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time

from cluster_tasks import write_span


def main(argv: list[str]) -> int:
    events, cmd = argv[0], argv[1:]
    start = time.time()
    child = subprocess.Popen(cmd)
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda signum, _frame: child.send_signal(signum))
    status = child.wait()
    write_span(events, " ".join(cmd[:1]), start)
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

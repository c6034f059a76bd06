"""``python -m taskproc.worker JOB``: run one task from a job file written by a prefix run."""

from __future__ import annotations

import os
import pickle
import sys

from taskproc.store._files import write_atomic
from taskproc.run._job import Failure, Outcome
from taskproc.run._remote import run_remote


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m taskproc.worker JOB_FILE", file=sys.stderr)
        return 2
    job_path = args[0]
    outcome_path = os.path.join(os.path.dirname(job_path), "outcome.pkl")
    try:
        with open(job_path, "rb") as f:
            spec, classes, state, store_root = pickle.load(f)
        outcome = run_remote(spec, classes, state, store_root)
    except Exception as exc:  # a broken job file: report it like a task failure
        outcome = Outcome(False, 0.0, Failure(type(exc).__name__, str(exc), ""))
    write_atomic(outcome_path, pickle.dumps(outcome))
    return 0 if outcome.ok else 1


if __name__ == "__main__":
    sys.exit(main())

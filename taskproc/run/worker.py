"""``python -m taskproc.run.worker JOB``: run one task from a job file written by a prefix run."""

from __future__ import annotations

import pickle
import sys

from taskproc.run._job import Done, outside_failure
from taskproc.run._remote import run_remote
from taskproc.run._watch import watch_runner
from taskproc.store import write_atomic


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m taskproc.run.worker JOB_FILE", file=sys.stderr)
        return 2
    job_path = args[0]
    try:
        with open(job_path, "rb") as f:
            spec, classes, state, store, runner, stale_after = pickle.load(f)
        outcome_path = store.prefix_files(spec.location).outcome
        watch_runner(runner, store, stale_after)
    except Exception as exc:  # a broken job file: nowhere to report, but here
        print(f"taskproc.run.worker: cannot read {job_path}: {exc}", file=sys.stderr)
        return 2
    try:
        outcome = run_remote(spec, classes, state, store)
    except Exception as exc:  # a job that cannot start: report it like a task failure
        outcome = outside_failure(type(exc).__name__, str(exc))
    write_atomic(outcome_path, pickle.dumps(outcome))
    return 0 if isinstance(outcome, Done) else 1


if __name__ == "__main__":
    sys.exit(main())

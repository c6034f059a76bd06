"""``python -m taskproc.run.worker JOB...``: run tasks from job files written by a prefix run.

One job file per task; several run one after another in this process (a batch, see
`_prefix.py`), each task still its own: its claim, its output, its retries and timeout, its
result committed and its outcome file written before the next one starts. The first job comes
with its claim handed over by the runner; the worker claims each later one in the runner's
name when it gets to it. An outcome file (`save_outcome`) holds what came of the task and how
long the worker spent on it.

What a worker imports before the first line of the task's code is kept small (a prefix
command starts one interpreter per command): the task model, the store, and the job.
"""

from __future__ import annotations

import pickle
import sys
import time
from typing import Any

from taskproc.run._job import OUTCOMES, Done, Outcome, claim, outside_failure, save_outcome


def _run(job: tuple[Any, ...]) -> Outcome:
    from taskproc.run._remote import run_remote  # after the job is read: see _remote's note

    spec, classes, state, store, _runner, _ = job
    if spec.handover is not None:
        return run_remote(spec, classes, state, store)
    # A later task of a batch: claimed here, as the runner claims the first (see _prefix.py).
    got = claim(spec, store, spec.holder)
    if isinstance(got, OUTCOMES):
        return got
    with got:
        return run_remote(spec._replace(handover=got.hand_over()), classes, state, store)


def main(argv: list[str] | None = None) -> int:
    paths = sys.argv[1:] if argv is None else argv
    if not paths:
        print("usage: python -m taskproc.run.worker JOB_FILE...", file=sys.stderr)
        return 2
    status = 0
    for i, job_path in enumerate(paths):
        try:
            with open(job_path, "rb") as f:
                job = pickle.load(f)
            spec, store = job[0], job[3]
            outcome_path = store.prefix_files(spec.location).outcome
            if i == 0:
                from taskproc.run._watch import watch_runner

                watch_runner(job[4], store, job[5])
        except Exception as exc:  # a broken job file: nowhere to report, but here
            print(f"taskproc.run.worker: cannot read {job_path}: {exc}", file=sys.stderr)
            return 2
        start = time.perf_counter()
        try:
            outcome = _run(job)
        except Exception as exc:  # a job that cannot start: report it like a task failure
            outcome = outside_failure(type(exc).__name__, str(exc))
        seconds = time.perf_counter() - start
        save_outcome(outcome_path, outcome, seconds)
        if not isinstance(outcome, Done):
            status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())

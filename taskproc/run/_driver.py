"""The run loop's driver: the I/O around the decisions of `RunState`.

Data flow of one `run_graph` call::

    run(root, options)
      collect + decide (_plan.py) ....... which tasks are stale, and why (and a warning
                                          for labels of limits or prefixes no task has)
      Round.run (_round.py) ............. one round over the stale tasks
        RunState.take() ──> start: claim (prefix runs) and submit ──┐
          ┌─────────────────────────────────────────────────────────┘
          ├─ in-process executor:  submit(execute, task, spec)
          ├─ any other executor:   submit(run_remote, spec, classes, state, store)
          └─ label with a prefix:  PrefixRun (subprocess + a waiter thread)
        one completion queue <── executor done-callbacks and waiter threads
        _finish ──> release the claim ──> RunState.succeeded/failed/held/... ──> take()
      load the root result .............. a damaged result found on the way
                                          is discarded and the graph run again (so is a
                                          result that vanished: deleted by `gc` or `clear`)
      warn once ......................... cached results computed by other code, used
                                          as they are because code is not checked
      keep the run's summary ............ its wall time, for `taskproc status`

Everything but the completion queue is touched by the thread that called `run_graph` only.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
import warnings
from collections.abc import Mapping
from typing import Any

from taskproc.errors import (
    CodeChangedWarning,
    CorruptResultError,
    FailedTaskError,
    GraphError,
    ResultMissingError,
    TaskprocError,
)
from taskproc.model import Fingerprints, TaskBase
from taskproc.run._executors import workers_of
from taskproc.run._hooks import RunHooks, Stats
from taskproc.run._job import format_traceback
from taskproc.run._limits import warn_unknown_labels
from taskproc.run._options import RunOptions
from taskproc.run._plan import collect, decide
from taskproc.run._progress import ProgressBars
from taskproc.run._resources import Resources, sigterm_as_exit
from taskproc.run._round import Round, report_plan
from taskproc.store import RunSummary, Store, hostname, new_runner

if sys.version_info >= (3, 11):
    from builtins import ExceptionGroup
else:  # pragma: no cover
    from exceptiongroup import ExceptionGroup

MAX_ROUNDS = 4


def run(root: TaskBase, options: RunOptions) -> tuple[Any, dict[str, Any]]:
    """Run `root` and every stale task upstream of it; return (result, stats)."""
    state = root._tp
    if state.graph is None:
        raise GraphError(f"{root!r}: run_graph() cannot be called from inside a worker")
    store = state.store
    first_order = collect(root)  # a cycle is reported before anything is written
    warn_unknown_labels(first_order, options.limits, options.prefix_commands)
    started = time.time()
    store.ensure()
    stats = Stats()
    hooks: list[RunHooks] = [stats, *options.hooks]
    if options.show_progress:
        hooks.append(ProgressBars(workers=workers_of(options.executor, options.max_workers)))
    code = Fingerprints()
    me = new_runner()
    resources = Resources(options, store, me)
    finished = False
    try:
        with sigterm_as_exit():
            for round_no in range(1, MAX_ROUNDS + 1):
                order = first_order if round_no == 1 else collect(root)
                plan = decide(
                    order,
                    root,
                    force_root=options.force_entrypoint and round_no == 1,
                    code=code,
                    check_code=options.detect_source_change,
                )
                stale = plan.stale
                if round_no == 1 and plan.drifted:
                    warnings.warn(code_changed_message(plan.drifted), CodeChangedWarning, 3)
                if stale:
                    one = Round(root, store, options, resources, hooks, me, code, started)
                    one.run(order, stale, first_round=round_no == 1)
                    if one.corrupt:
                        for loc in one.corrupt:
                            store.discard_result(loc)
                        continue
                elif round_no == 1:
                    report_plan(hooks, order, stale)
                try:
                    result = root.get_result()
                except CorruptResultError as exc:
                    warnings.warn(f"{exc}; recomputing it", stacklevel=2)
                    store.discard_result(exc.path)
                    continue
                except ResultMissingError:
                    continue  # deleted meanwhile (gc, clear from another shell): run it again
                except Exception as exc:  # the result is intact, but cannot be loaded here
                    raise _unloadable(root, exc) from None
                finished = True
                for hook in hooks:
                    hook.run_finished()
                return result, stats.as_dict()
            raise TaskprocError(
                f"{root!r}: results kept turning out corrupt after {MAX_ROUNDS} rounds; "
                "check the disk and the cache folder"
            )
    except BaseException:
        resources.interrupted = True
        raise
    finally:
        resources.close()
        if not finished:
            for hook in hooks:
                hook.run_finished()
        _keep_summary(store, started, stats)


def _keep_summary(store: Store, started: float, stats: Stats) -> None:
    """Keep this run's wall time and counts in the store, for ``taskproc status``."""
    ran, failed = sum(stats.executed.values()), sum(stats.failed.values())
    summary = RunSummary(started, time.time(), hostname(), os.getpid(), ran, failed)
    with contextlib.suppress(OSError):  # only people read it; never fail a run for it
        store.write_last_run(summary)


def _unloadable(root: TaskBase, exc: Exception) -> ExceptionGroup[FailedTaskError]:
    """The run's failure when the root's intact result cannot be loaded (unpickling raised)."""
    err = FailedTaskError(
        repr(root),
        task_name=root.task_name,
        task_id=root._tp.task_id,
        task_dir=root._tp_loc(),
        error_type=type(exc).__name__,
        error_message=f"its result cannot be loaded here: {exc}",
        traceback=format_traceback(exc),
    )
    err.__cause__ = exc
    return ExceptionGroup("1 task failed", [err])


def code_changed_message(drifted: Mapping[str, int]) -> str:
    """The one line that says which cached results were computed by other code."""
    n = sum(drifted.values())
    names = sorted(drifted)
    shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
    one = n == 1
    it = "it" if one else "them"
    return (
        f"{n} cached result{'' if one else 's'} of {shown} {'was' if one else 'were'} computed "
        f"by code other than the code now, and {'is' if one else 'are'} used as "
        f"{'it is' if one else 'they are'} because detect_source_change is off: rerun {it} "
        "with detect_source_change=True (on the command line, without -D), see what changed "
        f"with 'taskproc why FILE.py -o CACHE', or keep {it} with 'taskproc accept FILE.py -o "
        "CACHE' (to silence this: warnings.simplefilter('ignore', taskproc.CodeChangedWarning))"
    )

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
                                          result that vanished: deleted by `gc` or `clear`,
                                          however often that happens)
      warn once ......................... cached results computed by other code, used
                                          as they are because code is not checked
      keep the run's summary ............ its wall time, for `taskproc status`

The run's facts (fresh stamps, failures, results kept in memory) are its `Ledger`, made here
and passed by hand to the plan and the round; the task objects are never written. Everything
but the completion queue is touched by the thread that called `run_graph` only.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
import warnings
from typing import Any

from taskproc.errors import (
    CodeChangedWarning,
    CorruptResultError,
    FailedTaskError,
    GraphError,
    ResultMissingError,
    TaskprocError,
)
from taskproc.model import NO_RESULT, Fingerprints, Ledger, TaskBase
from taskproc.run._executors import InlineExecutor, workers_of
from taskproc.run._hooks import RunHooks, Stats
from taskproc.run._job import format_traceback
from taskproc.run._limits import warn_unknown_labels
from taskproc.run._live import LiveRecord
from taskproc.run._options import RunOptions
from taskproc.run._plan import code_changed_message, collect, decide, replaced_message
from taskproc.run._prefix import check_prefixes, prefix_of
from taskproc.run._progress import ProgressBars
from taskproc.run._resources import Resources, sigterm_as_exit
from taskproc.run._round import Round, report_plan
from taskproc.store import (
    DeadlineFiles,
    OutputFiles,
    Portable,
    PrefixJobs,
    ResultReplaced,
    RunSummary,
    Store,
    hostname,
    new_runner,
    require,
    write_last_run,
)

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
    warn_unknown_labels(first_order, options.labelled)
    check_prefixes({type(t) for t in first_order}, options.prefix_commands)
    started = time.time()
    stats = Stats()
    hooks: list[RunHooks] = [stats, *options.hooks]
    if options.show_progress:
        hooks.append(ProgressBars(workers=workers_of(options.executor, options.max_workers)))
    fingerprints = Fingerprints()
    me = new_runner()
    hooks.append(LiveRecord(store, me, started))  # the run's live record (taskproc serve)
    resources = Resources(options, store, me)
    check_store(store, first_order, options, resources.in_process())
    if not getattr(store, "fork_safe", True):
        # Its client cannot cross a fork (a bucket's: obstore): a pool that forks its workers
        # starts them before the store's first request. Other stores fork when a task first
        # needs the pool (a cached rerun never does).
        resources.prefork()
    try:
        store.ensure()
    except BaseException:
        resources.close()  # the pool started for it
        raise
    finished = False
    damaged_rounds = 0
    try:
        with sigterm_as_exit():
            round_no = 0
            while damaged_rounds < MAX_ROUNDS:
                round_no += 1
                ledger = Ledger()
                order = first_order if round_no == 1 else collect(root)
                plan = decide(
                    order,
                    root,
                    force_root=options.force_entrypoint and round_no == 1,
                    code_id_of=fingerprints,
                    check_code=options.detect_source_change,
                    ledger=ledger,
                )
                stale = plan.stale
                if round_no == 1 and plan.drifted:
                    warnings.warn(code_changed_message(plan.drifted), CodeChangedWarning, 3)
                if stale:
                    one = Round(
                        root, store, options, resources, hooks, me, fingerprints, ledger, started
                    )
                    one.run(order, stale, first_round=round_no == 1)
                    if one.corrupt or one.vanished or one.replaced:
                        for loc in one.corrupt:
                            store.discard_result(loc)
                        damaged_rounds += bool(one.corrupt or one.replaced)
                        continue
                elif round_no == 1:
                    report_plan(hooks, order, stale)
                result = ledger.values.get(root, NO_RESULT)
                if result is NO_RESULT:
                    try:
                        with ledger.active():
                            result = root.get_result()
                    except CorruptResultError as exc:
                        warnings.warn(f"{exc}; recomputing it", stacklevel=2)
                        store.discard_result(exc.path)
                        damaged_rounds += 1
                        continue
                    except ResultReplaced as replaced:
                        # Another runner replaced it since this run made or planned it.
                        ours = fingerprints(type(root))
                        if replaced.record.code_id != ours:
                            if options.detect_source_change:
                                raise _replaced(root) from None
                            drift = code_changed_message({root.task_name: 1}, during_run=True)
                            warnings.warn(drift, CodeChangedWarning, 2)
                        damaged_rounds += 1
                        continue
                    except ResultMissingError:
                        # Deleted meanwhile (gc, clear from another shell): run it again.
                        warnings.warn(
                            f"{root!r}: its result was deleted while the run went on; "
                            "computing it again",
                            stacklevel=2,
                        )
                        continue
                    except Exception as exc:  # the result is intact, but cannot be loaded here
                        raise _unloadable(root, exc) from None
                finished = True
                for hook in hooks:
                    hook.run_finished()
                return result, stats.as_dict()
            raise TaskprocError(
                f"{root!r}: results kept turning out corrupt, or being replaced by other "
                f"runners, after {MAX_ROUNDS} rounds; check the disk and the cache folder, and "
                "that the runners sharing it run the same code on the same input files"
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


def check_store(store: Store, order: list[TaskBase], options: RunOptions, in_process: bool) -> None:
    """ConfigError up front if the run needs something of the store it cannot do (see the
    store's capabilities), before anything runs or is written."""
    classes = {type(t) for t in order}
    if any(prefix_of(cls._tp_labels, options.prefix_commands) for cls in classes):
        fix = "run on a cache folder (-o FOLDER), or drop the prefixes"
        require(store, PrefixJobs, "prefix commands", fix)
        require(store, Portable, "prefix commands", fix)
    if not in_process:
        fix = "run with executor 'thread' or 'local' (-t thread), or on a cache folder"
        require(store, Portable, "a process pool (or dask) runs tasks in other processes", fix)
        require(store, OutputFiles, "tasks in worker processes capture their output", fix)
        if any(cls.task_timeout is not None for cls in classes):
            require(store, DeadlineFiles, "task_timeout in worker processes", fix)
    elif not isinstance(options.executor, InlineExecutor):
        require(
            store,
            OutputFiles,
            "a thread pool captures each task's output",
            "run with executor 'local' (-t local), which captures nothing",
        )


def _keep_summary(store: Store, started: float, stats: Stats) -> None:
    """Keep this run's wall time and counts in the store, for ``taskproc status``."""
    ran, failed = sum(stats.executed.values()), sum(stats.failed.values())
    summary = RunSummary(started, time.time(), hostname(), os.getpid(), ran, failed)
    with contextlib.suppress(OSError):  # only people read it; never fail a run for it
        write_last_run(store, summary)


def _replaced(root: TaskBase) -> ExceptionGroup[FailedTaskError]:
    """The run's failure when another runner replaced the root's result with one of other
    code (detection on)."""
    err = FailedTaskError(
        repr(root),
        task_name=root.task_name,
        task_id=root._tp.task_id,
        task_dir=root._tp_loc(),
        error_type="ResultReplaced",
        error_message=replaced_message(root, own=True),
    )
    return ExceptionGroup("1 task failed", [err])


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

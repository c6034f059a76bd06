"""Running a graph: the plan, the run state and its driver, jobs, workers, prefixes, executors.

Only the names below are for the layers above; everything else is private to the run layer.
Importing this package costs nothing: every worker process imports it (``python -m
taskproc.run.worker``), and a worker needs none of these names before its task's first line.
Each name is imported from its module on first use; nothing here imports cloudpickle or tqdm.
"""

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from taskproc.run._dask import DaskExecutor, dask_executor
    from taskproc.run._driver import run
    from taskproc.run._executors import (
        InlineExecutor,
        default_workers,
        make_executor,
        process_pool,
    )
    from taskproc.run._hooks import RunHooks, Stats, TaskState
    from taskproc.run._limits import did_you_mean, graph_labels, unknown_labels_message
    from taskproc.run._live import HISTORY_PREFIX, LIVE_PREFIX, LiveRecord
    from taskproc.run._options import (
        ERROR_POLICIES,
        EXECUTOR_KINDS,
        LOG_LEVELS,
        ErrorHandling,
        RunOptions,
        executor_kind,
    )
    from taskproc.run._plan import Plan, collect, decide
    from taskproc.run._progress import ProgressBars
    from taskproc.run._resources import sigterm_as_exit

# Where each name lives (dask itself is imported when `_dask` is).
_MODULES = {
    **dict.fromkeys(("DaskExecutor", "dask_executor"), "_dask"),
    "run": "_driver",
    **dict.fromkeys(
        ("InlineExecutor", "default_workers", "make_executor", "process_pool"), "_executors"
    ),
    **dict.fromkeys(("RunHooks", "Stats", "TaskState"), "_hooks"),
    **dict.fromkeys(("did_you_mean", "graph_labels", "unknown_labels_message"), "_limits"),
    **dict.fromkeys(("HISTORY_PREFIX", "LIVE_PREFIX", "LiveRecord"), "_live"),
    **dict.fromkeys(
        (
            "ERROR_POLICIES",
            "EXECUTOR_KINDS",
            "LOG_LEVELS",
            "ErrorHandling",
            "RunOptions",
            "executor_kind",
        ),
        "_options",
    ),
    **dict.fromkeys(("Plan", "collect", "decide"), "_plan"),
    "ProgressBars": "_progress",
    "sigterm_as_exit": "_resources",
}


def __getattr__(name: str) -> Any:
    module = _MODULES.get(name)
    if module is None:
        raise AttributeError(f"module 'taskproc.run' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"taskproc.run.{module}"), name)
    if name != "run":  # `run` would hide the driver's module of that name: look it up each time
        globals()[name] = value
    return value


__all__ = [
    "DaskExecutor",
    "dask_executor",
    "ERROR_POLICIES",
    "HISTORY_PREFIX",
    "LIVE_PREFIX",
    "LiveRecord",
    "EXECUTOR_KINDS",
    "LOG_LEVELS",
    "ErrorHandling",
    "Plan",
    "InlineExecutor",
    "ProgressBars",
    "RunHooks",
    "RunOptions",
    "Stats",
    "TaskState",
    "collect",
    "decide",
    "default_workers",
    "did_you_mean",
    "executor_kind",
    "graph_labels",
    "make_executor",
    "process_pool",
    "run",
    "sigterm_as_exit",
    "unknown_labels_message",
]

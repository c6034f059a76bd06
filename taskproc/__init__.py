"""taskproc: a cached task-graph pipeline framework.

Write a computation as small `Task` classes whose upstream tasks are attributes, build them
inside ``with Graph('./cache'):``, and call ``task.run_graph()``. Every result is cached on disk;
a rerun does only what is missing or stale. A cache holds pickles: only load caches you trust.
"""

from typing import TYPE_CHECKING, Any

from taskproc._task import Task, accept_code, gc_cache
from taskproc.errors import (
    ArgumentError,
    CacheError,
    CodeChangedWarning,
    ConfigError,
    CorruptResultError,
    CycleError,
    FailedTaskError,
    GraphError,
    ResultMissingError,
    TaskDefinitionError,
    TaskprocError,
    UsageError,
)
from taskproc.model import (
    Const,
    Future,
    FutureDict,
    FutureList,
    Graph,
    allow_failed,
)

if TYPE_CHECKING:
    from taskproc._version import __version__ as __version__
    from taskproc.cli import DefaultCliArguments
    from taskproc.model import InputFile, TaskConfig, TaskWorker
    from taskproc.run import DaskExecutor, InlineExecutor, RunHooks, TaskState, dask_executor


def __getattr__(name: str) -> Any:
    # Imported on first use: every worker process imports taskproc, and needs none of these
    # before its task's first line (the dask helpers import dask when used).
    if name in ("DaskExecutor", "dask_executor", "InlineExecutor", "RunHooks", "TaskState"):
        from taskproc import run

        value = globals()[name] = getattr(run, name)
        return value
    if name == "InputFile":
        from taskproc import model

        value = globals()[name] = model.InputFile
        return value
    if name == "DefaultCliArguments":
        from taskproc import cli

        value = globals()[name] = cli.DefaultCliArguments
        return value
    if name in ("TaskConfig", "TaskWorker"):  # records made on request, by dataclasses
        from taskproc import model

        value = globals()[name] = getattr(model, name)
        return value
    if name == "__version__":  # a worker never asks: one module fewer before its task
        from taskproc._version import __version__

        return __version__
    raise AttributeError(f"module 'taskproc' has no attribute {name!r}")


__all__ = [
    "ArgumentError",
    "CacheError",
    "CodeChangedWarning",
    "ConfigError",
    "Const",
    "CorruptResultError",
    "CycleError",
    "DaskExecutor",
    "DefaultCliArguments",
    "FailedTaskError",
    "Future",
    "FutureDict",
    "FutureList",
    "Graph",
    "GraphError",
    "InlineExecutor",
    "InputFile",
    "ResultMissingError",
    "RunHooks",
    "Task",
    "TaskConfig",
    "TaskDefinitionError",
    "TaskWorker",
    "TaskState",
    "TaskprocError",
    "UsageError",
    "accept_code",
    "allow_failed",
    "dask_executor",
    "gc_cache",
]

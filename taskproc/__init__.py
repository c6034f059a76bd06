"""taskproc: a cached task-graph pipeline framework.

Write a computation as small `Task` classes whose upstream tasks are attributes, build them
inside ``with Graph('./cache'):``, and call ``task.run_graph()``. Every result is cached on disk;
a rerun does only what is missing or stale. A cache holds pickles: only load caches you trust.
"""

from .dask_executor import DaskExecutor, dask_executor
from .defaults import DefaultCliArguments
from .errors import (
    ArgumentError,
    CacheError,
    ConfigError,
    CorruptResultError,
    CycleError,
    FailedTaskError,
    GraphError,
    ResultMissingError,
    TaskDefinitionError,
    TaskprocError,
)
from .executors import InlineExecutor
from .future import Const, Future, FutureDict, FutureList
from .graph import Graph
from .progress import RunHooks
from .task import Task, TaskConfig, TaskWorker

__version__ = "0.26.0"

__all__ = [
    "ArgumentError",
    "CacheError",
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
    "ResultMissingError",
    "RunHooks",
    "Task",
    "TaskConfig",
    "TaskDefinitionError",
    "TaskWorker",
    "TaskprocError",
    "dask_executor",
]

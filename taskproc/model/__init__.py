"""The task model: tasks, futures, graphs and canonical keys. Building a graph writes nothing."""

from taskproc.model._build import NO_RESULT, BuildStatus, TaskInternals, initialize
from taskproc.model._canonical import JSON, digest
from taskproc.model._describe import (
    WIDTH,
    Lookup,
    apart,
    args_reader,
    clip,
    describe,
    memoized,
    shorten,
)
from taskproc.model._fingerprint import CodeIdentity, Fingerprints, fingerprinter
from taskproc.model._future import (
    Const,
    Future,
    FutureDict,
    FutureList,
    HasRunTask,
    Item,
    allow_failed,
    future_ref,
)
from taskproc.model._graph import Graph, current_graph
from taskproc.model._options import BUILTINS, CLASS_OPTIONS, TaskConfig
from taskproc.model._task import TaskBase, TaskWorker, args_lookup, readable_name

__all__ = [
    "BUILTINS",
    "CLASS_OPTIONS",
    "JSON",
    "NO_RESULT",
    "BuildStatus",
    "CodeIdentity",
    "Const",
    "Future",
    "Fingerprints",
    "FutureDict",
    "FutureList",
    "Graph",
    "HasRunTask",
    "Item",
    "TaskBase",
    "TaskConfig",
    "TaskInternals",
    "TaskWorker",
    "WIDTH",
    "Lookup",
    "apart",
    "args_lookup",
    "args_reader",
    "clip",
    "allow_failed",
    "current_graph",
    "describe",
    "digest",
    "fingerprinter",
    "future_ref",
    "initialize",
    "memoized",
    "readable_name",
    "shorten",
]

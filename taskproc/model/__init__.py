"""The task model: tasks, futures, graphs and canonical keys. Building a graph writes nothing."""

from typing import TYPE_CHECKING, Any

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
from taskproc.model._freshness import (
    FAILED_STAMP,
    WITH_FAILED,
    Reason,
    computed_with_failures,
    inputs_digest,
    new_record,
    stale_reason,
    stamps_digest,
    why_stale,
)
from taskproc.model._future import (
    Const,
    Future,
    FutureDict,
    FutureList,
    HasRunTask,
    Item,
    allow_failed,
    future_ref,
    upstream_links,
)
from taskproc.model._graph import Graph, current_graph
from taskproc.model._ledger import ACTIVE_LEDGER, Ledger, active_ledger
from taskproc.model._options import BUILTINS, CLASS_OPTIONS, PREFIX_PLACEHOLDERS
from taskproc.model._task import TaskBase, args_lookup, readable_name

if TYPE_CHECKING:
    from taskproc.model._fingerprint import CodeIdentity, Fingerprints, fingerprinter
    from taskproc.model._inputfile import INPUT_CODE, InputFile, Scan, check_input, stored_rows
    from taskproc.model._introspection import TaskConfig, TaskLocation, TaskWorker

_INPUTS = ("INPUT_CODE", "InputFile", "Scan", "check_input", "stored_rows")


def __getattr__(name: str) -> Any:
    # Code identities parse and walk source (ast, dis, inspect): a runner computes them, a
    # worker process never does, so it does not import them before its task's first line;
    # nor the records a task gives of itself (dataclasses, see `_introspection.py`).
    if name in ("CodeIdentity", "Fingerprints", "fingerprinter"):
        from taskproc.model import _fingerprint

        value = globals()[name] = getattr(_fingerprint, name)
        return value
    if name in _INPUTS:  # input files: a worker imports them with a task that has one
        from taskproc.model import _inputfile

        value = globals()[name] = getattr(_inputfile, name)
        return value
    if name in ("TaskConfig", "TaskLocation", "TaskWorker"):
        from taskproc.model import _introspection

        value = globals()[name] = getattr(_introspection, name)
        return value
    raise AttributeError(f"module 'taskproc.model' has no attribute {name!r}")


__all__ = [
    "INPUT_CODE",
    "InputFile",
    "Scan",
    "check_input",
    "stored_rows",
    "FAILED_STAMP",
    "WITH_FAILED",
    "ACTIVE_LEDGER",
    "Ledger",
    "Reason",
    "active_ledger",
    "computed_with_failures",
    "inputs_digest",
    "new_record",
    "stale_reason",
    "stamps_digest",
    "why_stale",
    "BUILTINS",
    "CLASS_OPTIONS",
    "PREFIX_PLACEHOLDERS",
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
    "TaskLocation",
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
    "upstream_links",
]

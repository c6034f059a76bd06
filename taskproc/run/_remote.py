"""Jobs for worker processes: a task pickled without its upstream graph, and rebuilt.

Task classes are pickled once per run (by value where cloudpickle must); upstream tasks become
references (their class, id, and the stamp of the result this run planned for or made, which
the job's `get_result` checks: a result another runner replaced meanwhile is not used), so a
job is about 100 bytes whatever the graph's size. An input file (`InputFile`) travels as its
path, its result. Only runs that send tasks to other processes import this module (and
cloudpickle).

Code pickled by value keeps its file name. cloudpickle 3 names the file of every code object
it pickles ``<dynamic-code>``, and a task's traceback from a worker then has neither the file nor
the source line. `CodePickler` ships code objects as marshal data (what ``.pyc`` files hold),
which keeps ``co_filename`` and the line table; the worker shows the file's lines when the file
is at that path there (same host, shared folder, a container with the code mounted at the same
place, as prefix commands need anyway) and the file name and line number elsewhere. Code can
still run where the file cannot be imported: it travels by value as before.

A worker only unpickles, which needs no cloudpickle of its own (a class pickled by value
imports what it needs as it loads): the picklers are made on first use, so a worker process
does not import cloudpickle before its task's first line.
"""

from __future__ import annotations

import functools
import io
import marshal
import pickle
import types
from collections import ChainMap
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from taskproc.errors import FailedTaskError
from taskproc.model import BuildStatus, Ledger, TaskBase, TaskInternals
from taskproc.run._job import Done, JobSpec, Outcome, execute, failure_outcome
from taskproc.store import Store


def _reduce_code(code: types.CodeType) -> tuple[Any, ...]:
    """A code object as marshal data: its file name and lines survive (see the module
    docstring). Code that marshal cannot hold (made by hand with odd constants) is left to
    cloudpickle."""
    try:
        return marshal.loads, (marshal.dumps(code),)
    except ValueError:
        import cloudpickle

        reduce: Any = cloudpickle.Pickler.dispatch_table[types.CodeType]
        return tuple(reduce(code))


@functools.cache
def code_pickler() -> type[pickle.Pickler]:
    """cloudpickle's pickler, with code objects that keep their file name."""
    import cloudpickle

    class CodePickler(cloudpickle.Pickler):  # type: ignore[misc]
        dispatch_table = ChainMap(
            {types.CodeType: _reduce_code}, cloudpickle.Pickler.dispatch_table
        )

    return CodePickler


def dumps(obj: object) -> bytes:
    """`cloudpickle.dumps`, with code objects that keep their file name."""
    buf = io.BytesIO()
    code_pickler()(buf, protocol=pickle.HIGHEST_PROTOCOL).dump(obj)
    return buf.getvalue()


class ClassTable:
    """Task classes pickled once per run; jobs refer to them by index."""

    def __init__(self) -> None:
        self._blobs: dict[type, bytes] = {}

    def blob(self, cls: type) -> bytes:
        blob = self._blobs.get(cls)
        if blob is None:
            blob = self._blobs[cls] = dumps(cls)
        return blob


@functools.cache
def _job_pickler() -> type[Any]:
    from taskproc.model import InputFile  # the runner's side: workers only unpickle

    class _JobPickler(code_pickler()):  # type: ignore[misc]
        def __init__(
            self,
            file: io.BytesIO,
            root: TaskBase,
            table: ClassTable,
            stamps: Mapping[TaskBase, str],
        ) -> None:
            super().__init__(file, protocol=pickle.HIGHEST_PROTOCOL)
            self._root = root
            self._table = table
            self._stamps = stamps
            self.classes: list[bytes] = []
            self._index: dict[type, int] = {}

        def _class_id(self, cls: type) -> int:
            idx = self._index.get(cls)
            if idx is None:
                idx = self._index[cls] = len(self.classes)
                self.classes.append(self._table.blob(cls))
            return idx

        def persistent_id(self, obj: Any) -> Any:
            if isinstance(obj, TaskBase) and obj is not self._root:
                cls = type(obj)
                if cls is InputFile:
                    return ("f", self._class_id(cls), obj._tp.task_id, str(obj.path))
                return ("t", self._class_id(cls), obj._tp.task_id, self._stamps.get(obj))
            if isinstance(obj, type) and issubclass(obj, TaskBase):
                return ("c", self._class_id(obj))
            return None

    return _JobPickler


def pack(
    task: TaskBase, table: ClassTable, stamps: Mapping[TaskBase, str]
) -> tuple[tuple[bytes, ...], bytes]:
    """The task's class and attributes, pickled for a worker: (class blobs, state); each
    upstream task a reference with the stamp `stamps` holds for it."""
    buf = io.BytesIO()
    pickler = _job_pickler()(buf, task, table, stamps)
    pickler._class_id(type(task))  # index 0 is the task's own class
    state = {k: v for k, v in task.__dict__.items() if k != "_tp"}
    try:
        pickler.dump(state)
    except Exception as exc:
        raise TypeError(
            f"{task!r}: its attributes cannot be pickled for a worker process "
            f"({type(exc).__name__}: {exc}); keep only picklable values on the task, or run "
            "with a thread executor"
        ) from exc
    return tuple(pickler.classes), buf.getvalue()


@functools.lru_cache(maxsize=256)
def _load_class(blob: bytes) -> type[TaskBase]:
    cls: type[TaskBase] = pickle.loads(blob)
    return cls


def pack_failure(error: FailedTaskError) -> bytes:
    """A failure for a worker, with its causes: the failures that kept it from running, if
    it was skipped, and the failed task's own exception when that pickles (a pickled
    exception loses its `__cause__`, so the chain travels as a list)."""
    chain = [error]
    while isinstance(chain[-1].__cause__, FailedTaskError):
        chain.append(chain[-1].__cause__)
    try:
        return dumps((chain, chain[-1].__cause__))
    except Exception:
        return dumps((chain, None))


def _unpack_failure(blob: bytes) -> FailedTaskError:
    chain, own = pickle.loads(blob)
    for error, cause in zip(chain, [*chain[1:], own], strict=True):
        error.__cause__ = cause
    return chain[0]  # type: ignore[no-any-return]


class _JobUnpickler(pickle.Unpickler):
    def __init__(
        self,
        file: io.BytesIO,
        classes: tuple[bytes, ...],
        store: Store,
        failures: dict[str, bytes],
        ledger: Ledger,
    ) -> None:
        super().__init__(file)
        self._classes = classes
        self._store = store
        self._failures = failures
        self._ledger = ledger

    def persistent_load(self, pid: Any) -> Any:
        if pid[0] == "c":
            return _load_class(self._classes[pid[1]])
        cls = _load_class(self._classes[pid[1]])
        stub = cls.__new__(cls)
        stub.__dict__["_tp"] = TaskInternals(pid[2], "", self._store, None, BuildStatus.STUB)
        if pid[0] == "f":  # an input file: its path is its result
            stub.__dict__["path"] = Path(pid[3])
            return stub
        if pid[3] is not None:  # the result this run planned for: get_result checks it
            self._ledger.stamps[stub] = pid[3]
        self._ledger.keep.add(stub)  # loaded once per job, however often the task reads it
        if self._failures:
            blob = self._failures.get(f"{cls.task_name}/{pid[2]}")
            if blob is not None:  # a tolerated upstream task that failed: its futures say so
                self._ledger.failures[stub] = _unpack_failure(blob)
        return stub


def unpack(
    spec: JobSpec, classes: tuple[bytes, ...], state: bytes, store: Store
) -> tuple[TaskBase, Ledger]:
    """The task object rebuilt in a worker, its upstream tasks as references, and the job's
    ledger (the failures of its tolerated upstream tasks; their results, once loaded)."""
    cls = _load_class(classes[0])
    task = cls.__new__(cls)
    failures = dict(spec.failed_inputs)
    ledger = Ledger()
    unpickler = _JobUnpickler(io.BytesIO(state), classes, store, failures, ledger)
    task.__dict__.update(unpickler.load())
    task.__dict__["_tp"] = TaskInternals(
        spec.task_id, spec.args_json, store, None, BuildStatus.WORKER
    )
    return task, ledger


def run_remote(spec: JobSpec, classes: tuple[bytes, ...], state: bytes, store: Store) -> Outcome:
    """Entry point of a job in a worker process."""
    if spec.log_level is not None:
        import logging

        logging.getLogger().setLevel(spec.log_level)
    try:
        task, ledger = unpack(spec, classes, state, store)
    except Exception as exc:
        return failure_outcome(
            RuntimeError(
                f"cannot rebuild {spec.describe(store)} in the worker "
                f"({type(exc).__name__}: {exc}); is its module importable there?"
            ),
            store,
            spec.location,
        )
    outcome = execute(task, spec, "fds", ledger)
    return Done() if isinstance(outcome, Done) else outcome  # the value stays here

"""`TaskBase`: a unit of work whose upstream tasks are its attributes, as the engine sees it.

How tasks are built is `_build.py`; their class options `_options.py`; the records a task gives
of itself (`task_config`, `task_worker`) `_introspection.py`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar, cast, overload

from taskproc.errors import (
    CacheError,
    ConfigError,
    GraphError,
    ResultMissingError,
    TaskDefinitionError,
)
from taskproc.model._build import NO_RESULT, BuildStatus, Call, TaskInternals, TaskMeta, initialize
from taskproc.model._canonical import JSON
from taskproc.model._describe import WIDTH, Lookup, args_reader, describe
from taskproc.model._future import Future, HasRunTask, Item
from taskproc.model._graph import current_graph
from taskproc.model._ledger import ACTIVE_LEDGER
from taskproc.model._naming import qualified_name
from taskproc.model._options import BUILTINS, FACADE_MODULE, validate_class
from taskproc.store import CAPABILITIES, TaskFolders, folder_problem

_INPUT_MODULE = "taskproc.model._inputfile"  # `InputFile`: its result is its path, never loaded

if TYPE_CHECKING:
    from taskproc.model._introspection import TaskConfig, TaskLocation

R = TypeVar("R")
T = TypeVar("T")
K = TypeVar("K")
V = TypeVar("V")


class _BuiltinPropertyImpl(property):
    """A read-only built-in property whose assignment names the task and the fix."""

    def __set__(self, obj: Any, value: Any) -> None:
        name = self.fget.__name__ if self.fget else "?"
        raise TaskDefinitionError(
            f"{obj!r}: {name!r} is a taskproc built-in and cannot be assigned; rename the attribute"
        )


if TYPE_CHECKING:
    _BuiltinProperty = property
else:
    _BuiltinProperty = _BuiltinPropertyImpl


class TaskBase(Future[Any], metaclass=TaskMeta):
    """A task as the engine sees it: identity, deferred construction, results, the cache.

    Users subclass `taskproc.Task`, which adds the entry points that sit in higher layers
    (`run_graph`, `cli`). Subclasses declare upstream tasks as attributes in ``__init__`` and
    compute their result in ``run_task``.

    Class options: ``task_label`` (str or sequence of str), ``task_compress_level`` (0-9,
    default 9), ``task_version`` (change it to invalidate cached results), ``task_retries``,
    ``task_retry_delay`` (seconds), ``task_timeout`` (seconds), ``task_requires`` (the
    installed distributions whose version is part of the task's code identity) and
    ``task_resources`` (values for ``{key}`` in prefix templates, e.g. ``{'mem': '4G'}``).
    """

    task_name: ClassVar[str] = "taskproc.Task"
    task_label: ClassVar[str | Sequence[str]] = ()
    task_compress_level: ClassVar[int] = 9
    task_version: ClassVar[str | int | None] = None
    task_retries: ClassVar[int] = 0
    task_retry_delay: ClassVar[float] = 1.0
    task_timeout: ClassVar[float | None] = None
    task_requires: ClassVar[str | Sequence[str]] = ()
    task_resources: ClassVar[Mapping[str, str | int | float]] = MappingProxyType({})

    _tp: TaskInternals
    _tp_labels: ClassVar[tuple[str, ...]] = ()
    _tp_requires: ClassVar[tuple[str, ...]] = ()
    _tp_resources: ClassVar[tuple[tuple[str, str], ...]] = ()
    _tp_call: ClassVar[Call | None] = None  # see `_build.call_signature`

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "task_name" not in cls.__dict__:
            type.__setattr__(cls, "task_name", qualified_name(cls))
        clash = BUILTINS.intersection(cls.__dict__)
        if clash and cls.__module__ not in (FACADE_MODULE, _INPUT_MODULE):
            raise TaskDefinitionError(
                f"{cls.task_name}: {sorted(clash)[0]!r} is a taskproc built-in and cannot be "
                "overridden; rename it"
            )
        validate_class(cls)
        # The signature of __init__ is read when a task of the class is first built, not here:
        # a worker process makes its task's class (and those of its upstream tasks) but builds
        # none. Each class keeps its own, never its base's.
        type.__setattr__(cls, "_tp_call", None)

    def __class_getitem__(cls, item: Any) -> Any:
        # taskproc 0.25 code may write `class Foo(Task[int])`: the result type now comes from
        # run_task's annotation, so the parameter is accepted and ignored.
        return cls

    def __init__(self) -> None:
        pass

    def run_task(self) -> Any:
        """Compute this task's result. A task without one (it only groups its upstream tasks,
        as taskproc 0.25 allowed) runs them and yields None."""
        return None

    # -- identity -----------------------------------------------------------------------

    @_BuiltinProperty
    def task_id(self) -> str:
        """The stable id of this task instance (a digest of its canonical arguments)."""
        return self._tp.task_id

    def _tp_ref(self) -> JSON:
        return {"__task__": f"{self.task_name}/{self._tp.task_id}"}

    def _tp_tasks(self) -> Iterator[TaskBase]:
        yield self

    def _tp_edges(self) -> Iterator[tuple[TaskBase, bool]]:
        yield self, False

    def __repr__(self) -> str:
        return readable_name(self)

    def __getattr__(self, name: str) -> Any:
        state = self.__dict__.get("_tp")
        if state is not None and not name.startswith("__"):
            if state.status is BuildStatus.PENDING:
                initialize(self)
                return getattr(self, name)
            if state.status is BuildStatus.BUILDING:
                raise AttributeError(
                    f"{self!r} has no attribute {name!r} yet: it is still being built "
                    "(do two tasks build each other?)"
                )
            if state.status is BuildStatus.STUB:
                raise AttributeError(
                    f"{self!r}: attribute {name!r} of an upstream task is not available in a "
                    "worker process, where upstream tasks are references; use get_result() or "
                    f"task_directory, or pass {name!r} to the downstream task as an argument"
                )
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    # -- the cache --------------------------------------------------------------------

    def _tp_loc(self) -> str:
        """This task's location in its store."""
        state = self._tp
        return state.store.locate(self.task_name, state.task_id)

    @_BuiltinProperty
    def task_directory(self) -> Path:
        """A folder for this task's own files (``<task folder>/data``): it exists (empty) from
        the first time it is asked for, also before the task runs; never made while building."""
        store = self._tp.store
        if not isinstance(store, TaskFolders):
            raise ConfigError(
                f"{self!r}: task_directory: the store {store.root} "
                f"{CAPABILITIES[TaskFolders]}; keep the task's files in a cache folder"
            )
        try:
            return store.data_folder(self._tp_loc())
        except OSError as exc:
            raise CacheError(f"{self!r}: task_directory: {folder_problem(exc)}") from None

    def get_result(self: HasRunTask[R]) -> R:
        """This task's result: in memory if the run executing the caller computed or loaded
        it (see `Ledger`), else loaded from the cache (in a run, the result the run planned
        for or made: `ResultReplaced` if another runner replaced it meanwhile)."""
        # No `cast` calls here: they are calls of Python code, and this runs once a task.
        task: TaskBase = self  # type: ignore[assignment]
        ledger = ACTIVE_LEDGER.get()
        stamp = None
        if ledger is not None:
            value = ledger.values.get(task, NO_RESULT)
            if value is not NO_RESULT:
                return value  # type: ignore[no-any-return]
            # The result this run planned or made: another runner's raises `ResultReplaced`.
            stamp = ledger.stamps.get(task)
        try:
            value = task._tp.store.load(task._tp_loc(), repr(task), stamp)
        except FileNotFoundError:
            raise ResultMissingError(
                f"{task!r} has no result in the cache yet; run it (or a task downstream of it) "
                "with run_graph() first"
            ) from None
        if ledger is not None and task in ledger.keep:
            ledger.values[task] = value
        return cast(R, value)

    @overload
    def __getitem__(self: HasRunTask[Sequence[T]], key: int) -> Future[T]: ...
    @overload
    def __getitem__(self: HasRunTask[Mapping[K, V]], key: K) -> Future[V]: ...
    def __getitem__(self, key: Any) -> Any:
        return Item(self, key)

    def clear_task(self) -> None:
        """Delete this task's cached result and files; its `task_directory`, if it was made,
        stays as an empty folder."""
        self._tp.store.clear(self.task_name, self._tp.task_id, keep_data=True)

    @classmethod
    def clear_all_tasks(cls) -> None:
        """Delete the cached results and folders of every instance of this task (in the
        current graph's cache)."""
        graph = current_graph()
        if graph is None:
            raise GraphError(
                f"{cls.task_name}.clear_all_tasks() needs the cache folder: call it inside "
                "'with Graph(cache_dir):'"
            )
        graph.store.clear(cls.task_name)

    # -- introspection -------------------------------------------------------------------

    @classmethod
    def get_task_config(cls) -> TaskConfig:
        """The validated class options of this task."""
        from taskproc.model._introspection import TaskConfig  # see its module

        return TaskConfig(
            task_name=cls.task_name,
            labels=cls._tp_labels,
            compress_level=cls.task_compress_level,
            version=cls.task_version,
            retries=cls.task_retries,
            retry_delay=float(cls.task_retry_delay),
            timeout=None if cls.task_timeout is None else float(cls.task_timeout),
            requires=cls._tp_requires,
            resources=cls._tp_resources,
        )

    @_BuiltinProperty
    def task_config(self) -> TaskConfig:
        """The class options of this task instance."""
        return type(self).get_task_config()

    @_BuiltinProperty
    def task_worker(self) -> TaskLocation:
        """Where this task instance lives in the cache."""
        from taskproc.model._introspection import TaskLocation  # see its module

        loc = self._tp_loc()
        return TaskLocation(
            task=repr(self),
            task_name=self.task_name,
            task_id=self._tp.task_id,
            task_dir=Path(loc),
            result_path=Path(self._tp.store.result_file(loc)),
            labels=self._tp_labels,
            upstream=tuple(f"{t.task_name}/{t._tp.task_id}" for t in self._tp_upstream()),
        )

    def _tp_upstream(self) -> tuple[TaskBase, ...]:
        initialize(self)
        return self._tp.upstream

    def get_workers(self) -> dict[str, TaskLocation]:
        """`task_worker` of this task and of every task upstream of it, by key."""
        out: dict[str, TaskLocation] = {}
        stack: list[TaskBase] = [self]
        seen = {id(self)}
        while stack:
            task = stack.pop()
            worker = task.task_worker
            out[f"{worker.task_name}/{worker.task_id}"] = worker
            for up in task._tp_upstream():
                if id(up) not in seen:
                    seen.add(id(up))
                    stack.append(up)
        return out

    def to_json(self) -> dict[str, Any]:
        """This task as JSON: its name, id and canonical arguments."""
        return {
            "task_name": self.task_name,
            "task_id": self._tp.task_id,
            "args": json.loads(self._tp.args_json),
        }


def args_lookup(task: TaskBase) -> Lookup:
    """Where `task`'s upstream tasks' arguments are found: the graph it was built in, or, in a
    worker process (upstream tasks are references there), the store they ran in."""
    state = task._tp
    if state.graph is None:
        return args_reader(state.store)
    tasks = state.graph.tasks

    def lookup(key: str) -> str | None:
        found = tasks.get(key)
        return None if found is None else found._tp.args_json or None

    return lookup


def readable_name(task: TaskBase, width: int | None = WIDTH) -> str:
    """``sweep.Train(data=sweep.MakeData(n=400), lr=0.1)``: the task as every report shows it
    (see `_describe.py`), cut in the middle past `width` characters; made only when shown."""
    state = task.__dict__.get("_tp")
    if state is None:
        return f"<{task.task_name} (not built)>"
    if not state.args_json:  # an upstream reference in a worker process
        return f"{task.task_name}[{state.task_id[:8]}]"
    return describe(task.task_name, state.args_json, args_lookup(task), width)

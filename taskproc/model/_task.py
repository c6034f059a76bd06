"""`Task`: a unit of work whose upstream tasks are its attributes.

Building a task (``Choose(6, 3)``) computes its identity from its class and arguments before
anything else. If the graph already holds a task with that identity, that very object is
returned. Otherwise a new object is registered and its ``__init__`` is *deferred*: it runs from
a work queue drained by the outermost construction, so upstream tasks built inside ``__init__``
do not recurse and a chain of 100,000 tasks builds in constant stack depth. Reading a user
attribute of a task whose ``__init__`` has not run yet runs it on the spot, so user code sees
fully built objects.
"""

from __future__ import annotations

import enum
import gc
import inspect
import json
import logging
import os
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal, TypeVar, cast, overload

from taskproc.model._canonical import JSON, canonical_arguments, describe, digest
from taskproc.errors import (
    ArgumentError,
    CacheError,
    ConfigError,
    GraphError,
    ResultMissingError,
    TaskDefinitionError,
)
from taskproc.store._files import folder_problem, make_dirs
from taskproc.model._future import Future, HasRunTask, Item, future_ref, upstream_tasks
from taskproc.model._graph import Graph, current_graph
from taskproc.model._naming import is_valid_task_name, qualified_name

if TYPE_CHECKING:
    from taskproc.cli._defaults import DefaultCliArguments
    from taskproc.run._progress import RunHooks

R = TypeVar("R")
T = TypeVar("T")
K = TypeVar("K")
V = TypeVar("V")

ErrorHandling = Literal["immediate", "eager", "lazy"]

# Names users must not redefine on a Task subclass or assign in __init__.
BUILTINS = frozenset(
    {
        "task_directory",
        "run_graph",
        "cli",
        "clear_task",
        "clear_all_tasks",
        "get_task_config",
        "task_worker",
        "task_config",
        "get_result",
        "to_json",
        "get_workers",
        "task_id",
    }
)
CLASS_OPTIONS = frozenset(
    {
        "task_name",
        "task_label",
        "task_compress_level",
        "task_version",
        "task_retries",
        "task_retry_delay",
        "task_timeout",
    }
)
_RESERVED = BUILTINS | CLASS_OPTIONS


class Status(enum.Enum):
    PENDING = "pending"  # registered, __init__ not run yet
    BUILDING = "building"  # __init__ running
    BUILT = "built"
    STUB = "stub"  # a reference to an upstream task inside a worker process
    WORKER = "worker"  # the task being run, inside a worker process


_NO_RESULT: Any = object()


class TaskState:
    """taskproc's bookkeeping for one task object (kept in ``task.__dict__['_tp']``)."""

    __slots__ = (
        "task_id",
        "args_json",
        "store_root",
        "graph",
        "status",
        "init_args",
        "upstream",
        "stamp",
        "memo",
        "retain",
    )

    def __init__(
        self, task_id: str, args_json: str, store_root: str, graph: Graph | None, status: Status
    ) -> None:
        self.task_id = task_id
        self.args_json = args_json
        self.store_root = store_root
        self.graph = graph
        self.status = status
        self.init_args: tuple[tuple[Any, ...], dict[str, Any]] | None = None
        self.upstream: tuple[Task, ...] = ()
        self.stamp: str | None = None
        self.memo: Any = _NO_RESULT
        self.retain = False


@dataclass(frozen=True, slots=True)
class TaskConfig:
    """The class options of a task, as validated when the class was defined."""

    task_name: str
    labels: tuple[str, ...]
    compress_level: int
    version: str | int | None
    retries: int
    retry_delay: float
    timeout: float | None


@dataclass(frozen=True, slots=True)
class TaskWorker:
    """Where one task instance lives in the cache, and what it is."""

    task: str
    task_name: str
    task_id: str
    task_dir: Path
    result_path: Path
    labels: tuple[str, ...]
    upstream: tuple[str, ...]


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


class TaskMeta(type):
    """Routes ``TaskClass(...)`` through the current graph (see the module docstring)."""

    def __setattr__(cls, name: str, value: Any) -> None:
        # Class options set after the class body are checked like those in it.
        if name in CLASS_OPTIONS and "_tp_labels" in cls.__dict__:
            old = cls.__dict__.get(name, _NO_RESULT)
            type.__setattr__(cls, name, value)
            try:
                _validate_class(cast("type[Task]", cls))
            except TaskDefinitionError:
                if old is _NO_RESULT:
                    type.__delattr__(cls, name)
                else:
                    type.__setattr__(cls, name, old)
                raise
            return
        type.__setattr__(cls, name, value)

    def __call__(cls, *args, **kwargs):  # type: ignore[no-untyped-def]  # keeps __init__'s types
        graph = current_graph()
        if graph is None:
            name = getattr(cls, "task_name", cls.__qualname__)
            raise GraphError(
                f"{name}: tasks must be built inside 'with Graph(cache_dir):' "
                "(or a function decorated with @Graph(cache_dir))"
            )
        return build(graph, cast("type[Task]", cls), args, kwargs)


def build(graph: Graph, cls: type[Task], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Task:
    """The task `cls(*args, **kwargs)` of `graph`: the registered one, or a new one."""
    names = cls._tp_positional
    if names is not None and not kwargs and len(args) == len(names):
        # The common call, every parameter given by position: skip inspect's binding.
        arguments: dict[str, Any] = dict(zip(names, args, strict=True))
        init_args: tuple[tuple[Any, ...], dict[str, Any]] = (args, {})
    else:
        try:
            bound = cls._tp_signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise ArgumentError(
                f"{cls.task_name}: {exc}; {cls.task_name} takes {cls._tp_signature}"
            ) from None
        bound.apply_defaults()
        arguments, init_args = bound.arguments, (bound.args, bound.kwargs)
    args_json = canonical_arguments(cls.task_name, arguments, future_ref)
    task_id = digest(args_json)
    key = f"{cls.task_name}/{task_id}"
    task = graph.tasks.get(key)
    if task is not None:
        if type(task) is not cls:
            raise TaskDefinitionError(
                f"{cls.task_name}: two different classes share this task name; "
                "rename one or set a distinct task_name"
            )
        return task
    task = cls.__new__(cls)
    state = TaskState(task_id, args_json, str(graph.cache_dir), graph, Status.PENDING)
    state.init_args = init_args
    task.__dict__["_tp"] = state
    graph.tasks[key] = task
    graph.pending.append(task)
    if not graph.building:
        _drain(graph)
    return task


def _drain(graph: Graph) -> None:
    """Run the deferred __init__ of every pending task; undo the registrations on failure.

    The cyclic garbage collector is paused meanwhile: building makes many objects that all
    live on, and each full collection walked all of them again (six times while building
    100,000 tasks, a fifth of the building time). Garbage made meanwhile is collected after.
    """
    graph.building = True
    first_new = len(graph.tasks) - len(graph.pending)
    collecting = gc.isenabled()
    if collecting:
        gc.disable()
    try:
        while graph.pending:
            initialize(graph.pending.popleft())
    except BaseException:
        for key in list(graph.tasks)[first_new:]:
            del graph.tasks[key]
        graph.pending.clear()
        raise
    finally:
        graph.building = False
        if collecting:
            gc.enable()


def initialize(task: Task) -> None:
    """Run the deferred ``__init__`` of `task` if it has not run yet."""
    state = task._tp
    if state.status is not Status.PENDING:
        return
    state.status = Status.BUILDING
    args, kwargs = state.init_args or ((), {})
    state.init_args = None
    try:
        type(task).__init__(task, *args, **kwargs)
    except Exception as exc:
        if hasattr(exc, "add_note"):
            exc.add_note(f"while building {task!r}")
        raise
    attrs = task.__dict__
    if not _RESERVED.isdisjoint(attrs):
        clash = BUILTINS.intersection(attrs) or CLASS_OPTIONS.intersection(attrs)
        name = sorted(clash)[0]
        fix = "set it in the class body" if name in CLASS_OPTIONS else "rename the attribute"
        raise TaskDefinitionError(
            f"{task!r}: __init__ assigns the taskproc built-in {name!r}; {fix}"
        )
    state.upstream = tuple(upstream_tasks(v for k, v in attrs.items() if k != "_tp"))
    state.status = Status.BUILT


def _labels_of(cls: type[Task]) -> tuple[str, ...]:
    raw = cls.__dict__.get("task_label", getattr(cls, "task_label", ()))
    if isinstance(raw, str):
        extra: tuple[str, ...] = (raw,)
    elif isinstance(raw, Sequence) and all(isinstance(x, str) for x in raw):
        extra = tuple(raw)
    else:
        raise TaskDefinitionError(
            f"{cls.task_name}: task_label must be a str or a sequence of str, "
            f"got {type(raw).__name__} ({raw!r})"
        )
    return (cls.task_name, *dict.fromkeys(x for x in extra if x != cls.task_name), "*")


def _validate_class(cls: type[Task]) -> None:
    """Check the class options and derive the labels (at definition and on reassignment)."""
    name = cls.task_name
    if not isinstance(name, str) or not is_valid_task_name(name):
        raise TaskDefinitionError(
            f"{qualified_name(cls)}: task_name must be dotted identifiers "
            f"(letters, digits, '_' and '.'), got {name!r}"
        )
    _check_options(cls)
    type.__setattr__(cls, "_tp_labels", _labels_of(cls))


def _check_options(cls: type[Task]) -> None:
    name = cls.task_name
    level = cls.task_compress_level
    if type(level) is not int or not 0 <= level <= 9:
        raise TaskDefinitionError(
            f"{name}: task_compress_level must be an int from 0 to 9, got {level!r}"
        )
    if type(cls.task_retries) is not int or cls.task_retries < 0:
        raise TaskDefinitionError(
            f"{name}: task_retries must be an int >= 0, got {cls.task_retries!r}"
        )
    if not isinstance(cls.task_retry_delay, (int, float)) or cls.task_retry_delay < 0:
        raise TaskDefinitionError(
            f"{name}: task_retry_delay must be a number >= 0, got {cls.task_retry_delay!r}"
        )
    timeout = cls.task_timeout
    if timeout is not None and (not isinstance(timeout, (int, float)) or timeout <= 0):
        raise TaskDefinitionError(
            f"{name}: task_timeout must be None or a number > 0, got {timeout!r}"
        )
    if cls.task_version is not None and type(cls.task_version) not in (str, int):
        raise TaskDefinitionError(
            f"{name}: task_version must be a str or an int, got {cls.task_version!r}"
        )


class Task(Future[Any], metaclass=TaskMeta):
    """Base class of tasks. Subclasses declare upstream tasks as attributes in ``__init__``
    and compute their result in ``run_task``.

    Class options: ``task_label`` (str or sequence of str), ``task_compress_level`` (0-9,
    default 9), ``task_version`` (change it to invalidate cached results), ``task_retries``,
    ``task_retry_delay`` (seconds) and ``task_timeout`` (seconds).
    """

    task_name: ClassVar[str] = "taskproc.Task"
    task_label: ClassVar[str | Sequence[str]] = ()
    task_compress_level: ClassVar[int] = 9
    task_version: ClassVar[str | int | None] = None
    task_retries: ClassVar[int] = 0
    task_retry_delay: ClassVar[float] = 1.0
    task_timeout: ClassVar[float | None] = None

    _tp: TaskState
    _tp_signature: ClassVar[inspect.Signature] = inspect.Signature()
    _tp_positional: ClassVar[tuple[str, ...] | None] = ()
    _tp_labels: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "task_name" not in cls.__dict__:
            type.__setattr__(cls, "task_name", qualified_name(cls))
        clash = BUILTINS.intersection(cls.__dict__)
        if clash:
            raise TaskDefinitionError(
                f"{cls.task_name}: {sorted(clash)[0]!r} is a taskproc built-in and cannot be "
                "overridden; rename it"
            )
        _validate_class(cls)
        sig = inspect.signature(cls.__init__)
        params = list(sig.parameters.values())[1:]
        cls._tp_signature = sig.replace(parameters=params)
        simple = all(p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD for p in params)
        cls._tp_positional = tuple(p.name for p in params) if simple else None

    def __class_getitem__(cls, item: Any) -> Any:
        # taskproc 0.25 code may write `class Foo(Task[int])`: the result type now comes from
        # run_task's annotation, so the parameter is accepted and ignored.
        return cls

    def __init__(self) -> None:
        pass

    def run_task(self) -> Any:
        """Compute this task's result. Override it."""
        raise NotImplementedError(f"{self!r}: define run_task()")

    # -- identity -----------------------------------------------------------------------

    @_BuiltinProperty
    def task_id(self) -> str:
        """The stable id of this task instance (a digest of its canonical arguments)."""
        return self._tp.task_id

    def _tp_ref(self) -> JSON:
        return {"__task__": f"{self.task_name}/{self._tp.task_id}"}

    def _tp_tasks(self) -> Iterator[Task]:
        yield self

    def __repr__(self) -> str:
        state = self.__dict__.get("_tp")
        if state is None:
            return f"<{self.task_name} (not built)>"
        if not state.args_json:
            return f"{self.task_name}[{state.task_id[:8]}]"
        return describe(self.task_name, state.args_json)

    def __getattr__(self, name: str) -> Any:
        state = self.__dict__.get("_tp")
        if state is not None and not name.startswith("__"):
            if state.status is Status.PENDING:
                initialize(self)
                return getattr(self, name)
            if state.status is Status.BUILDING:
                raise AttributeError(
                    f"{self!r} has no attribute {name!r} yet: it is still being built "
                    "(do two tasks build each other?)"
                )
            if state.status is Status.STUB:
                raise AttributeError(
                    f"{self!r}: attribute {name!r} of an upstream task is not available in a "
                    "worker process, where upstream tasks are references; use get_result() or "
                    f"task_directory, or pass {name!r} to the downstream task as an argument"
                )
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    # -- the cache --------------------------------------------------------------------

    def _tp_dir(self) -> str:
        state = self._tp
        return os.path.join(state.store_root, self.task_name, "results", state.task_id)

    @_BuiltinProperty
    def task_directory(self) -> Path:
        """A folder for this task's own files (``<task folder>/data``), made on first use."""
        path = os.path.join(self._tp_dir(), "data")
        try:
            make_dirs(path)
        except OSError as exc:
            raise CacheError(f"{self!r}: task_directory: {folder_problem(exc)}") from None
        return Path(path)

    def get_result(self: HasRunTask[R]) -> R:
        """This task's result: in memory if it ran here, else loaded from the cache."""
        task = cast(Task, self)
        state = task._tp
        memo = state.memo
        if memo is not _NO_RESULT:
            return cast(R, memo)
        from taskproc.store._resultfile import load_result

        path = os.path.join(task._tp_dir(), "result.pkl.gz")
        try:
            value = load_result(path, task=repr(task))
        except FileNotFoundError:
            raise ResultMissingError(
                f"{task!r} has no result in the cache yet; run it (or a task downstream of it) "
                "with run_graph() first"
            ) from None
        if state.retain:
            state.memo = value
        return cast(R, value)

    @overload
    def __getitem__(self: HasRunTask[Sequence[T]], key: int) -> Future[T]: ...
    @overload
    def __getitem__(self: HasRunTask[Mapping[K, V]], key: K) -> Future[V]: ...
    def __getitem__(self, key: Any) -> Any:
        return Item(self, key)

    def clear_task(self) -> None:
        """Delete this task's cached result and folder."""
        from taskproc.store._local import Store

        Store(self._tp.store_root).clear_task(self.task_name, self._tp.task_id)

    @classmethod
    def clear_all_tasks(cls) -> None:
        """Delete the cached results of every instance of this task (in the current graph)."""
        from taskproc.store._local import Store

        graph = current_graph()
        if graph is None:
            raise GraphError(
                f"{cls.task_name}.clear_all_tasks() needs the cache folder: call it inside "
                "'with Graph(cache_dir):'"
            )
        Store(str(graph.cache_dir)).clear_task_name(cls.task_name)

    # -- introspection -------------------------------------------------------------------

    @classmethod
    def get_task_config(cls) -> TaskConfig:
        """The validated class options of this task."""
        return TaskConfig(
            task_name=cls.task_name,
            labels=cls._tp_labels,
            compress_level=cls.task_compress_level,
            version=cls.task_version,
            retries=cls.task_retries,
            retry_delay=float(cls.task_retry_delay),
            timeout=None if cls.task_timeout is None else float(cls.task_timeout),
        )

    @_BuiltinProperty
    def task_config(self) -> TaskConfig:
        """The class options of this task instance."""
        return type(self).get_task_config()

    @_BuiltinProperty
    def task_worker(self) -> TaskWorker:
        """Where this task instance lives in the cache."""
        task_dir = Path(self._tp_dir())
        return TaskWorker(
            task=repr(self),
            task_name=self.task_name,
            task_id=self._tp.task_id,
            task_dir=task_dir,
            result_path=task_dir / "result.pkl.gz",
            labels=self._tp_labels,
            upstream=tuple(f"{t.task_name}/{t._tp.task_id}" for t in self._tp_upstream()),
        )

    def _tp_upstream(self) -> tuple[Task, ...]:
        initialize(self)
        return self._tp.upstream

    def get_workers(self) -> dict[str, TaskWorker]:
        """`task_worker` of this task and of every task upstream of it, by key."""
        out: dict[str, TaskWorker] = {}
        stack: list[Task] = [self]
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

    # -- running -------------------------------------------------------------------

    def run_graph(
        self: HasRunTask[R],
        *,
        executor: Executor | None = None,
        rate_limits: Mapping[str, int] | None = None,
        prefixes: Mapping[str, str] | None = None,
        error_handling: ErrorHandling = "eager",
        show_progress: bool = False,
        detect_source_change: bool = False,
        force_entrypoint: bool = False,
        max_workers: int | None = None,
        log_level: int | str | None = None,
        hooks: Sequence[RunHooks] = (),
        verbose_stats: bool = False,
    ) -> tuple[R, dict[str, Any]]:
        """Run this task after every stale upstream task; return ``(result, stats)``.

        `executor` defaults to a process pool of `max_workers` (default: one per core).
        `log_level` sets the logging level in worker processes (e.g. ``'INFO'``); `hooks`
        receive progress events (see `RunHooks`); `verbose_stats` (from taskproc 0.25) prints
        a summary line at the end.
        `rate_limits` caps how many tasks carrying a label run at once; `prefixes` runs the
        tasks carrying a label through a command (``'srun -p gpu'``). `error_handling`:
        ``'immediate'`` stops at the first failure, ``'eager'`` starts nothing new after one,
        ``'lazy'`` runs everything that does not depend on a failed task. Failures are raised
        as an ``ExceptionGroup`` of `FailedTaskError`. ``stats['stats']`` maps each task name
        to the number of its tasks executed in this run.
        """
        from taskproc.run._driver import RunOptions, run

        if isinstance(log_level, str):
            level = logging.getLevelName(log_level.upper())
            if not isinstance(level, int):
                raise ConfigError(
                    f"log_level must be a logging level such as 'INFO', got {log_level!r}"
                )
            log_level = level
        options = RunOptions.make(
            executor=executor,
            rate_limits=rate_limits,
            prefixes=prefixes,
            error_handling=error_handling,
            show_progress=show_progress or verbose_stats,
            detect_source_change=detect_source_change,
            force_entrypoint=force_entrypoint,
            max_workers=max_workers,
            log_level=log_level,
            hooks=tuple(hooks),
        )
        result, stats = run(cast(Task, self), options)
        return cast(R, result), stats

    @classmethod
    def cli(
        cls, args: Sequence[str] | None = None, defaults: DefaultCliArguments | None = None
    ) -> None:
        """Run this task from the command line (see ``taskproc --help``)."""
        from taskproc.cli._main import run_task_cli

        run_task_cli(cls, args, defaults)

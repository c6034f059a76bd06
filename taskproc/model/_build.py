"""Building tasks: identity first, then the deferred ``__init__``.

Building a task (``Choose(6, 3)``) computes its identity from its class and arguments before
anything else. If the graph already holds a task with that identity, that very object is
returned. Otherwise a new object is registered and its ``__init__`` is *deferred*: it runs from
a work queue drained by the outermost construction, so upstream tasks built inside ``__init__``
do not recurse and a chain of 100,000 tasks builds in constant stack depth. Reading a user
attribute of a task whose ``__init__`` has not run yet runs it on the spot (`initialize`), so
user code sees fully built objects.
"""

from __future__ import annotations

import enum
import gc
from typing import TYPE_CHECKING, Any, TypeAlias, cast

from taskproc.errors import ArgumentError, GraphError, TaskDefinitionError
from taskproc.model._canonical import canonical_arguments, digest, not_unicode
from taskproc.model._future import NO_TASKS, future_ref, upstream_tasks
from taskproc.model._graph import Graph, current_graph
from taskproc.model._options import BUILTINS, CLASS_OPTIONS, RESERVED, validate_class
from taskproc.store import Store

if TYPE_CHECKING:
    import inspect

    from taskproc.model._task import TaskBase


class BuildStatus(enum.Enum):
    PENDING = "pending"  # registered, __init__ not run yet
    BUILDING = "building"  # __init__ running
    BUILT = "built"
    STUB = "stub"  # a reference to an upstream task inside a worker process
    WORKER = "worker"  # the task being run, inside a worker process


NO_RESULT: Any = object()


class TaskInternals:
    """taskproc's bookkeeping for one task object (kept in ``task.__dict__['_tp']``): its
    identity and how it was built. What a run learns of it is in the run's `Ledger`."""

    __slots__ = (
        "task_id",
        "args_json",
        "store",
        "graph",
        "status",
        "init_args",
        "upstream",
        "tolerated",
    )

    def __init__(
        self, task_id: str, args_json: str, store: Store, graph: Graph | None, status: BuildStatus
    ) -> None:
        self.task_id = task_id
        self.args_json = args_json
        self.store = store
        self.graph = graph
        self.status = status
        self.init_args: tuple[tuple[Any, ...], dict[str, Any]] | None = None
        self.upstream: tuple[TaskBase, ...] = ()
        # Upstream tasks whose failure this task tolerates (`allow_failed`): with 'lazy' it
        # runs even if they fail, and gets their failure as the value.
        self.tolerated: frozenset[TaskBase] = NO_TASKS


class TaskMeta(type):
    """Routes ``TaskClass(...)`` through the current graph (see the module docstring)."""

    def __setattr__(cls, name: str, value: Any) -> None:
        # Class options set after the class body are checked like those in it.
        if name in CLASS_OPTIONS and "_tp_labels" in cls.__dict__:
            old = cls.__dict__.get(name, NO_RESULT)
            type.__setattr__(cls, name, value)
            try:
                validate_class(cast("type[TaskBase]", cls))
            except TaskDefinitionError:
                if old is NO_RESULT:
                    type.__delattr__(cls, name)
                else:
                    type.__setattr__(cls, name, old)
                raise
            return
        type.__setattr__(cls, name, value)

    @property
    def _tp_signature(cls) -> inspect.Signature:
        """The signature tasks of this class are built with: its ``__init__``'s, less ``self``."""
        return call_signature(cast("type[TaskBase]", cls))[0]

    def __call__(cls, *args, **kwargs):  # type: ignore[no-untyped-def]  # keeps __init__'s types
        graph = current_graph()
        if graph is None:
            name = getattr(cls, "task_name", cls.__qualname__)
            raise GraphError(
                f"{name}: tasks must be built inside 'with Graph(cache_dir):' "
                "(or a function decorated with @Graph(cache_dir))"
            )
        return build(graph, cast("type[TaskBase]", cls), args, kwargs)


# The signature tasks of a class are built with, and the names of its parameters if every one
# can be given by position (`build`'s fast path), else None.
Call: TypeAlias = "tuple[inspect.Signature, tuple[str, ...] | None]"


def call_signature(cls: type[TaskBase]) -> Call:
    """How tasks of `cls` are built (`Call`), read when the first one is, and kept on the class
    (`_tp_call`). Not when the class is made: a worker process makes task classes but builds
    no task, and `inspect` costs its start about 8 ms."""
    call = cls._tp_call
    if call is None:
        import inspect

        sig = inspect.signature(cls.__init__)
        params = list(sig.parameters.values())[1:]
        simple = all(p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD for p in params)
        names = tuple(p.name for p in params) if simple else None
        call = (sig.replace(parameters=params, return_annotation=sig.empty), names)
        type.__setattr__(cls, "_tp_call", call)
    return call


def build(
    graph: Graph, cls: type[TaskBase], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> TaskBase:
    """The task `cls(*args, **kwargs)` of `graph`: the registered one, or a new one."""
    sig, names = cls._tp_call or call_signature(cls)
    if names is not None and not kwargs and len(args) == len(names):
        # The common call, every parameter given by position: skip inspect's binding.
        arguments: dict[str, Any] = dict(zip(names, args, strict=True))
        init_args: tuple[tuple[Any, ...], dict[str, Any]] = (args, {})
    else:
        try:
            bound = sig.bind(*args, **kwargs)
        except TypeError as exc:
            raise ArgumentError.of(cls.task_name, f"{exc}; {cls.task_name} takes {sig}") from None
        bound.apply_defaults()
        arguments, init_args = bound.arguments, (bound.args, bound.kwargs)
    args_json = canonical_arguments(cls.task_name, arguments, future_ref)
    try:
        task_id = digest(args_json)
    except UnicodeEncodeError:
        raise not_unicode(cls.task_name, arguments) from None
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
    state = TaskInternals(task_id, args_json, graph.store, graph, BuildStatus.PENDING)
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


def initialize(task: TaskBase) -> None:
    """Run the deferred ``__init__`` of `task` if it has not run yet."""
    state = task._tp
    if state.status is not BuildStatus.PENDING:
        return
    state.status = BuildStatus.BUILDING
    args, kwargs = state.init_args or ((), {})
    state.init_args = None
    try:
        type(task).__init__(task, *args, **kwargs)
    except Exception as exc:
        if hasattr(exc, "add_note"):
            exc.add_note(f"while building {task!r}")
        raise
    attrs = task.__dict__
    if not RESERVED.isdisjoint(attrs):
        clash = BUILTINS.intersection(attrs) or CLASS_OPTIONS.intersection(attrs)
        name = sorted(clash)[0]
        fix = "set it in the class body" if name in CLASS_OPTIONS else "rename the attribute"
        raise TaskDefinitionError(
            f"{task!r}: __init__ assigns the taskproc built-in {name!r}; {fix}"
        )
    upstream, state.tolerated = upstream_tasks(v for k, v in attrs.items() if k != "_tp")
    state.upstream = tuple(upstream)
    state.status = BuildStatus.BUILT

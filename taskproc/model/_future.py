"""Futures: values a task depends on. A `Task` is a future of its result.

Any attribute of a task that holds a future (directly, or inside a list, tuple, set or dict)
makes the future's tasks upstream of that task. A future wrapped by `allow_failed` (or an
entry of ``FutureList(..., allow_failed=True)``) *tolerates* its tasks' failure: with
``error_handling='lazy'`` the downstream task runs anyway, and the value is then the
`FailedTaskError` of the task that failed (the run records it on the task, `TaskInternals.failure`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Generic, Literal, Protocol, TypeVar, overload

from taskproc.errors import FailedTaskError
from taskproc.model._canonical import JSON, Unsupported, canonicalize, dumps
from taskproc.model._ledger import active_ledger

if TYPE_CHECKING:
    from taskproc.model._task import TaskBase

T = TypeVar("T")
K = TypeVar("K")
V = TypeVar("V")
R = TypeVar("R")
T_co = TypeVar("T_co", covariant=True)


class HasRunTask(Protocol[T_co]):
    """Anything with a `run_task` method; lets mypy read a task's result type from it."""

    def run_task(self) -> T_co: ...


def future_ref(value: object) -> JSON | None:
    """The canonical reference of a future, or None if `value` is not one."""
    if isinstance(value, Future):
        return value._tp_ref()
    return None


class Future(Generic[T_co]):
    """A value that becomes available when its upstream tasks have run."""

    __slots__ = ()

    def get_result(self) -> T_co:
        """The value; for a task, its result (loaded from the cache if needed)."""
        raise NotImplementedError

    def _tp_ref(self) -> JSON:
        raise NotImplementedError

    def _tp_tasks(self) -> Iterator[TaskBase]:
        """The tasks this future needs."""
        raise NotImplementedError

    def _tp_edges(self) -> Iterator[tuple[TaskBase, bool]]:
        """The tasks this future needs, each with whether its failure is tolerated."""
        for task in self._tp_tasks():
            yield task, False

    @overload
    def __getitem__(self: Future[Sequence[T]], key: int) -> Future[T]: ...
    @overload
    def __getitem__(self: Future[Mapping[K, V]], key: K) -> Future[V]: ...
    def __getitem__(self, key: Any) -> Any:
        """A future of one element of this future's value, e.g. ``task['train'][0]``."""
        return Item(self, key)


class Const(Future[T]):
    """A future whose value is already known."""

    __slots__ = ("value",)

    def __init__(self, value: T) -> None:
        self.value = value

    def get_result(self) -> T:
        return self.value

    def _tp_ref(self) -> JSON:
        return {"__const__": canonicalize(self.value, "Const(...)", future_ref)}

    def _tp_tasks(self) -> Iterator[TaskBase]:
        return iter(())

    def __repr__(self) -> str:
        return f"Const({self.value!r})"


def _check_future(value: object, where: str) -> Future[Any]:
    if not isinstance(value, Future):
        raise TypeError(
            f"{where} must be a future (a Task, Const, ...), got {type(value).__name__}"
        )
    return value


class FutureList(Future[list[T]]):
    """A future of the list of its items' values. With ``allow_failed=True`` each item
    tolerates failure (see `allow_failed`): a failed item's value is its `FailedTaskError`."""

    __slots__ = ("allow_failed", "items")

    @overload
    def __init__(
        self: FutureList[R | FailedTaskError],
        items: Iterable[HasRunTask[R]],
        *,
        allow_failed: Literal[True],
    ) -> None: ...
    @overload
    def __init__(
        self: FutureList[R | FailedTaskError],
        items: Iterable[Future[R]],
        *,
        allow_failed: Literal[True],
    ) -> None: ...
    @overload
    def __init__(
        self, items: Iterable[HasRunTask[T]], *, allow_failed: Literal[False] = False
    ) -> None: ...
    @overload
    def __init__(
        self, items: Iterable[Future[T]], *, allow_failed: Literal[False] = False
    ) -> None: ...
    def __init__(self, items: Iterable[Any], *, allow_failed: bool = False) -> None:
        self.allow_failed = _check_flag(allow_failed, "FutureList")
        futures = (_check_future(v, f"FutureList item [{i}]") for i, v in enumerate(items))
        self.items: tuple[Future[T], ...] = tuple(
            Tolerant(f) if allow_failed else f for f in futures
        )

    def get_result(self) -> list[T]:
        return [item.get_result() for item in self.items]

    def _tp_ref(self) -> JSON:
        return {"__futurelist__": [item._tp_ref() for item in self.items]}

    def _tp_tasks(self) -> Iterator[TaskBase]:
        for item in self.items:
            yield from item._tp_tasks()

    def _tp_edges(self) -> Iterator[tuple[TaskBase, bool]]:
        for item in self.items:
            yield from item._tp_edges()

    def __len__(self) -> int:
        return len(self.items)

    def __repr__(self) -> str:
        tolerant = ", allow_failed=True" if self.allow_failed else ""
        return f"FutureList(<{len(self.items)} futures>{tolerant})"


class FutureDict(Future[dict[K, T]]):
    """A future of the dict of its items' values. With ``allow_failed=True`` each item
    tolerates failure (see `allow_failed`): a failed item's value is its `FailedTaskError`."""

    __slots__ = ("allow_failed", "items")

    @overload
    def __init__(
        self: FutureDict[K, R | FailedTaskError],
        items: Mapping[K, HasRunTask[R]],
        *,
        allow_failed: Literal[True],
    ) -> None: ...
    @overload
    def __init__(
        self: FutureDict[K, R | FailedTaskError],
        items: Mapping[K, Future[R]],
        *,
        allow_failed: Literal[True],
    ) -> None: ...
    @overload
    def __init__(
        self, items: Mapping[K, HasRunTask[T]], *, allow_failed: Literal[False] = False
    ) -> None: ...
    @overload
    def __init__(
        self, items: Mapping[K, Future[T]], *, allow_failed: Literal[False] = False
    ) -> None: ...
    def __init__(self, items: Mapping[K, Any], *, allow_failed: bool = False) -> None:
        self.allow_failed = _check_flag(allow_failed, "FutureDict")
        self.items: dict[K, Future[T]] = {}
        for k, v in items.items():
            f = _check_future(v, f"FutureDict item [{k!r}]")
            self.items[k] = Tolerant(f) if allow_failed else f

    def get_result(self) -> dict[K, T]:
        return {k: v.get_result() for k, v in self.items.items()}

    def _tp_ref(self) -> JSON:
        pairs = [
            [canonicalize(k, "FutureDict key", future_ref), v._tp_ref()]
            for k, v in self.items.items()
        ]
        pairs.sort(key=lambda p: dumps(p[0]))
        return {"__futuredict__": pairs}

    def _tp_tasks(self) -> Iterator[TaskBase]:
        for item in self.items.values():
            yield from item._tp_tasks()

    def _tp_edges(self) -> Iterator[tuple[TaskBase, bool]]:
        for item in self.items.values():
            yield from item._tp_edges()

    def __len__(self) -> int:
        return len(self.items)

    def __repr__(self) -> str:
        tolerant = ", allow_failed=True" if self.allow_failed else ""
        return f"FutureDict(<{len(self.items)} futures>{tolerant})"


def _check_flag(value: object, where: str) -> bool:
    if type(value) is not bool:
        raise TypeError(f"{where}: allow_failed must be True or False, got {value!r}")
    return value


class Tolerant(Future[Any]):
    """A future that tolerates the failure of its tasks: made by `allow_failed`."""

    __slots__ = ("base",)

    def __init__(self, base: Future[Any]) -> None:
        self.base = base

    def failure(self) -> FailedTaskError | None:
        """The failure of the first of its tasks that failed in the run executing the caller,
        if one did (outside a run: None)."""
        ledger = active_ledger()
        if ledger is None or not ledger.failures:
            return None
        for task in self.base._tp_tasks():
            failure = ledger.failures.get(task)
            if failure is not None:
                return failure
        return None

    def get_result(self) -> Any:
        failure = self.failure()
        return failure if failure is not None else self.base.get_result()

    def _tp_ref(self) -> JSON:
        return {"__allow_failed__": self.base._tp_ref()}

    def _tp_tasks(self) -> Iterator[TaskBase]:
        return self.base._tp_tasks()

    def _tp_edges(self) -> Iterator[tuple[TaskBase, bool]]:
        for task in self.base._tp_tasks():
            yield task, True

    def __repr__(self) -> str:
        return f"allow_failed({self.base!r})"


@overload
def allow_failed(future: HasRunTask[R]) -> Future[R | FailedTaskError]: ...
@overload
def allow_failed(future: Future[R]) -> Future[R | FailedTaskError]: ...
def allow_failed(future: Any) -> Any:
    """`future`, tolerating the failure of its tasks: with ``error_handling='lazy'`` a task
    holding it runs even if they fail, and its value is then the `FailedTaskError` of the
    first of them that failed (or was not run because a task upstream of it failed)."""
    return Tolerant(_check_future(future, "allow_failed(future)"))


class Item(Future[Any]):
    """One element of another future's value: ``future[key]``."""

    __slots__ = ("base", "key")

    def __init__(self, base: Future[Any], key: object) -> None:
        self.base = base
        self.key = key

    def entry(self) -> Future[Any] | None:
        """The future of the one entry this indexes, when that is known while building: an
        item of a `FutureList` or `FutureDict` (so it depends on that entry alone); else
        None (a task's result, known only once it has run)."""
        base = self.base
        if isinstance(base, Item):
            base = base.entry() or base
        if isinstance(base, FutureList) and type(self.key) is int:
            if -len(base.items) <= self.key < len(base.items):
                return base.items[self.key]
        elif isinstance(base, FutureDict):
            try:
                return base.items.get(self.key)
            except TypeError:  # an unhashable key: no such entry
                return None
        return None

    def get_result(self) -> Any:
        entry = self.entry()
        if entry is not None:
            return entry.get_result()
        value = self.base.get_result()
        if isinstance(value, FailedTaskError):  # an item of a tolerated failure: the failure
            return value
        return value[self.key]

    def _tp_ref(self) -> JSON:
        try:
            key = canonicalize(self.key, "index", future_ref)
        except Unsupported:
            raise TypeError(f"cannot index a future with {type(self.key).__name__}") from None
        return {"__item__": [self.base._tp_ref(), key]}

    def _tp_tasks(self) -> Iterator[TaskBase]:
        entry = self.entry()
        return (entry or self.base)._tp_tasks()

    def _tp_edges(self) -> Iterator[tuple[TaskBase, bool]]:
        entry = self.entry()
        return (entry or self.base)._tp_edges()

    def __repr__(self) -> str:
        return f"{self.base!r}[{self.key!r}]"


_LEAVES = frozenset({int, float, str, bytes, bool, type(None)})


NO_TASKS: frozenset[Any] = frozenset()


def upstream_tasks(values: Iterable[object]) -> tuple[list[TaskBase], frozenset[TaskBase]]:
    """The distinct tasks that futures among `values` need, in first-seen order, and those of
    them whose failure is tolerated (by every future that needs them).

    Looks inside lists, tuples, sets and dicts (values), as a user would expect of an attribute
    holding several futures; iterative, so deep nesting cannot overflow the stack.
    """
    stack = list(values)
    if all(type(v) in _LEAVES for v in stack):  # plain arguments only: the common leaf task
        return [], NO_TASKS
    seen: dict[int, TaskBase] = {}
    strict: set[int] = set()  # kept once a tolerant edge is seen: the common case has none
    tolerated: set[int] | None = None
    stack.reverse()
    while stack:
        v = stack.pop()
        if isinstance(v, Future):
            for t, tolerant in v._tp_edges():
                if tolerant:
                    if tolerated is None:
                        tolerated, strict = set(), set(seen)  # every edge so far was strict
                    tolerated.add(id(t))
                elif tolerated is not None:
                    strict.add(id(t))
                seen.setdefault(id(t), t)
        elif type(v) in (list, tuple) and isinstance(v, (list, tuple)):
            stack.extend(reversed(v))
        elif type(v) is dict and isinstance(v, dict):
            stack.extend(reversed(list(v.values())))
        elif type(v) in (set, frozenset) and isinstance(v, (set, frozenset)):
            stack.extend(v)
    tasks = list(seen.values())
    if not tolerated:
        return tasks, NO_TASKS
    return tasks, frozenset(seen[i] for i in tolerated - strict)


def upstream_links(attributes: Mapping[str, object]) -> list[tuple[str, TaskBase]]:
    """(attribute path, task) for every task that futures among a task's `attributes` need,
    e.g. ``('inputs.0', <Leaf>)`` for the first item of the FutureList in ``self.inputs``."""
    out: list[tuple[str, TaskBase]] = []
    for attr, value in attributes.items():
        if attr == "_tp":
            continue
        stack: list[tuple[object, tuple[str, ...]]] = [(value, (attr,))]
        while stack:
            v, p = stack.pop()
            if isinstance(v, Item):
                entry = v.entry()
                stack.append((v.base, p) if entry is None else (entry, (*p, str(v.key))))
            elif isinstance(v, FutureList):
                stack.extend((x, (*p, str(i))) for i, x in enumerate(v.items))
            elif isinstance(v, FutureDict):
                stack.extend((x, (*p, str(k))) for k, x in v.items.items())
            elif isinstance(v, Tolerant):
                stack.append((v.base, p))
            elif isinstance(v, Const):
                continue
            elif isinstance(v, Future):
                out.extend((".".join(p), t) for t in v._tp_tasks())  # a task
            elif type(v) in (list, tuple) and isinstance(v, (list, tuple)):
                stack.extend((x, (*p, str(i))) for i, x in enumerate(v))
            elif type(v) is dict and isinstance(v, dict):
                stack.extend((x, (*p, str(k))) for k, x in v.items())
    return out

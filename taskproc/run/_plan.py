"""The graph reachable from a root task, and which of its tasks must run and why.

Both are single passes over the tasks in topological order, without recursion, so their cost
grows linearly with the graph and deep chains work.
"""

from __future__ import annotations

import enum
import hashlib
import os
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

from taskproc.errors import CacheError, CorruptResultError, CycleError
from taskproc.store._resultfile import Record, read_record
from taskproc.model._task import Task, initialize


class Reason(enum.Enum):
    """Why a task must run."""

    MISSING = "no cached result"
    UNREADABLE = "the cached result is unreadable"
    VERSION = "task_version changed"
    CODE = "its source code changed"
    UPSTREAM = "an upstream task reruns"
    INPUTS = "an upstream result changed since it ran"
    FORCED = "forced (entry point)"


def collect(root: Task) -> list[Task]:
    """Every task `root` needs, upstream first. Raises CycleError naming the cycle.

    A depth-first post-order: one visit per task and edge. (graphlib's static order costs
    about five times more, a fifth of a fully cached rerun.)
    """
    order: list[Task] = []
    placed: set[Task] = set()
    on_path: set[Task] = {root}
    initialize(root)
    path: list[tuple[Task, Iterator[Task]]] = [(root, iter(root._tp.upstream))]
    while path:
        task, ups = path[-1]
        for up in ups:
            if up in placed:
                continue
            if up in on_path:
                raise _cycle_error([t for t, _ in path], up)
            initialize(up)
            on_path.add(up)
            path.append((up, iter(up._tp.upstream)))
            break
        else:
            path.pop()
            on_path.discard(task)
            placed.add(task)
            order.append(task)
    return order


def _cycle_error(path: list[Task], back_to: Task) -> CycleError:
    cycle = path[path.index(back_to) :] + [back_to]
    names = tuple(repr(t) for t in cycle)
    return CycleError(
        f"upstream tasks form a cycle: {' -> '.join(names)}; a task cannot depend on itself",
        names,
    )


_NO_DEPS = hashlib.blake2b(digest_size=12).hexdigest()


def stamps_digest(pairs: Iterable[tuple[str, str]]) -> str:
    """The digest of (task key, stamp) pairs that a result's record keeps as `deps`."""
    items = sorted([f"{key}={stamp}\n" for key, stamp in pairs])
    return hashlib.blake2b("".join(items).encode(), digest_size=12).hexdigest()


def deps_digest(upstream: Sequence[Task]) -> str:
    """The digest of the current stamps of the given tasks (their results)."""
    if not upstream:
        return _NO_DEPS
    return stamps_digest((f"{u.task_name}/{u._tp.task_id}", str(u._tp.stamp)) for u in upstream)


def folder_of(task: Task) -> str:
    """The task's folder in its cache."""
    state = task._tp
    return f"{state.store_root}/{task.task_name}/results/{state.task_id}"


def result_path(task: Task) -> str:
    return f"{folder_of(task)}/result.pkl.gz"


@dataclass(frozen=True, slots=True)
class Expectation:
    """What a result must have been computed from to be fresh."""

    code: str
    version: str | int | None
    deps: str
    check_code: bool

    def accepts(self, record: Record) -> Reason | None:
        """None if `record` is fresh, else why not."""
        if record.version != self.version:
            return Reason.VERSION
        if self.check_code and record.code != self.code:
            return Reason.CODE
        if record.deps != self.deps:
            return Reason.INPUTS
        return None


def why_stale(
    task: Task, record: Record, code: Callable[[type], str], check_code: bool
) -> Reason | None:
    """`expectation(...).accepts(record)`, fingerprinting the code only if it counts."""
    cls = type(task)
    if record.version != cls.task_version:
        return Reason.VERSION
    if check_code and record.code != code(cls):
        return Reason.CODE
    if record.deps != deps_digest(task._tp.upstream):
        return Reason.INPUTS
    return None


def expectation(task: Task, code: Callable[[type], str], check_code: bool) -> Expectation:
    cls = type(task)
    return Expectation(code(cls), cls.task_version, deps_digest(task._tp.upstream), check_code)


def read_checked(task: Task, problems: list[str] | None = None) -> Record | None:
    """The task's record, or None if missing. A garbled one counts as missing; it is noted in
    `problems` (for one warning per run, not one per task)."""
    try:
        return read_record(result_path(task))
    except CorruptResultError as exc:
        if problems is not None:
            problems.append(f"{task!r}: {exc}")
        return None
    except CacheError as exc:
        raise CacheError(f"{task!r}: {exc}") from None


def warn_unreadable(problems: list[str]) -> None:
    """One warning for all the unreadable results found, naming the first ones."""
    if not problems:
        return
    shown = "; ".join(problems[:3])
    more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
    warnings.warn(
        f"{len(problems)} cached result{'s are' if len(problems) > 1 else ' is'} unreadable "
        f"and will be recomputed: {shown}{more}",
        stacklevel=3,
    )


class _FolderIndex:
    """Which task folders exist, one directory listing per task name: a graph of new tasks
    is planned without probing every task's result file."""

    def __init__(self) -> None:
        self._ids: dict[tuple[str, str], frozenset[str] | None] = {}

    def may_exist(self, task: Task) -> bool:
        state = task._tp
        key = (state.store_root, task.task_name)
        ids = self._ids.get(key, _UNLISTED)
        if ids is _UNLISTED:
            try:
                ids = frozenset(os.listdir(f"{state.store_root}/{task.task_name}/results"))
            except FileNotFoundError:
                ids = frozenset()
            except OSError:
                ids = None  # cannot tell: probe each task
            self._ids[key] = ids
        return ids is None or state.task_id in ids


_UNLISTED: frozenset[str] = frozenset({"<unlisted>"})


def decide(
    order: list[Task],
    root: Task,
    *,
    force_root: bool,
    code: Callable[[type], str],
    check_code: bool,
) -> dict[Task, Reason]:
    """The tasks that must run, with why. Sets the stamp of every fresh task."""
    stale: dict[Task, Reason] = {}
    problems: list[str] = []
    existing = _FolderIndex()
    for task in order:
        state = task._tp
        if any(u in stale for u in state.upstream):
            stale[task] = Reason.UPSTREAM
            continue
        if not existing.may_exist(task):
            stale[task] = Reason.MISSING
            continue
        record = read_checked(task, problems)
        if record is None:
            stale[task] = Reason.MISSING
            continue
        reason = why_stale(task, record, code, check_code)
        if reason is None and force_root and task is root:
            reason = Reason.FORCED
        if reason is not None:
            stale[task] = reason
        else:
            state.stamp = record.stamp
    warn_unreadable(problems)
    return stale

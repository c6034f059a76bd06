"""The graph reachable from a root task, which of its tasks must run and why, and the one rule
that says whether a stored result is fresh.

Both passes go over the tasks in topological order, without recursion, so their cost grows
linearly with the graph and deep chains work.
"""

from __future__ import annotations

import contextlib
import enum
import hashlib
import json
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

from taskproc.errors import CacheError, CorruptResultError, CycleError
from taskproc.model import TaskBase, args_lookup, describe, initialize
from taskproc.store import Record, Store


class Reason(enum.Enum):
    """Why a task must run."""

    MISSING = "no cached result"
    VERSION = "task_version changed"
    CODE = "its source code changed"
    UPSTREAM = "an upstream task reruns"
    INPUTS = "an upstream result changed since it ran"
    RECOVERED = "an upstream task that had failed when it ran has a result now"
    CORRUPT = "its cached result is unreadable"
    FORCED = "forced (entry point)"


@dataclass(frozen=True, slots=True)
class Plan:
    """What `decide` found: the tasks that must run, with why, and per task name the number of
    fresh results computed by other code than the code now running (counted whether or not the
    run checks code; when it does not, they are used as they are and the driver warns)."""

    stale: dict[TaskBase, Reason]
    drifted: dict[str, int]


def stale_reason(
    record: Record, version: str | int | None, deps: str, code: str | None
) -> Reason | None:
    """The freshness rule: None if `record` is a fresh result for a task of this `version`
    whose upstream results have the digest `deps` (and, unless `code` is None, whose code has
    this fingerprint); else why it is not. Every check of freshness comes here."""
    if record.version != version:
        return Reason.VERSION
    if code is not None and record.code != code:
        return Reason.CODE
    if record.deps != deps:
        return Reason.RECOVERED if record.deps.endswith(WITH_FAILED) else Reason.INPUTS
    return None


def collect(root: TaskBase) -> list[TaskBase]:
    """Every task `root` needs, upstream first. Raises CycleError naming the cycle.

    A depth-first post-order: one visit per task and edge. (graphlib's static order costs
    about five times more, a fifth of a fully cached rerun.)
    """
    order: list[TaskBase] = []
    placed: set[TaskBase] = set()
    on_path: set[TaskBase] = {root}
    initialize(root)
    path: list[tuple[TaskBase, Iterator[TaskBase]]] = [(root, iter(root._tp.upstream))]
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


def _cycle_error(path: list[TaskBase], back_to: TaskBase) -> CycleError:
    cycle = path[path.index(back_to) :] + [back_to]
    names = tuple(repr(t) for t in cycle)
    return CycleError(
        f"upstream tasks form a cycle: {' -> '.join(names)}; a task cannot depend on itself",
        names,
    )


_NO_DEPS = hashlib.blake2b(digest_size=12).hexdigest()

# The stamp of an upstream task that failed (stamps are hex), and the end of the `deps` of a
# result computed while some of its tolerated upstream tasks (`allow_failed`) had failed: the
# digest covers which ones, and the mark tells a later run why the result is stale once they
# have results (`Reason.RECOVERED`).
FAILED_STAMP = "failed"
WITH_FAILED = "+failed"


def computed_with_failures(record: Record) -> bool:
    """Whether a result was computed while some of its tolerated upstream tasks had failed."""
    return record.deps.endswith(WITH_FAILED)


def stamps_digest(pairs: Iterable[tuple[str, str | None]]) -> str:
    """The digest of (task key, stamp) pairs that a result's record keeps as `deps`; a stamp
    of None is an upstream task that failed."""
    items = []
    failed = False
    for key, stamp in pairs:
        if stamp is None:
            failed = True
        items.append(f"{key}={FAILED_STAMP if stamp is None else stamp}\n")
    items.sort()
    digest = hashlib.blake2b("".join(items).encode(), digest_size=12).hexdigest()
    return digest + WITH_FAILED if failed else digest


def deps_digest(upstream: Sequence[TaskBase]) -> str:
    """The digest of the current stamps of the given tasks (their results, or their failure
    in this run: only a task that tolerates it runs with a failed upstream task)."""
    if not upstream:
        return _NO_DEPS
    return stamps_digest(
        (f"{u.task_name}/{u._tp.task_id}", None if u._tp.failure is not None else str(u._tp.stamp))
        for u in upstream
    )


def location(task: TaskBase) -> str:
    """The task's location in its store."""
    state = task._tp
    return state.store.locate(task.task_name, state.task_id)


def new_record(task: TaskBase, stamp: str, code: Callable[[type], str]) -> Record:
    """The record of a new result of `task`. Its code counts whether or not this run checks
    it, so that a later run that does can tell."""
    cls = type(task)
    key = f"{task.task_name}/{task._tp.task_id}"
    return Record(stamp, code(cls), cls.task_version, deps_digest(task._tp.upstream), key)


def why_stale(
    task: TaskBase, record: Record, code: Callable[[type], str], check_code: bool
) -> Reason | None:
    """`stale_reason` for `task` as it is now (its code fingerprinted only if it counts)."""
    cls = type(task)
    expected = code(cls) if check_code else None
    return stale_reason(record, cls.task_version, deps_digest(task._tp.upstream), expected)


def read_checked(task: TaskBase, problems: list[str] | None = None) -> Record | None:
    """The task's record, or None if missing. A garbled one counts as missing; it is noted in
    `problems` (for one warning per run, not one per task)."""
    try:
        return task._tp.store.read_record(location(task))
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


def loosely(args_json: str) -> str:
    """Canonical arguments with the distinctions JSON does not make undone: tuples as lists,
    whole floats as ints. Two tasks equal in this form differ only by tuple/list or int/float."""

    def undo(value: object) -> object:
        if isinstance(value, dict):
            if len(value) == 1 and "__tuple__" in value:
                return [undo(v) for v in value["__tuple__"]]
            return {k: undo(v) for k, v in value.items()}
        if isinstance(value, list):
            return [undo(v) for v in value]
        if isinstance(value, float) and value.is_integer():
            return int(value)
        return value

    return json.dumps(undo(json.loads(args_json)), sort_keys=True)


class _NearMisses:
    """Stored tasks whose arguments equal a new task's but for tuple/list or int/float, the
    likely fruit of a list given where a tuple was meant. Each task name is looked at once,
    and only when it has few stored tasks (reading their arguments costs a file each)."""

    LIMIT = 1000

    def __init__(self) -> None:
        self._stored: dict[str, dict[str, str]] = {}
        self.found: list[str] = []

    def check(self, task: TaskBase, ids: frozenset[str] | None) -> None:
        name = task.task_name
        stored = self._stored.get(name)
        if stored is None:
            stored = self._stored[name] = {}
            store = task._tp.store
            if ids is not None and 0 < len(ids) <= self.LIMIT:
                for task_id in ids:
                    args = store.read_args(store.locate(name, task_id))
                    if args is not None:
                        with contextlib.suppress(ValueError):
                            stored.setdefault(loosely(args), args)
        if stored and not self.found:  # one warning a run
            twin = stored.get(loosely(task._tp.args_json))
            if twin is not None:
                stored_twin = describe(name, twin, args_lookup(task))
                self.found.append(f"{task!r} and the stored {stored_twin}")


class _StoredIds:
    """Which tasks a store holds, one listing per task name: a graph of new tasks is planned
    without probing every task's result."""

    def __init__(self) -> None:
        self._ids: dict[tuple[Store, str], frozenset[str] | None] = {}

    def may_exist(self, task: TaskBase) -> bool:
        ids = self.ids(task)
        return ids is None or task._tp.task_id in ids

    def ids(self, task: TaskBase) -> frozenset[str] | None:
        key = (task._tp.store, task.task_name)
        ids = self._ids.get(key, _UNLISTED)
        if ids is _UNLISTED:
            ids = self._ids[key] = task._tp.store.task_ids(task.task_name)
        return ids


_UNLISTED: frozenset[str] = frozenset({"<unlisted>"})


def decide(
    order: list[TaskBase],
    root: TaskBase,
    *,
    force_root: bool,
    code: Callable[[type], str],
    check_code: bool,
) -> Plan:
    """The tasks that must run, with why. Sets the stamp of every fresh task.

    The code identity of each task class is taken once (`code` is asked once per class) and
    compared with every record read, checked or not: a cheap string comparison per task.
    """
    stale: dict[TaskBase, Reason] = {}
    drifted: dict[str, int] = {}
    codes: dict[type, str] = {}
    problems: list[str] = []
    existing = _StoredIds()
    near = _NearMisses()
    for task in order:
        state = task._tp
        state.failure = None  # a failure of an earlier run is not this run's
        if any(u in stale for u in state.upstream):
            stale[task] = Reason.UPSTREAM
            continue
        if not existing.may_exist(task):
            stale[task] = Reason.MISSING
            near.check(task, existing.ids(task))
            continue
        try:
            record = state.store.read_record(location(task))
        except CorruptResultError as exc:
            problems.append(f"{task!r}: {exc}")
            stale[task] = Reason.CORRUPT
            continue
        except CacheError as exc:
            raise CacheError(f"{task!r}: {exc}") from None
        if record is None:
            stale[task] = Reason.MISSING
            continue
        cls = type(task)
        now = codes.get(cls)
        if now is None:
            now = codes[cls] = code(cls)
        deps = deps_digest(state.upstream)
        reason = stale_reason(record, cls.task_version, deps, now if check_code else None)
        if reason is None and force_root and task is root:
            reason = Reason.FORCED
        if reason is not None:
            stale[task] = reason
            continue
        state.stamp = record.stamp
        if record.code != now:
            drifted[task.task_name] = drifted.get(task.task_name, 0) + 1
    warn_unreadable(problems)
    if near.found:
        warnings.warn(
            f"{near.found[0]} differ only by tuple/list or int/float, so they are different "
            "tasks and this one will run; pass the same types to reuse the stored result "
            "(--kwargs values take the types of Main's annotations)",
            stacklevel=3,
        )
    return Plan(stale, drifted)
